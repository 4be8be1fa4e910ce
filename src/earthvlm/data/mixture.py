"""A weighted mixture of record subsets, sampled online (RSCoVLM sec. III-B3).

The paper trains on "multiple subset units", each with a sampling weight that is tuned
between runs "analogous to controlling the flow rate of different ingredients in an
automatic beverage dispenser". The reference release fixes the mix when the dataset is
built (a subset repeated ``*n`` or cut to ``%p`` and concatenated), so changing it means
rebuilding the data. Here the weights are probabilities of an online draw and may change
at any epoch (:meth:`Mixture.set_weights`, or a ``schedule`` in the YAML) with the
records kept in memory as they are.

A mixture file (``configs/mixtures/example.yaml``)::

    seed: 0
    epoch_size: 20000              # draws per epoch; default: the subsets' sizes summed
    root: data                     # image paths are rebased here (default: common folder)
    subsets:
      - {name: dota, records: data/dota/train.jsonl, root: data/dota, weight: 2}
      - {name: rsvqa, records: data/rsvqa/train.jsonl, weight: 1, subsample: 0.25}
    schedule:                      # from epoch 2 on (every subset named)
      - {epoch: 2, weights: {dota: 1, rsvqa: 1}}

How an epoch is drawn:

* ``subsample`` keeps a seeded share of a subset's records (the same ones every epoch);
  ``repeat`` multiplies the subset's size. Together they give the subset's *size*: its
  share of the default ``epoch_size`` and, when no subset has a ``weight``, its weight
  (the reference's static mix, reproduced exactly in expectation). Weights are given for
  every subset or for none.
* Each of the epoch's draws picks a subset with probability ``weight / sum(weights)``
  (a NumPy ``Generator`` seeded by ``(seed, epoch)``), then the subset's next record
  from a seeded permutation of its records, reshuffled after each pass: a subset drawn
  fewer times than its size repeats no record within the epoch.
* The same seed, epoch and weights give the same stream, in any process; a DataLoader
  can index a :class:`Mixture` by position (``mixture[i]``) in its workers, and
  :class:`MixtureBatches` gives the training loop's batch-sampler interface (index
  lists into :meth:`Mixture.records`).

Per-subset counts (records read, pool, drawn, distinct) are in :meth:`Mixture.counts`,
a JSON-ready dict; :meth:`Mixture.save_counts` writes it.

Paths in the YAML are relative to the working directory (as in training recipes),
unless :func:`load_mixture_config` is given another ``base_dir``.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from earthvlm.data.jsonl import read_records
from earthvlm.data.ledger import Ledger
from earthvlm.data.record import Record
from earthvlm.data.sampler import BalancedScaleSampler
from earthvlm.io import atomic_write_text
from earthvlm.scale.gsd import GSD
from earthvlm.scale.tiers import DEFAULT_TIERS, TierScheme
from earthvlm.typed import build_dataclass, load_yaml_config

#: Stream ids mixed into the seed, so subsampling and drawing use independent streams.
_SUBSAMPLE_STREAM, _DRAW_STREAM = 1, 2


def _number(value: Any, where: str, *, integer: bool = False) -> float:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not math.isfinite(value):
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{where}={value!r}: expected {kind}")
    return value


@dataclass(frozen=True)
class SubsetConfig:
    """One subset unit of a mixture."""

    name: str
    """Unique name, used in weights, schedules and counts."""
    records: str
    """The JSONL file of records (:func:`earthvlm.data.jsonl.read_records`)."""
    root: str | None = None
    """Dataset root the records' image paths are relative to; default: the records' folder."""
    weight: float | None = None
    """Sampling weight (>= 0); ``None`` for every subset: weights proportional to size."""
    repeat: int = 1
    """Multiplies the subset's size (its share of ``epoch_size`` and its size weight)."""
    subsample: float | None = None
    """Keep this share (0, 1] of the records, chosen once by the mixture's seed."""

    def __post_init__(self) -> None:
        where = f"subset {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"subset name={self.name!r}: give a non-empty name")
        if not isinstance(self.records, str) or not self.records:
            raise ValueError(f"{where}: records={self.records!r}: give the JSONL file")
        if self.root is not None and (not isinstance(self.root, str) or not self.root):
            raise ValueError(f"{where}: root={self.root!r}: give a folder or leave it out")
        if self.weight is not None and _number(self.weight, f"{where}: weight") < 0:
            raise ValueError(f"{where}: weight={self.weight}: must be >= 0")
        if _number(self.repeat, f"{where}: repeat", integer=True) < 1:
            raise ValueError(f"{where}: repeat={self.repeat}: must be an integer >= 1")
        if self.subsample is not None and not (
            0 < _number(self.subsample, f"{where}: subsample") <= 1
        ):
            raise ValueError(f"{where}: subsample={self.subsample}: must be in (0, 1]")


