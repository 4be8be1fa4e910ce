"""BalancedScaleSampler: a fixed exact-GSD share and at least two scale bins per batch."""

from __future__ import annotations

from collections import Counter

import pytest

from earthvlm.data.sampler import BalancedScaleSampler
from earthvlm.errors import SamplerError
from earthvlm.scale.gsd import GSD, GSDKind
from earthvlm.scale.tiers import tier_of

HIGH = GSD.exact(0.1)  # high tier (< 0.2 m)
MID = GSD.exact(0.5)  # mid tier (0.2-1 m)
LOW_B = GSD.exact(10.0)  # low-b tier (>= 5 m)
RANGE_LOW_A = GSD.range(2.0, 4.0)  # geometric mean 2.83 m: low-a
RANGE_HIGH = GSD.range(0.05, 0.15)  # geometric mean 0.087 m: high
UNKNOWN = GSD.unknown()


def _mixed() -> list[GSD]:
    """160 samples: 40 exact (high, mid), 80 ranges (low-a, high), 40 unknown."""
    return [HIGH] * 20 + [MID] * 20 + [RANGE_LOW_A] * 40 + [RANGE_HIGH] * 40 + [UNKNOWN] * 40


def _n_exact(gsds: list[GSD], batch: list[int]) -> int:
    return sum(gsds[i].kind is GSDKind.EXACT for i in batch)


def _known_tiers(gsds: list[GSD], batch: list[int]) -> set[str]:
    return {t.value for i in batch if (t := tier_of(gsds[i])) is not None}


def _assert_balanced(gsds: list[GSD], batches: list[list[int]], size: int, n_exact: int) -> None:
    assert batches
    for k, b in enumerate(batches):
        assert len(b) == size, f"batch {k}"
        assert all(0 <= i < len(gsds) for i in b)
        assert _n_exact(gsds, b) == n_exact, f"batch {k}: {[str(gsds[i]) for i in b]}"
        assert len(_known_tiers(gsds, b)) >= 2, f"batch {k}: {[str(gsds[i]) for i in b]}"


@pytest.mark.parametrize("batch_size", [4, 8, 12, 16])
def test_every_batch_has_the_exact_share_and_two_tiers(batch_size: int) -> None:
    gsds = _mixed()
    s = BalancedScaleSampler(gsds, batch_size, seed=3)
    batches = list(s)
    assert len(batches) == len(s) == len(gsds) // batch_size
    _assert_balanced(gsds, batches, batch_size, round(0.25 * batch_size))


def test_exact_samples_come_first_in_each_batch() -> None:
    gsds = _mixed()
    for b in BalancedScaleSampler(gsds, 8, seed=1):
        assert [gsds[i].kind is GSDKind.EXACT for i in b] == [True] * 2 + [False] * 6


def test_same_seed_same_batches_different_seed_different() -> None:
    gsds = _mixed()
    a = list(BalancedScaleSampler(gsds, 8, seed=7))
    b = list(BalancedScaleSampler(gsds, 8, seed=7))
    c = list(BalancedScaleSampler(gsds, 8, seed=8))
    assert a == b
    assert a != c
    # iterating the same sampler twice without set_epoch repeats the epoch
    s = BalancedScaleSampler(gsds, 8, seed=7)
    assert list(s) == list(s) == a


def test_set_epoch_changes_the_order_deterministically() -> None:
    gsds = _mixed()
    s = BalancedScaleSampler(gsds, 8, seed=7)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert e1 != e0
    other = BalancedScaleSampler(gsds, 8, seed=7)
    other.set_epoch(1)
    assert list(other) == e1
    s.set_epoch(0)
    assert list(s) == e0
    s.set_epoch(2)
    assert list(s) not in (e0, e1)


def test_len_and_num_batches() -> None:
    gsds = _mixed()
    assert len(BalancedScaleSampler(gsds, 8)) == 20
    assert len(BalancedScaleSampler(gsds, 7)) == 160 // 7
    s = BalancedScaleSampler(gsds, 8, num_batches=55)
    assert len(s) == 55
    assert len(list(s)) == 55
    # fewer samples than one batch: possible only with num_batches given
    small = [HIGH, UNKNOWN, RANGE_LOW_A]
    with pytest.raises(SamplerError, match="make no batch of 4; pass num_batches"):
        BalancedScaleSampler(small, 4)
    batches = list(BalancedScaleSampler(small, 4, num_batches=3))
    _assert_balanced(small, batches, 4, 1)


def test_every_sample_drawn_once_per_pass_without_bin_constraint() -> None:
    # 20 exact and 60 others, 2 + 6 per batch: 10 batches are exactly one pass of each pool
    gsds = [HIGH] * 10 + [MID] * 10 + [RANGE_LOW_A] * 30 + [UNKNOWN] * 30
    s = BalancedScaleSampler(gsds, 8, min_bins=0, num_batches=30, seed=5)
    batches = list(s)
    for p in range(3):
        one_pass = batches[10 * p : 10 * (p + 1)]
        drawn = Counter(i for b in one_pass for i in b)
        assert drawn == Counter(range(80)), f"pass {p}"
    # and the passes are reshuffled
    assert batches[:10] != batches[10:20]


@pytest.mark.parametrize("seed", range(5))
def test_every_sample_drawn_in_a_long_enough_epoch(seed: int) -> None:
    gsds = _mixed()
    s = BalancedScaleSampler(gsds, 8, seed=seed, num_batches=40)  # two passes of each pool
    drawn = Counter(i for b in s for i in b)
    assert set(drawn) == set(range(len(gsds)))
    # nothing is drawn far more often than the rest
    assert max(drawn.values()) <= 4


