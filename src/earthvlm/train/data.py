"""The run's data: records (generated when a synthetic recipe asks), batches, micro-batches.

A *batch* is what one optimiser step sees: ``batch_size * grad_accum * num_processes``
samples. The sampler's constraints (ScaleEarth App. C: "each mini-batch is constrained
to contain an exact-GSD ratio of 0.25 and at least two samples from distinct scale
bins") hold for that batch, since with Table 6's one sample per device a per-device
batch could never hold two bins. Each batch is then shuffled and cut into the
micro-batches of this process.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from earthvlm.data.gsd_text import with_gsd_text
from earthvlm.data.jsonl import RecordSet, read_records
from earthvlm.data.record import Record
from earthvlm.data.sampler import BalancedScaleSampler
from earthvlm.errors import EarthVLMError
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
    if cfg.gsd_as_text:
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
    "ShuffleBatches",
    "dataset_root",
    "ensure_dataset",
    "make_sampler",
    "mean_exact_log10_gsd",
    "micro_batches",
    "read_training_records",
    "sample_gsd",
    "total_steps",
]