@dataclass(frozen=True)
class WeightStep:
    """Weights in force from ``epoch`` on (until a later step)."""

    epoch: int
    """The first epoch the weights apply to."""
    weights: Mapping[str, float]
    """Subset name -> weight, for every subset of the mixture."""


@dataclass(frozen=True)
class MixtureConfig:
    """A mixture: its subsets, seed, epoch size and weight schedule."""

    subsets: tuple[SubsetConfig, ...]
    """The subset units (at least one, unique names)."""
    seed: int = 0
    """Seed of subsampling and of every epoch's draws."""
    epoch_size: int | None = None
    """Draws per epoch; default: the subsets' sizes (after subsample and repeat) summed."""
    root: str | None = None
    """Folder every image path is rebased to (one root for the collator); default: the
    subsets' roots' common folder."""
    schedule: tuple[WeightStep, ...] = ()
    """Weights per epoch; the latest step at or before an epoch applies."""

    def __post_init__(self) -> None:
        if not self.subsets:
            raise ValueError("subsets is empty: list at least one subset")
        names = [s.name for s in self.subsets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"subset names must be unique; repeated: {dupes}")
        _number(self.seed, "seed", integer=True)
        if self.seed < 0:
            raise ValueError(f"seed={self.seed}: must be >= 0")
        if self.epoch_size is not None and _number(self.epoch_size, "epoch_size", integer=True) < 1:
            raise ValueError(f"epoch_size={self.epoch_size}: must be >= 1 (or left out)")
        given = [s.name for s in self.subsets if s.weight is not None]
        if given and len(given) != len(self.subsets):
            missing = [s.name for s in self.subsets if s.weight is None]
            raise ValueError(
                f"weight is set for {given} but not for {missing}: give every subset a "
                "weight, or none (weights proportional to subset sizes)"
            )
        if given and not sum(s.weight or 0.0 for s in self.subsets) > 0:
            raise ValueError("every subset has weight 0: give at least one a weight > 0")
        for k, step in enumerate(self.schedule):
            where = f"schedule[{k}] (epoch {step.epoch})"
            if _number(step.epoch, f"{where}: epoch", integer=True) < 0:
                raise ValueError(f"{where}: epoch={step.epoch}: must be >= 0")
            check_weights(step.weights, names, where)
        epochs = [step.epoch for step in self.schedule]
        if epochs != sorted(set(epochs)):
            raise ValueError(f"schedule epochs {epochs}: must be increasing, without repeats")

    @property
    def names(self) -> list[str]:
        """The subset names, in file order."""
        return [s.name for s in self.subsets]