def test_rare_second_tier_still_gives_two_bins_per_batch() -> None:
    # 2 of 100 exact samples are in a second tier; the others cannot supply one
    gsds = [HIGH] * 98 + [LOW_B] * 2 + [UNKNOWN] * 200 + [RANGE_HIGH] * 100
    for seed in range(3):
        s = BalancedScaleSampler(gsds, 8, seed=seed)
        batches = list(s)
        assert len(batches) == 50
        _assert_balanced(gsds, batches, 8, 2)
        for b in batches:
            assert {98, 99} & set(b)


def test_rare_second_tier_among_the_non_exact_samples() -> None:
    gsds = [HIGH] * 50 + [UNKNOWN] * 148 + [RANGE_LOW_A] * 2
    batches = list(BalancedScaleSampler(gsds, 8, seed=0))
    _assert_balanced(gsds, batches, 8, 2)


def test_all_exact_data_with_share_one() -> None:
    gsds = [HIGH] * 30 + [MID] * 10
    s = BalancedScaleSampler(gsds, 4, exact_share=1.0)
    batches = list(s)
    assert len(batches) == 10
    _assert_balanced(gsds, batches, 4, 4)


def test_share_zero_uses_no_exact_samples() -> None:
    gsds = _mixed()
    batches = list(BalancedScaleSampler(gsds, 8, exact_share=0.0))
    for b in batches:
        assert _n_exact(gsds, b) == 0
        assert len(_known_tiers(gsds, b)) >= 2


def test_range_tiered_by_geometric_mean() -> None:
    # range 0.1-4 m: geometric mean 0.63 m (mid), although its arithmetic mean is low-a
    wide = GSD.range(0.1, 4.0)
    gsds = [HIGH] * 10 + [wide] * 30
    for b in BalancedScaleSampler(gsds, 4, seed=2):
        assert _known_tiers(gsds, b) == {"high", "mid"}


# -- configurations that cannot work -----------------------------------------------------


def test_no_exact_samples_with_a_positive_share() -> None:
    gsds = [RANGE_LOW_A] * 20 + [RANGE_HIGH] * 20
    with pytest.raises(SamplerError, match=r"has none; resolve GSDs first or set exact_share=0"):
        BalancedScaleSampler(gsds, 8)


def test_all_exact_with_a_share_below_one() -> None:
    gsds = [HIGH] * 20 + [MID] * 20
    with pytest.raises(SamplerError, match=r"every sample is exact; set exact_share=1.0"):
        BalancedScaleSampler(gsds, 8)


def test_only_one_tier_with_min_bins_two() -> None:
    gsds = [HIGH] * 10 + [RANGE_HIGH] * 20 + [UNKNOWN] * 20
    with pytest.raises(
        SamplerError, match=r"span 2 scale bins but at most 1 can be reached.*\['high'\]"
    ):
        BalancedScaleSampler(gsds, 8)
    # one bin is fine when one is asked for
    assert len(list(BalancedScaleSampler(gsds, 8, min_bins=1))) == 6


def test_no_known_gsd_outside_the_exact_pool_counts_only_drawable_bins() -> None:
    # with exact_share=0 the exact samples cannot be drawn, so their tier does not count
    gsds = [MID] * 10 + [RANGE_HIGH] * 20 + [UNKNOWN] * 20
    with pytest.raises(SamplerError, match="at most 1 can be reached"):
        BalancedScaleSampler(gsds, 8, exact_share=0.0)


def test_all_unknown() -> None:
    gsds = [UNKNOWN] * 40
    with pytest.raises(SamplerError, match="none known"):
        BalancedScaleSampler(gsds, 8, exact_share=0.0)


def test_batch_smaller_than_min_bins() -> None:
    gsds = [RANGE_HIGH] * 10 + [RANGE_LOW_A] * 10 + [GSD.range(0.3, 0.5)] * 10
    with pytest.raises(SamplerError, match="batch_size 2 cannot hold 3 distinct bins"):
        BalancedScaleSampler(gsds, 2, exact_share=0.0, min_bins=3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"batch_size": 8, "exact_share": 1.5}, r"exact_share must be in \[0, 1\]"),
        ({"batch_size": 8, "exact_share": -0.1}, r"exact_share must be in \[0, 1\]"),
        ({"batch_size": 8, "min_bins": -1}, "min_bins must be >= 0"),
    ],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(SamplerError, match=match):
        BalancedScaleSampler(_mixed(), **kwargs)


def test_sampler_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        BalancedScaleSampler([UNKNOWN] * 8, 8)


def test_single_known_sample_is_not_swapped_back_and_forth() -> None:
    gsds = [HIGH, LOW_B, UNKNOWN, UNKNOWN, UNKNOWN, GSD.range(0.3, 0.5)]
    batches = list(BalancedScaleSampler(gsds, 4, num_batches=5, seed=0))
    _assert_balanced(gsds, batches, 4, 1)


def test_one_known_slot_per_batch_is_refused_up_front() -> None:
    gsds = [HIGH] * 10 + [MID] * 10 + [UNKNOWN] * 60  # batch of 4: 1 exact + 3 unknown
    with pytest.raises(SamplerError, match="span 2 scale bins"):
        BalancedScaleSampler(gsds, 4)
