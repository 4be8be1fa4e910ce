"""Run the scale diagnostics on a trained model and a records file.

The functions of :mod:`earthvlm.eval.diagnostics` are pure (numbers in, results out);
this module feeds them from a :class:`~earthvlm.models.EarthVLM` and
records, for the experiment runner and ``earthvlm diagnose``:

* :func:`spoof_model`: closed-set answers under claimed GSDs (the closed set is the
  records' own answers; ambiguous pairs from ``meta.ambiguous_pair``);
* :func:`calibrate_model`: SSE-U's estimates with no GSD given, against the truth;
* :func:`probe_model`: bottleneck latents of one CS-HLoRA layer, probed for texture,
  geometry, scene identity and log10 GSD.

Records a diagnostic cannot use (no exact GSD, an image that fails to load) are left
out and counted in a :class:`~earthvlm.data.ledger.Ledger` with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from earthvlm.data.ledger import Ledger
from earthvlm.data.record import Record
from earthvlm.errors import EarthVLMError
from earthvlm.eval.choice import ChoiceScorer
from earthvlm.eval.diagnostics import (
    BottleneckRecorder,
    bottleneck_layer,
    image_factors,
    rank_groups,
    rank_probe,
    spoof_curve,
    sseu_calibration,
)
from earthvlm.eval.diagnostics.calibration import CalibrationStats
from earthvlm.eval.diagnostics.probe import ProbeResult
from earthvlm.eval.diagnostics.spoof import SpoofCurve, SpoofSample
from earthvlm.geo.raster import open_raster, read_pixels
from earthvlm.models.earthvlm import EarthVLM
from earthvlm.scale.gsd import GSD, GSDKind, GSDSource


def answer_of(record: Record) -> str:
    """The text of the record's last assistant turn (the reference answer)."""
    for m in reversed(record.messages):
        if m.role == "assistant":
            return m.text().strip()
    raise EarthVLMError(f"record {record.id}: no assistant turn (nothing to score against)")


#: Tasks whose answer is one of a closed set of class names (what spoofing scores).
CLOSED_SET_TASKS = frozenset({"classification"})


def usable(
    records: Sequence[Record],
    *,
    need_exact_gsd: bool,
    closed_set_only: bool = False,
    one_per_image: bool = False,
    max_image_pixels: int | None = None,
) -> tuple[list[Record], Ledger]:
    """Single-image records with an answer, and the count of those left out, per reason.

    Args:
        records: Any records.
        need_exact_gsd: Keep only images with an exact GSD (the truth to compare with).
        closed_set_only: Keep only closed-set classification tasks
            (:data:`CLOSED_SET_TASKS`: their answers form the candidate set).
        one_per_image: Keep the first record of each image (a diagnostic of images, not
            of the questions asked about them).
        max_image_pixels: Leave out images larger than this (per the record's size), e.g.
            ultra-high-resolution scenes that a diagnostic would read whole.

    Only the records are read (no image, no model): :func:`fitting` checks the rest.
    """
    ledger = Ledger("diagnostic inputs")
    kept = []
    seen: set[str] = set()
    for r in records:
        image = r.images[0] if len(r.images) == 1 else None
        if image is None:
            ledger.count_skipped("not_single_image")
        elif not any(m.role == "assistant" for m in r.messages):
            ledger.count_skipped("no_answer")
        elif closed_set_only and r.task not in CLOSED_SET_TASKS:
            ledger.count_skipped(f"not_closed_set_classification:{r.task}")
        elif need_exact_gsd and image.gsd.kind is not GSDKind.EXACT:
            ledger.count_skipped("no_exact_gsd")
        elif max_image_pixels and (image.width or 0) * (image.height or 0) > max_image_pixels:
            ledger.count_skipped("image_too_large")
        elif one_per_image and image.path in seen:
            ledger.count_skipped("another_question_on_the_same_image")
        else:
            seen.add(image.path)
            ledger.count_ok()
            kept.append(r)
    return kept, ledger


def fitting(
    model: EarthVLM,
    root: str | Path,
    records: Sequence[Record],
    ledger: Ledger,
    *,
    answer: str | None = None,
    limit: int | None = None,
) -> list[Record]:
    """The records the model can take (their image reads, the sample fits its
    ``max_length`` with ``answer``, else the record's own answer), at most ``limit``;
    the others move from ``ledger``'s ok to skipped with the collator's reason
    (``too_long``, ``missing_image``, ...) or ``over_limit``."""
    from earthvlm.data.collate.sample import SampleError
    from earthvlm.eval.choice import with_answer

    def leave_out(reason: str, n: int = 1) -> None:
        ledger.ok -= n
        ledger.skipped[reason] += n

    collator = model.collator(root, image_cache=0)
    kept: list[Record] = []
    for k, r in enumerate(records):
        if limit is not None and len(kept) >= limit:
            leave_out("over_limit", len(records) - k)
            break
        try:
            collator.encode(with_answer(r, answer) if answer is not None else r)
        except SampleError as e:
            leave_out(e.reason)
            continue
        kept.append(r)
    return kept


def closed_set(records: Sequence[Record]) -> tuple[list[str], list[tuple[str, str]]]:
    """The candidate answers (sorted) and the ambiguous pairs named in the records."""
    answers = sorted({answer_of(r) for r in records})
    pairs = {
        tuple(sorted(p))
        for r in records
        if isinstance(p := r.meta.get("ambiguous_pair"), list | tuple) and len(p) == 2
    }
    return answers, sorted(pairs)


def spoof_gsd(m: float) -> GSD:
    """A claimed GSD, given as metadata so the resolver uses it (App. A.3)."""
    return GSD.exact(float(m), source=GSDSource.USER, detail="spoofed")