def check_weights(weights: Mapping[str, float], names: Sequence[str], where: str) -> None:
    """Raise ``ValueError`` unless ``weights`` gives every subset in ``names`` a weight
    >= 0 (and one > 0), naming ``where``, the subset and the problem."""
    if not isinstance(weights, Mapping):
        raise ValueError(f"{where}: weights must map subset names to numbers, got {weights!r}")
    for name in weights:
        if name not in names:
            close = difflib.get_close_matches(str(name), list(names), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; subsets: {list(names)}"
            raise ValueError(f"{where}: weights name unknown subset {name!r}{hint}")
    missing = [n for n in names if n not in weights]
    if missing:
        raise ValueError(f"{where}: weights miss subset(s) {missing}; give every subset one")
    for name in names:
        if _number(weights[name], f"{where}: subset {name!r}: weight") < 0:
            raise ValueError(f"{where}: subset {name!r}: weight={weights[name]}: must be >= 0")
    if not sum(weights.values()) > 0:
        raise ValueError(f"{where}: every weight is 0; give at least one subset a weight > 0")


def mixture_from_dict(data: Mapping[str, Any], base_dir: str | Path | None = None) -> MixtureConfig:
    """Build and validate a :class:`MixtureConfig` from a parsed YAML mapping.

    Args:
        data: The mapping (see the module docstring).
        base_dir: Relative ``records`` and ``root`` paths are joined to it (default:
            left relative, i.e. to the working directory).

    Raises:
        ConfigError: For unknown fields (with a suggestion) or bad values, naming the
            dotted key (``subsets[1].weight``) or the subset (a ``ValueError``).
    """
    return _rebased(build_dataclass(MixtureConfig, data), base_dir)


def load_mixture_config(
    path: str | Path, base_dir: str | Path | None = None, overrides: Sequence[str] = ()
) -> MixtureConfig:
    """Read and validate a mixture YAML file, with ``--set``-style ``overrides``.

    Raises:
        ConfigError: If the file is missing or not a YAML mapping, or for bad fields
            (naming the file; see :func:`mixture_from_dict`).
    """
    config = load_yaml_config(MixtureConfig, path, overrides, what="mixture")
    return _rebased(config, base_dir)


def _rebased(config: MixtureConfig, base_dir: str | Path | None) -> MixtureConfig:
    """``config`` with its relative ``records`` and ``root`` paths joined to ``base_dir``."""
    if base_dir is None:
        return config

    def path(value: str) -> str:
        return value if Path(value).is_absolute() else str(Path(base_dir) / value)

    subsets = tuple(
        replace(s, records=path(s.records), root=None if s.root is None else path(s.root))
        for s in config.subsets
    )
    root = None if config.root is None else path(config.root)
    return replace(config, subsets=subsets, root=root)


@dataclass(frozen=True)
class MixtureItem:
    """One draw: the record, its subset, and where it sits in the epoch's stream.

    ``(epoch, position)`` identifies the draw: seed augmentation with it
    (:class:`earthvlm.data.augment.Augmenter`) and it is reproducible too.
    """

    record: Record
    subset: str
    index: int
    """Index of the record in its subset's file order (after quarantine)."""
    epoch: int
    position: int


@dataclass
class _Subset:
    config: SubsetConfig
    records: list[Record]
    pool: np.ndarray  # indices into records kept by subsample
    root: str
    ledger: Ledger | None = None
    rebase: str = ""  # prefix joining this root to the mixture root ("" when equal)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.pool) * self.config.repeat


class Mixture:
    """Records of several subsets, drawn online by weight, reproducibly.

    Build it from files with :meth:`from_config` (or :meth:`from_yaml`), or in memory
    with a list of records per subset. Iterate it for the current epoch's items, or
    index it by position; call :meth:`set_epoch` between epochs.

    Args:
        config: The mixture.
        records: One list of records per subset, in the order of ``config.subsets``.
        ledgers: The read ledgers of the subsets (for :meth:`counts`), when read from files.

    Raises:
        ValueError: If the records do not match the subsets, a subset with a weight > 0
            has no records, or a subset root lies outside the mixture root.
    """

    def __init__(
        self,
        config: MixtureConfig,
        records: Sequence[Sequence[Record]],
        *,
        ledgers: Sequence[Ledger] | None = None,
    ) -> None:
        if len(records) != len(config.subsets):
            raise ValueError(
                f"{len(records)} record lists for {len(config.subsets)} subsets "
                f"{config.names}: give one list per subset, in order"
            )
        self.config = config
        self.seed = config.seed
        roots = [
            os.path.abspath(s.root or os.path.dirname(os.path.abspath(s.records)))
            for s in config.subsets
        ]
        self.root = os.path.abspath(config.root) if config.root else os.path.commonpath(roots)
        self._subsets: list[_Subset] = []
        for k, (cfg, recs, root) in enumerate(zip(config.subsets, records, roots, strict=True)):
            rel = os.path.relpath(root, self.root)
            if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
                raise ValueError(
                    f"subset {cfg.name!r}: root={root} lies outside the mixture root "
                    f"{self.root}; set the mixture's root to a folder holding every subset"
                )
            n = len(recs)
            pool = np.arange(n)
            if cfg.subsample is not None and n:
                rng = np.random.default_rng([self.seed, _SUBSAMPLE_STREAM, k])
                keep = max(1, round(n * cfg.subsample))
                pool = np.sort(rng.choice(n, size=keep, replace=False))
            self._subsets.append(
                _Subset(
                    cfg,
                    list(recs),
                    pool,
                    root,
                    ledgers[k] if ledgers else None,
                    "" if rel == "." else PurePosixPath(*Path(rel).parts).as_posix(),
                )
            )
        self.epoch = 0
        #: Weights in force from an epoch on: the config's schedule and set_weights calls.
        self._steps: dict[int, dict[str, float]] = {
            s.epoch: dict(s.weights) for s in config.schedule
        }
        if 0 not in self._steps:
            self._steps[0] = self._base_weights()
        self._plan_cache: tuple[int, np.ndarray] | None = None
        self._flat: list[Record] | None = None
        self._check_weights(self._steps[0], "weights")
        for e, w in self._steps.items():
            self._check_weights(w, f"schedule (epoch {e})")

    # -- construction from files ------------------------------------------------------------

    @classmethod
    def from_config(cls, config: MixtureConfig) -> Mixture:
        """Read every subset's records (invalid rows quarantined and counted).

        Raises:
            RecordError: If a records file is missing.
        """
        records, ledgers = [], []
        for s in config.subsets:
            root = s.root or os.path.dirname(os.path.abspath(s.records))
            got = read_records(s.records, root=root)
            records.append(got.records)
            ledgers.append(got.ledger)
        return cls(config, records, ledgers=ledgers)

    @classmethod
    def from_yaml(cls, path: str | Path, base_dir: str | Path | None = None) -> Mixture:
        """:func:`load_mixture_config` then :meth:`from_config`."""
        return cls.from_config(load_mixture_config(path, base_dir))

    # -- weights --------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """The subset names, in order."""
        return self.config.names

    def sizes(self) -> dict[str, int]:
        """Subset name -> size (records kept by subsample, times repeat)."""
        return {s.config.name: s.size for s in self._subsets}

    def _base_weights(self) -> dict[str, float]:
        if self.config.subsets[0].weight is None:  # none given: proportional to size
            return {s.config.name: float(s.size) for s in self._subsets}
        return {s.config.name: float(s.config.weight or 0.0) for s in self._subsets}

    def _check_weights(self, weights: Mapping[str, float], where: str) -> None:
        check_weights(weights, self.names, where)
        empty = [s.config.name for s in self._subsets if weights[s.config.name] > 0 and not s.size]
        if empty:
            raise ValueError(
                f"{where}: subset(s) {empty} have a weight > 0 but no records; check their "
                "records files (and quarantine), or give them weight 0"
            )

    def weights_at(self, epoch: int) -> dict[str, float]:
        """The weights in force at ``epoch``: the latest step at or before it."""
        start = max(e for e in self._steps if e <= epoch)
        return dict(self._steps[start])

    def probabilities(self, epoch: int | None = None) -> dict[str, float]:
        """Subset name -> probability of a draw at ``epoch`` (default: the current one)."""
        w = self.weights_at(self.epoch if epoch is None else epoch)
        total = sum(w.values())
        return {n: w[n] / total for n in self.names}

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Use these weights from the current epoch on (every subset named; no data is
        rebuilt). Later schedule steps still apply from their epochs.

        Raises:
            ValueError: Naming the subset whose weight is missing, unknown or invalid.
        """
        w = {n: float(weights[n]) for n in weights} if isinstance(weights, Mapping) else weights
        self._check_weights(w, f"set_weights (epoch {self.epoch})")
        self._steps[self.epoch] = dict(w)
        self._plan_cache = None

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch``: its own draws, under the weights in force at it."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch={epoch!r}: must be an integer >= 0")
        self.epoch = epoch

    # -- the draws ------------------------------------------------------------------------

    @property
    def epoch_size(self) -> int:
        """Draws per epoch."""
        return self.config.epoch_size or sum(s.size for s in self._subsets)

    def plan(self, epoch: int | None = None) -> np.ndarray:
        """The epoch's draws as an ``(epoch_size, 2)`` array of ``(subset, record index)``.

        A pure function of the seed, the epoch and the weights in force at it.
        """
        epoch = self.epoch if epoch is None else epoch
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        p = np.array(list(self.probabilities(epoch).values()))
        rng = np.random.default_rng([self.seed, _DRAW_STREAM, epoch])
        which = rng.choice(len(self._subsets), size=self.epoch_size, p=p)
        out = np.empty((self.epoch_size, 2), dtype=np.int64)
        out[:, 0] = which
        for k, sub in enumerate(self._subsets):
            slots = np.flatnonzero(which == k)
            if not len(slots):
                continue
            passes = -(-len(slots) // len(sub.pool))  # ceil
            order = np.concatenate([rng.permutation(sub.pool) for _ in range(passes)])
            out[slots, 1] = order[: len(slots)]
        self._plan_cache = (epoch, out)
        return out

    def __len__(self) -> int:
        return self.epoch_size

    def item(self, epoch: int, position: int) -> MixtureItem:
        """The draw at ``position`` of ``epoch``, its image paths rebased to :attr:`root`."""
        if not 0 <= position < self.epoch_size:
            raise IndexError(f"position {position} outside the epoch's {self.epoch_size} draws")
        k, i = (int(v) for v in self.plan(epoch)[position])
        sub = self._subsets[k]
        return MixtureItem(self._rebased(sub, sub.records[i]), sub.config.name, i, epoch, position)

    def __getitem__(self, position: int) -> MixtureItem:
        return self.item(self.epoch, position)

    def __iter__(self) -> Iterator[MixtureItem]:
        epoch = self.epoch
        for position in range(self.epoch_size):
            yield self.item(epoch, position)

    def _rebased(self, sub: _Subset, rec: Record) -> Record:
        if not sub.rebase:
            return rec

        def move(path: str) -> str:
            return path if path.startswith("/") else f"{sub.rebase}/{path}"

        images = [im.model_copy(update={"path": move(im.path)}) for im in rec.images]
        masks = [m.model_copy(update={"path": move(m.path)}) if m.path else m for m in rec.masks]
        return rec.model_copy(update={"images": images, "masks": masks})

    # -- flat indices, for batch samplers ---------------------------------------------------

    def records(self) -> list[Record]:
        """Every subset's records (paths rebased), concatenated in subset order: the list
        :meth:`flat_plan` and :class:`MixtureBatches` index."""
        if self._flat is None:
            self._flat = [self._rebased(s, r) for s in self._subsets for r in s.records]
        return self._flat

    def flat_plan(self, epoch: int | None = None) -> np.ndarray:
        """The epoch's draws as indices into :meth:`records`."""
        offsets = np.cumsum([0] + [len(s.records) for s in self._subsets])
        plan = self.plan(epoch)
        return offsets[plan[:, 0]] + plan[:, 1]

    # -- counts ---------------------------------------------------------------------------

    def counts(self, epoch: int | None = None) -> dict[str, Any]:
        """What the epoch draws from each subset, as a JSON-ready dict.

        Keys: ``epoch``, ``seed``, ``epoch_size``, and ``subsets``: name -> ``read``
        (the read ledger, when read from a file), ``records``, ``pool`` (after
        subsample), ``size``, ``weight``, ``probability``, ``drawn`` (draws this epoch)
        and ``distinct`` (distinct records among them).
        """
        epoch = self.epoch if epoch is None else epoch
        plan = self.plan(epoch)
        weights, probs = self.weights_at(epoch), self.probabilities(epoch)
        out: dict[str, Any] = {}
        for k, sub in enumerate(self._subsets):
            mine = plan[plan[:, 0] == k, 1]
            name = sub.config.name
            out[name] = {
                **({"read": sub.ledger.to_dict()} if sub.ledger is not None else {}),
                "records": len(sub.records),
                "pool": len(sub.pool),
                "size": sub.size,
                "weight": weights[name],
                "probability": probs[name],
                "drawn": len(mine),
                "distinct": len(np.unique(mine)),
            }
        return {"epoch": epoch, "seed": self.seed, "epoch_size": self.epoch_size, "subsets": out}

    def summary(self, epoch: int | None = None) -> str:
        """The counts as lines for people: ``dota: drawn 812 (p 0.40) of 1000 records``."""
        c = self.counts(epoch)
        lines = [f"mixture epoch {c['epoch']}: {c['epoch_size']} draws"]
        for name, s in c["subsets"].items():
            lines.append(
                f"  {name}: drawn {s['drawn']} ({s['distinct']} distinct; p {s['probability']:.3f})"
                f" of {s['pool']} records"
                + (f" (read {s['records']})" if s["pool"] != s["records"] else "")
            )
        return "\n".join(lines)

    def save_counts(self, path: str | Path, epoch: int | None = None) -> None:
        """Write :meth:`counts` as JSON (atomically)."""
        atomic_write_text(path, json.dumps(self.counts(epoch), indent=2) + "\n")


class MixtureBatches:
    """A mixture's draws cut into batches of indices into :meth:`Mixture.records`.

    The interface of the training batch samplers (``set_epoch``, ``len``, iteration over
    index lists). ``set_epoch`` moves the mixture to that epoch too.

    Without ``gsds``: the mixture's epoch order in consecutive batches, the last partial
    batch dropped. With ``gsds`` (one GSD per record of :meth:`Mixture.records`), the
    batches also meet the balanced GSD sampler's constraints (ScaleEarth App. C: an
    exact-GSD share per batch and ``min_bins`` distinct scale bins,
    :class:`~earthvlm.data.sampler.BalancedScaleSampler`) over the epoch's draws: the
    exact slots of each batch are filled from the draws of exact-GSD records, the other
    slots from the rest, each in a seeded order. So the weights decide the mix *within*
    the exact and the non-exact draws, and the constraint decides the share between them:
    where the draws' exact share differs from ``exact_share``, the smaller side's draws
    are reused (in a new order) before the larger side's are used up. The per-batch
    constraint wins over the weights by design; the run's counts record what was drawn.

    Args:
        mixture: The mixture.
        batch_size: Samples per batch.
        gsds: The GSD of each record of :meth:`Mixture.records`, to balance batches.
        exact_share: Exact-GSD share per batch (with ``gsds``).
        min_bins: Distinct scale bins per batch (with ``gsds``).
        seed: Seed of the balanced order (with ``gsds``; the draws use the mixture's).
        tiers: The tier scheme that defines the scale bins (default: ScaleEarth's).

    Raises:
        ValueError: If an epoch draws fewer samples than one batch, or ``gsds`` does not
            give one GSD per record.
        SamplerError: If the first epoch's draws cannot meet the constraints (the
            message says what is missing).
    """

    def __init__(
        self,
        mixture: Mixture,
        batch_size: int,
        *,
        gsds: Sequence[GSD] | None = None,
        exact_share: float = 0.25,
        min_bins: int = 2,
        seed: int = 0,
        tiers: TierScheme = DEFAULT_TIERS,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: must be an integer >= 1")
        if len(mixture) < batch_size:
            raise ValueError(
                f"the mixture draws {len(mixture)} samples per epoch, fewer than one batch of "
                f"{batch_size}; raise epoch_size or lower the batch size"
            )
        if gsds is not None and len(gsds) != len(mixture.records()):
            raise ValueError(
                f"gsds holds {len(gsds)} GSDs for the mixture's {len(mixture.records())} "
                "records; give one per record of Mixture.records()"
            )
        self.mixture, self.batch_size = mixture, batch_size
        self.gsds = list(gsds) if gsds is not None else None
        self.exact_share, self.min_bins, self.seed, self.tiers = exact_share, min_bins, seed, tiers
        if self.gsds is not None:
            self._balanced(mixture.flat_plan())  # fail now, not at the first epoch's end

    def _balanced(self, flat: np.ndarray) -> BalancedScaleSampler:
        assert self.gsds is not None
        sampler = BalancedScaleSampler(
            [self.gsds[k] for k in flat.tolist()],
            self.batch_size,
            exact_share=self.exact_share,
            min_bins=self.min_bins,
            num_batches=len(self),
            seed=self.seed,
            tiers=self.tiers,
        )
        sampler.set_epoch(self.mixture.epoch)
        return sampler

    def set_epoch(self, epoch: int) -> None:
        self.mixture.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.mixture) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        flat = self.mixture.flat_plan()
        if self.gsds is None:
            for i in range(len(self)):
                yield flat[i * self.batch_size : (i + 1) * self.batch_size].tolist()
            return
        for positions in self._balanced(flat):
            yield flat[positions].tolist()


__all__ = [
    "Mixture",
    "MixtureBatches",
    "MixtureConfig",
    "MixtureItem",
    "SubsetConfig",
    "WeightStep",
    "check_weights",
    "load_mixture_config",
    "mixture_from_dict",
]
