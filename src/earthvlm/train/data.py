"""The run's data: records (generated when a synthetic recipe asks), batches, micro-batches.

A *batch* is what one optimiser step sees: ``batch_size * grad_accum * num_processes``
samples. The sampler's constraints (ScaleEarth App. C: "each mini-batch is constrained
to contain an exact-GSD ratio of 0.25 and at least two samples from distinct scale
bins") hold for that batch, since with Table 6's one sample per device a per-device
batch could never hold two bins. Each batch is then shuffled and cut into the
micro-batches of this process.

With ``data.mixture`` the records are a :class:`~earthvlm.data.mixture.Mixture`'s
subsets and the batches its weighted draws (:class:`~earthvlm.data.mixture.MixtureBatches`).
With ``data.sampler: balanced`` (the default) each batch also meets ``exact_share`` and
``min_bins`` over the epoch's draws (the weights decide the mix within exact and
non-exact draws); ``shuffle`` cuts each epoch's plan into consecutive batches.

With ``data.augment`` each sample is augmented (:class:`~earthvlm.data.augment.Augmenter`)
when its epoch's batches are laid out, in the training process, with the key
``(epoch, step in epoch, slot in the step's shuffled batch)``: the same run seed gives the
same samples however many DataLoader workers read the images, and the counts are
exact. ``data.gsd_as_text`` is applied after augmentation, so the prompt states the
(possibly resized) GSD. The sampler bins records by their GSD before augmentation.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from earthvlm.data.augment import Augmenter
from earthvlm.data.gsd_text import with_gsd_text
from earthvlm.data.jsonl import RecordSet, read_records
from earthvlm.data.ledger import Ledger
from earthvlm.data.mixture import Mixture, MixtureBatches
from earthvlm.data.record import Record
from earthvlm.data.sampler import BalancedScaleSampler
from earthvlm.errors import EarthVLMError, SamplerError
from earthvlm.io import atomic_write_text
from earthvlm.scale.gsd import GSD, GSDKind
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.train.config import DataConfig


def dataset_root(cfg: DataConfig) -> Path:
    """The folder image paths are resolved in: ``data.root`` or the records' folder."""
    return Path(cfg.root) if cfg.root else Path(cfg.records).parent


def ensure_dataset(cfg: DataConfig) -> bool:
    """Generate the synthetic dataset of ``data.synth`` if ``data.records`` is absent.

    Returns:
        True when a dataset was generated.

    Raises:
        EarthVLMError: If the records are absent and there is no ``data.synth`` recipe,
            or the recipe cannot produce a file of that name.
    """
    if cfg.mixture is not None:
        return False  # a mixture's subsets are converted datasets, never generated
    path = Path(cfg.records)
    if path.is_file():
        return False
    if cfg.synth is None:
        raise EarthVLMError(
            f"data.records={str(path)!r}: no such file; point it at a records JSONL "
            "(earthvlm records check validates one), or add a data.synth section to "
            "generate a synthetic dataset there"
        )
    if path.name != "records.jsonl":
        raise EarthVLMError(
            f"data.records={str(path)!r}: a generated dataset writes 'records.jsonl'; name "
            "the file so (e.g. runs/data/chips/records.jsonl)"
        )
    s = cfg.synth
    generate_dataset(
        path.parent,
        SynthConfig(n_scenes=s.n_scenes, n_chips=s.n_chips, size_px=s.size_px,
                    chip_size_px=s.chip_size_px, chip_style=s.chip_style, seed=s.seed),
    )  # fmt: skip
    return True


def read_training_records(cfg: DataConfig) -> RecordSet:
    """Read the records (invalid rows go to the quarantine file, counted in the ledger).

    Raises:
        EarthVLMError: If no valid record is left.
    """
    rs = read_records(cfg.records, root=dataset_root(cfg))
    if not rs.records:
        raise EarthVLMError(f"{cfg.records}: no valid record to train on ({rs.ledger.summary()})")
    if cfg.gsd_as_text and cfg.augment is None:  # else after augmentation, per sample
        rs.records = [with_gsd_text(r) for r in rs.records]
    return rs


def sample_gsd(rec: Record) -> GSD:
    """The GSD a record is binned by: its first image's (unknown without images)."""
    return rec.images[0].gsd if rec.images else GSD.unknown()


def mean_exact_log10_gsd(records: list[Record]) -> float:
    """Mean log10 GSD over the exact-GSD images (SSE-U's initial mu); 0 (1 m) if none."""
    values = [im.gsd.log10_gsd for r in records for im in r.images if im.gsd.kind is GSDKind.EXACT]
    return sum(values) / len(values) if values else 0.0