def spoof_model(
    scorer: ChoiceScorer,
    records: Sequence[Record],
    *,
    gsd_values_m: Sequence[float] | None = None,
    deltas: Sequence[float] | None = None,
    pairs: Sequence[tuple[str, str]] = (),
    train_range_m: tuple[float, float] | None = None,
    n_per_class: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> SpoofCurve:
    """A spoofing sweep of the scorer's model (give ``gsd_values_m`` or ``deltas``).

    Records need an exact GSD (see :func:`usable`).
    """
    samples = [SpoofSample(answer_of(r), r.images[0].gsd.point_m, r) for r in records]

    def score(chunk: Sequence[SpoofSample], gsd_m: np.ndarray) -> list[str]:
        return scorer.predict([s.item for s in chunk], [spoof_gsd(g) for g in gsd_m])

    return spoof_curve(
        score,
        samples,
        gsd_values_m,
        deltas=deltas,
        train_range_m=train_range_m,
        pairs=pairs,
        n_per_class=n_per_class,
        n_boot=n_boot,
        seed=seed,
        batch_size=scorer.batch_size,
    )


def _batches(scorer: ChoiceScorer, records: Sequence[Record]):
    for start in range(0, len(records), scorer.batch_size):
        chunk = list(records[start : start + scorer.batch_size])
        batch = scorer.collator(chunk)
        if len(batch) != len(chunk):
            raise EarthVLMError(
                f"{len(chunk) - len(batch)} record(s) failed to collate: {batch.failures[:2]}"
            )
        yield chunk, {k: v for k, v in batch.inputs.items() if k != "labels"}


def has_scale_cues(record: Record) -> bool | None:
    """Whether the image carries scale cues: ``meta.has_scale_cues`` (scenes), else not
    for a member of an ambiguous pair (chips: only the GSD separates those), else None."""
    if "has_scale_cues" in record.meta:
        return bool(record.meta["has_scale_cues"])
    if "ambiguous_pair" in record.meta:
        return not record.meta["ambiguous_pair"]
    return None


@torch.no_grad()
def sseu_outputs(
    model: EarthVLM, scorer: ChoiceScorer, records: Sequence[Record]
) -> tuple[np.ndarray, np.ndarray]:
    """SSE-U's (mu, logvar) per record with no GSD given (the regime it exists for)."""
    scale = model.scale
    if scale is None or model.sseu is None:
        raise EarthVLMError(
            f"{model.name}: the run has no SSE-U head (train with adapter.sseu: true)"
        )
    mus, lvs = [], []
    for chunk, inputs in _batches(scorer, records):
        model.logits(inputs, [GSD.unknown("calibration: no metadata")] * len(chunk))
        mus.append(scale.last.mu.float().cpu().numpy())
        lvs.append(scale.last.logvar.float().cpu().numpy())
    return np.concatenate(mus), np.concatenate(lvs)


def calibrate_model(
    model: EarthVLM, scorer: ChoiceScorer, records: Sequence[Record]
) -> CalibrationStats:
    """SSE-U calibration on records with exact GSDs (cue flags where the records say)."""
    mu, logvar = sseu_outputs(model, scorer, records)
    truth = np.asarray([r.images[0].gsd.log10_gsd for r in records])
    cues = [has_scale_cues(r) for r in records]
    flags = None if any(c is None for c in cues) else np.asarray(cues, dtype=bool)
    return sseu_calibration(mu, logvar, truth, flags)


@torch.no_grad()
def bottleneck_latents(
    model: EarthVLM, scorer: ChoiceScorer, records: Sequence[Record], layer: str
) -> np.ndarray:
    """(N, r) CS-HLoRA bottleneck at ``layer`` with each record's own GSD, pooled over
    each sample's tokens."""
    target = bottleneck_layer(model.hf_model, layer)
    with BottleneckRecorder(target) as rec:
        for chunk, inputs in _batches(scorer, records):
            rec.token_mask = inputs["attention_mask"]
            model.logits(inputs, [r.images[0].gsd for r in chunk])
        return rec.latents()


def image_pixels(root: str | Path, record: Record) -> np.ndarray:
    """The record's image as (H, W, bands) for the probe factors."""
    with open_raster(Path(root) / record.images[0].path) as ds:
        return read_pixels(ds).transpose(1, 2, 0)


def probe_model(
    model: EarthVLM,
    scorer: ChoiceScorer,
    records: Sequence[Record],
    root: str | Path,
    *,
    layer: str,
    seed: int = 0,
) -> ProbeResult:
    """Rank probe (App. A.4) of one CS-HLoRA layer: texture, geometry, scene identity
    (``meta.scene_kind``, else the answer) and log10 GSD, grouped by initial tier."""
    cfg = model.cshlora
    if cfg is None:
        raise EarthVLMError(f"{model.name}: the rank probe needs a CS-HLoRA run")
    latents = bottleneck_latents(model, scorer, records, layer)
    scenes = [str(r.meta.get("scene_kind") or answer_of(r)) for r in records]
    factors = image_factors([image_pixels(root, r) for r in records], scenes)
    factors["log10_gsd"] = np.asarray([r.images[0].gsd.log10_gsd for r in records])
    return rank_probe(latents, factors, groups=rank_groups(cfg.tau_init()), seed=seed)


__all__ = [
    "CLOSED_SET_TASKS",
    "answer_of",
    "bottleneck_latents",
    "calibrate_model",
    "closed_set",
    "fitting",
    "has_scale_cues",
    "image_pixels",
    "probe_model",
    "spoof_gsd",
    "spoof_model",
    "sseu_outputs",
    "usable",
]
