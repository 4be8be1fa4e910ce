"""BalancedScaleSampler (ScaleEarth App. C, Table 6).

"To prevent the scale gate from overfitting to sources with exact GSD metadata, each
mini-batch is constrained to contain an exact-GSD ratio of 0.25 and at least two
samples from distinct scale bins." Read here as:

* each batch holds ``round(exact_share * batch_size)`` exact-GSD samples and the rest
  from range / unknown samples;
* the known samples of each batch (exact and range, tiered by point estimate) span at
  least ``min_bins`` distinct tiers.

Batches are drawn from per-pool shuffled streams (reshuffled each pass), so every
sample is seen before any repeats within its pool. The sampler is torch-free and
yields lists of indices: pass it as ``batch_sampler`` to a DataLoader. Same seed and
epoch give the same batches; :meth:`set_epoch` moves to the next epoch's order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

from earthvlm.errors import SamplerError
from earthvlm.scale.gsd import GSD, GSDKind
from earthvlm.scale.tiers import DEFAULT_TIERS, TierScheme


class _Stream:
    """An endless stream over a pool of indices, reshuffled on every pass."""

    def __init__(self, pool: list[int], rng: random.Random) -> None:
        self.pool, self.rng, self.queue = pool, rng, []

    def take(self) -> int:
        if not self.queue:
            self.take_refill()
        return self.queue.pop()

    def take_matching(self, wanted: Callable[[int], bool]) -> int | None:
        """Take the next index for which ``wanted`` holds, looking at most one pass ahead.

        Indices passed over stay queued in order.
        """
        if not self.queue:
            self.take_refill()
        for j in range(len(self.queue) - 1, -1, -1):
            if wanted(self.queue[j]):
                return self.queue.pop(j)
        # not in the rest of this pass: look through the next pass too
        fresh = self.pool[:]
        self.rng.shuffle(fresh)
        self.queue = fresh + self.queue
        for j in range(len(fresh) - 1, -1, -1):
            if wanted(self.queue[j]):
                return self.queue.pop(j)
        return None

    def take_refill(self) -> None:
        self.queue = self.pool[:]
        self.rng.shuffle(self.queue)

    def put_back(self, index: int) -> None:
        """Return an index to the far end of the queue (it is drawn later in this pass)."""
        self.queue.insert(0, index)


class BalancedScaleSampler:
    """Batches with a fixed share of exact-GSD samples and at least two scale bins.

    Args:
        gsds: The GSD of each sample (for multi-image samples, of the first image).
        batch_size: Samples per batch.
        exact_share: Share of exact-GSD samples per batch (ScaleEarth: 0.25). ``1.0``
            for data that is all exact.
        min_bins: Distinct tiers each batch's known samples must span (ScaleEarth: 2).
        num_batches: Batches per epoch; default ``len(gsds) // batch_size``.
        seed: Seed of the shuffles.
        tiers: The tier scheme that defines the scale bins.

    Raises:
        SamplerError: When the data cannot satisfy the constraints (no exact samples,
            no non-exact samples for a share below 1, fewer distinct bins than
            ``min_bins``, or a batch too small to hold them), naming what is missing.
    """

    def __init__(
        self,
        gsds: Sequence[GSD],
        batch_size: int,
        *,
        exact_share: float = 0.25,
        min_bins: int = 2,
        num_batches: int | None = None,
        seed: int = 0,
        tiers: TierScheme = DEFAULT_TIERS,
    ) -> None:
        if batch_size < 1:
            raise SamplerError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= exact_share <= 1.0:
            raise SamplerError(f"exact_share must be in [0, 1], got {exact_share}")
        if min_bins < 0:
            raise SamplerError(f"min_bins must be >= 0, got {min_bins}")
        self.batch_size, self.exact_share, self.min_bins, self.seed = (
            batch_size,
            exact_share,
            min_bins,
            seed,
        )
        self.n_exact = round(exact_share * batch_size)
        self.bin_of: list[str | None] = [
            (t.value if (t := tiers.tier_of(g)) else None) for g in gsds
        ]
        self.exact = [i for i, g in enumerate(gsds) if g.kind is GSDKind.EXACT]
        self.other = [i for i, g in enumerate(gsds) if g.kind is not GSDKind.EXACT]
        if self.n_exact > 0 and not self.exact:
            raise SamplerError(
                f"exact_share={exact_share} asks for {self.n_exact} exact-GSD sample(s) per "
                "batch but the data has none; resolve GSDs first or set exact_share=0"
            )
        if self.n_exact < batch_size and not self.other:
            raise SamplerError(
                f"exact_share={exact_share} leaves {batch_size - self.n_exact} slot(s) per "
                "batch for range/unknown GSD samples but every sample is exact; set "
                "exact_share=1.0 for all-exact data"
            )
        if min_bins > batch_size:
            raise SamplerError(f"batch_size {batch_size} cannot hold {min_bins} distinct bins")
        # each slot holds one sample: the exact slots can cover at most n_exact of the
        # exact samples' bins, the other slots at most n_other of the others' bins
        n_other = batch_size - self.n_exact
        e_bins = {self.bin_of[i] for i in self.exact} - {None} if self.n_exact else set()
        o_bins = {self.bin_of[i] for i in self.other} - {None} if n_other else set()
        reachable = min(
            len(e_bins | o_bins), min(self.n_exact, len(e_bins)) + min(n_other, len(o_bins))
        )
        if min_bins > 0 and reachable < min_bins:
            raise SamplerError(
                f"each batch must span {min_bins} scale bins but at most {reachable} can be "
                f"reached: {self.n_exact} exact slot(s) over bins {sorted(e_bins) or 'none'}, "
                f"{n_other} range/unknown slot(s) over bins {sorted(o_bins) or 'none known'}; "
                "add data from other GSD tiers, change exact_share or lower min_bins"
            )
        self.num_batches = num_batches if num_batches is not None else len(gsds) // batch_size
        if self.num_batches < 1:
            raise SamplerError(
                f"{len(gsds)} samples make no batch of {batch_size}; pass num_batches"
            )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffles of ``epoch`` (call before iterating each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(f"{self.seed}:{self.epoch}")
        exact = _Stream(self.exact, rng) if self.exact else None
        other = _Stream(self.other, rng) if self.other else None
        for _ in range(self.num_batches):
            batch = [exact.take() for _ in range(self.n_exact)] if exact else []
            batch += [other.take() for _ in range(self.batch_size - self.n_exact)] if other else []
            yield self._spread(batch, exact, other)

    def _spread(self, batch: list[int], exact: _Stream | None, other: _Stream | None) -> list[int]:
        """Swap samples until the batch's known samples span ``min_bins`` bins.

        Only a sample of unknown GSD, or one whose bin appears more than once in the
        batch, is ever replaced (with one of a bin the batch lacks, from the same pool),
        so each swap adds a bin and none is lost. Replaced samples go back to their
        stream and are drawn later.
        """
        for _ in range(self.batch_size):
            bins = [self.bin_of[i] for i in batch]
            present = set(bins) - {None}
            if len(present) >= self.min_bins:
                return batch
            swapped = False
            for pos in range(len(batch)):
                b = bins[pos]
                if b is not None and bins.count(b) < 2:
                    continue
                stream = exact if pos < self.n_exact else other
                if stream is None:
                    continue
                new = stream.take_matching(
                    lambda i, present=present: (
                        self.bin_of[i] is not None and self.bin_of[i] not in present
                    )
                )
                if new is not None:
                    stream.put_back(batch[pos])
                    batch[pos] = new
                    swapped = True
                    break
            if not swapped:
                break
        raise SamplerError(
            f"could not build a batch spanning {self.min_bins} scale bins from the samples "
            "drawn; this should have been caught up front, please report it"
        )
