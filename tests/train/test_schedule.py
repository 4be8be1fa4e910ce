"""Learning-rate and lambda_gsd schedules."""

from __future__ import annotations

import itertools

import pytest

from earthvlm.train.schedule import cosine_with_warmup, lambda_gsd, warmup_steps


def test_cosine_with_warmup_rises_then_decays_to_zero() -> None:
    total, ratio = 100, 0.05
    assert warmup_steps(total, ratio) == 5
    mults = [cosine_with_warmup(s, total, ratio) for s in range(total)]
    assert mults[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert mults[5] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(mults[5:]))
    assert mults[52] == pytest.approx(0.5, abs=0.02)
    assert 0 < mults[-1] < 0.01
    assert cosine_with_warmup(0, 10, 0.0) == 1.0  # no warm-up


def test_lambda_gsd_is_03_for_the_first_tenth_then_01() -> None:
    lams = [lambda_gsd(s, 50) for s in range(50)]
    assert lams[:5] == [0.3] * 5 and lams[5:] == [0.1] * 45
    assert lambda_gsd(0, 1, warmup=0.5, steady=0.2, frac=0.0) == 0.2