class ShuffleBatches:
    """Seeded shuffled batches of sample indices without scale constraints.

    The interface of :class:`~earthvlm.data.sampler.BalancedScaleSampler` (``set_epoch``,
    ``len``, iteration over index lists); every pass is a new permutation, the last
    partial batch is dropped.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0) -> None:
        if n < batch_size:
            raise EarthVLMError(
                f"{n} sample(s) make no batch of {batch_size} (batch_size * grad_accum * "
                "processes); add data or lower optim.grad_accum / optim.batch_size"
            )
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(self.n))
        random.Random(f"{self.seed}:{self.epoch}").shuffle(order)
        for i in range(len(self)):
            yield order[i * self.batch_size : (i + 1) * self.batch_size]


def make_sampler(
    cfg: DataConfig, gsds: list[GSD], batch_size: int, seed: int
) -> BalancedScaleSampler | ShuffleBatches:
    """The batch sampler of the run: batches of one optimiser step.

    Raises:
        SamplerError: When the data cannot meet the balanced sampler's constraints (the
            message says what is missing; ``data.sampler: shuffle`` disables them).
    """
    if cfg.sampler == "shuffle":
        return ShuffleBatches(len(gsds), batch_size, seed)
    return BalancedScaleSampler(
        gsds, batch_size, exact_share=cfg.exact_share, min_bins=cfg.min_bins, seed=seed
    )


@dataclass
class TrainingData:
    """The run's records, where their images are, and the sampler of optimiser-step batches.

    Attributes:
        records: What the sampler's indices point into.
        root: The folder image paths are resolved in.
        sampler: Batches of one optimiser step (``set_epoch``, ``len``, index lists).
        ledger: Counts of the records read (every subset's, for a mixture).
        mixture: The mixture, when ``data.mixture`` is set.
        prepare: Per-sample augmentation and GSD text, when ``data.augment`` is set.
    """

    records: list[Record]
    root: Path
    sampler: BalancedScaleSampler | ShuffleBatches | MixtureBatches
    ledger: Ledger
    mixture: Mixture | None = None
    prepare: SamplePreparer | None = None


def load_training_data(cfg: DataConfig, batch_size: int, seed: int) -> TrainingData:
    """Read the records (or the mixture) and build the sampler of ``batch_size`` batches.

    Raises:
        EarthVLMError: If no valid record is left, the mixture file is missing or
            invalid, or the data make no batch.
        SamplerError: When the data cannot meet the balanced sampler's constraints.
    """
    prepare = SamplePreparer(cfg, seed) if cfg.augment is not None else None
    if cfg.mixture is None:
        rs = read_training_records(cfg)
        sampler = make_sampler(cfg, [sample_gsd(r) for r in rs.records], batch_size, seed)
        return TrainingData(rs.records, dataset_root(cfg), sampler, rs.ledger, None, prepare)
    try:
        mixture = Mixture.from_yaml(cfg.mixture)
    except (ValueError, EarthVLMError) as e:  # a missing or invalid file, a missing subset
        raise EarthVLMError(f"data.mixture={cfg.mixture!r}: {e}") from None
    ledger = Ledger(stage=f"mixture {cfg.mixture}")
    for sub in mixture.counts()["subsets"].values():
        read = sub.get("read", {})
        ledger.read, ledger.ok = ledger.read + read.get("read", 0), ledger.ok + read.get("ok", 0)
        ledger.skipped.update(read.get("skipped", {}))
        ledger.failed.update(read.get("failed", {}))
    records = mixture.records()
    if cfg.gsd_as_text and prepare is None:
        records = [with_gsd_text(r) for r in records]
    try:
        if cfg.sampler == "shuffle":
            sampler = MixtureBatches(mixture, batch_size)
        else:
            sampler = MixtureBatches(
                mixture, batch_size, gsds=[sample_gsd(r) for r in records],
                exact_share=cfg.exact_share, min_bins=cfg.min_bins, seed=seed,
            )  # fmt: skip
    except SamplerError as e:
        raise SamplerError(
            f"data.mixture={cfg.mixture!r}: {e} (or set data.sampler: shuffle)"
        ) from None
    except ValueError as e:
        raise EarthVLMError(
            f"data.mixture={cfg.mixture!r}: {e} (a batch is batch_size * grad_accum * "
            "processes samples)"
        ) from None
    return TrainingData(records, Path(mixture.root), sampler, ledger, mixture, prepare)


class SamplePreparer:
    """Augmentation then GSD text for one drawn sample, keyed by where it was drawn.

    Args:
        cfg: The data config (``augment`` and ``gsd_as_text``).
        seed: The run seed (the augmenter's).
    """

    def __init__(self, cfg: DataConfig, seed: int) -> None:
        self.augmenter = Augmenter(cfg.augment, seed)
        self.gsd_as_text = cfg.gsd_as_text
        self.samples = 0

    def __call__(self, record: Record, key: Sequence[int]) -> Record:
        self.samples += 1
        out = self.augmenter(record, key=key)
        return with_gsd_text(out) if self.gsd_as_text else out

    def epoch_samples(
        self,
        records: Sequence[Record],
        micro: list[list[int]],
        *,
        epoch: int,
        first_step: int,
        batch_size: int,
        grad_accum: int,
        process_index: int = 0,
        num_processes: int = 1,
    ) -> tuple[list[Record], list[list[int]]]:
        """This process's prepared samples of an epoch, and micro-batches indexing them.

        ``micro`` holds ``grad_accum`` micro-batches per step (:func:`micro_batches`), the
        first of step ``first_step``; a sample's key is ``(epoch, step, slot)``, its slot
        its position in the step's shuffled batch (unique across processes).
        """
        samples: list[Record] = []
        out: list[list[int]] = []
        for n, mb in enumerate(micro):
            step, j = first_step + n // grad_accum, n % grad_accum
            first_slot = (j * num_processes + process_index) * batch_size
            out.append(list(range(len(samples), len(samples) + len(mb))))
            samples += [self(records[i], (epoch, step, first_slot + m)) for m, i in enumerate(mb)]
        return samples, out


@dataclass
class DataCounts:
    """What the run drew, per epoch: samples, per mixture subset, and augmentation counts.

    Written to the run folder (:meth:`save`, ``data_counts.json``) at the end of each
    epoch and of the run; they cover the whole run: a resumed run first lays out the
    finished steps again (a function of the seed, epoch and step) to count them.
    """

    mixture: Mixture | None = None
    prepare: SamplePreparer | None = None
    epochs: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, epoch: int, indices: Sequence[int], steps: int) -> None:
        """Count the samples (indices into the records) of ``steps`` steps of ``epoch``."""
        e = self.epochs.setdefault(epoch, {"steps": 0, "samples": 0, "subsets": Counter()})
        e["steps"] += steps
        e["samples"] += len(indices)
        if self.mixture is not None:  # indices into Mixture.records(): subsets in order
            subsets = self.mixture.counts(epoch)["subsets"]
            ends = list(itertools.accumulate(s["records"] for s in subsets.values()))
            for i in indices:
                e["subsets"][self.mixture.names[bisect.bisect_right(ends, i)]] += 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: totals, augmentation counts and one entry per epoch (with
        the mixture's :meth:`~earthvlm.data.mixture.Mixture.counts` of that epoch)."""
        epochs = []
        for epoch, e in sorted(self.epochs.items()):
            entry: dict[str, Any] = {"epoch": epoch, "steps": e["steps"], "samples": e["samples"]}
            if self.mixture is not None:
                entry["subsets"] = {n: e["subsets"].get(n, 0) for n in self.mixture.names}
                entry["mixture"] = self.mixture.counts(epoch)
            epochs.append(entry)
        out: dict[str, Any] = {
            "steps": sum(e["steps"] for e in self.epochs.values()),
            "samples": sum(e["samples"] for e in self.epochs.values()),
        }
        if self.prepare is not None:
            out["augment"] = {
                "seed": self.prepare.augmenter.seed,
                "samples": self.prepare.samples,
                "counts": dict(sorted(self.prepare.augmenter.counts.items())),
            }
        out["epochs"] = epochs
        return out

    def save(self, path: str | Path, data: dict[str, Any] | None = None) -> None:
        """Write :meth:`to_dict` (or ``data``) as JSON, atomically."""
        atomic_write_text(path, json.dumps(data or self.to_dict(), indent=2) + "\n")


def micro_batches(
    batch: list[int],
    *,
    batch_size: int,
    grad_accum: int,
    process_index: int = 0,
    num_processes: int = 1,
    seed: str = "",
) -> list[list[int]]:
    """This process's ``grad_accum`` micro-batches of one optimiser step's batch.

    The batch is shuffled with ``seed`` first: the balanced sampler lists its exact
    samples first, and micro-batches should mix them like the batch does.
    """
    expected = batch_size * grad_accum * num_processes
    if len(batch) != expected:
        raise EarthVLMError(f"a step's batch has {len(batch)} samples, expected {expected}")
    order = list(batch)
    random.Random(seed).shuffle(order)
    out = []
    for j in range(grad_accum):
        k = j * num_processes + process_index
        out.append(order[k * batch_size : (k + 1) * batch_size])
    return out


def total_steps(steps_per_epoch: int, epochs: int, max_steps: int | None) -> int:
    """Optimiser steps of the whole run."""
    return max_steps if max_steps is not None else epochs * steps_per_epoch


__all__ = [
    "DataCounts",
    "SamplePreparer",
    "ShuffleBatches",
    "TrainingData",
    "dataset_root",
    "ensure_dataset",
    "load_training_data",
    "make_sampler",
    "mean_exact_log10_gsd",
    "micro_batches",
    "read_training_records",
    "sample_gsd",
    "total_steps",
]
