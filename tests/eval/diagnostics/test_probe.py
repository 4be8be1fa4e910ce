"""The rank probe recovers a planted linear relation and nothing from noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from earthvlm.eval.diagnostics import plot_probe_heatmap, rank_groups, rank_probe

# r = 8 at the paper's shares: object [0], structure [1, 2, 3], semantic [4..7]
GROUPS = rank_groups([0.0, 1.0, 1.0, 1.0, 4.0, 4.0, 4.0, 4.0])


def planted(n: int = 500, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rank 0 encodes texture, rank 1 geometry, rank 4 the scene (two kinds); the rest
    is noise, and rank 7 is constant."""
    rng = np.random.default_rng(seed)
    texture = rng.gamma(2.0, 1.0, n)
    geometry = rng.uniform(0, 0.3, n)
    scene = rng.choice(["farmland", "urban"], n)
    z = rng.normal(size=(n, 8))
    z[:, 0] = 3 * texture + rng.normal(0, 0.1, n)
    z[:, 1] = -20 * geometry + rng.normal(0, 0.1, n)
    z[:, 4] = np.where(scene == "urban", 2.0, -2.0) + rng.normal(0, 0.2, n)
    z[:, 7] = 1.5
    return z, {"texture": texture, "geometry": geometry, "scene": scene}


def test_a_planted_relation_is_recovered_and_noise_is_not() -> None:
    z, factors = planted()
    res = rank_probe(z, factors, groups=GROUPS, seed=0)
    assert res.factors == ("texture", "geometry", "scene")
    assert res.kinds == {"texture": "continuous", "geometry": "continuous", "scene": "categorical"}
    assert res.r2[0, 0] > 0.9 and res.r2[1, 1] > 0.9 and res.r2[4, 2] > 0.9
    noise = [2, 3, 5, 6]
    assert np.all(np.abs(res.r2[noise]) < 0.05), res.r2[noise]
    assert np.all(np.abs(res.r2[0, 1:]) < 0.05)  # the texture rank says nothing else
    assert np.all(res.r2[7] <= 0) and np.all(res.r2[7] > -0.05)  # constant: the mean
    gm = res.group_means()
    assert gm.shape == (3, 3) and gm[0, 0] > 0.9
    assert set(res.per_class["scene"]) == {"farmland", "urban"}


def test_the_probe_is_deterministic_for_a_seed() -> None:
    z, factors = planted(200)
    a = rank_probe(z, factors, seed=3)
    np.testing.assert_array_equal(a.r2, rank_probe(z, factors, seed=3).r2)
    assert list(a.groups) == ["all"]


def test_bad_inputs_are_refused() -> None:
    z, factors = planted(40)
    with pytest.raises(ValueError, match="shape"):
        rank_probe(z, {"texture": factors["texture"][:-1]})
    with pytest.raises(ValueError, match="outside"):
        rank_probe(z, factors, groups={"g": [0, 8]})
    with pytest.raises(ValueError, match="per fold"):
        rank_probe(z[:5], {"t": factors["texture"][:5]})


def test_heatmap_and_markdown(tmp_path: Path) -> None:
    z, factors = planted(300)
    res = rank_probe(z, factors, groups=GROUPS)
    out = plot_probe_heatmap(res, tmp_path / "probe.png")
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 10_000
    md = res.to_markdown()
    assert "pooled R^2" in md and f"{res.r2[0, 0]:.3f}" in md
