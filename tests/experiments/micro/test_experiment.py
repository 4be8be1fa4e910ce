"""Micro-ScaleEarth: settings, recipes, the claim checks, and the reduced run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from earthvlm.errors import EarthVLMError
from earthvlm.eval.diagnostics.spoof import SpoofSample, spoof_curve
from earthvlm.eval.diagnostics.stats import cochran_q
from earthvlm.experiments.micro import PRESETS, VARIANTS, MicroConfig, preset
from earthvlm.experiments.micro.report import larger_member_share, step_changes
from earthvlm.experiments.micro.run import PAIRS, stage1_recipe, stage2_recipe, train_once
from earthvlm.train.config import config_from_dict

FIGURES = (
    "spoof_offset.png",
    "spoof_absolute.png",
    "pair_decisions.png",
    "gates.png",
    "calibration.png",
    "probe.png",
)


# -- settings and recipes --------------------------------------------------------------------


def test_presets_build_and_validate() -> None:
    for name in PRESETS:
        mc = preset(name)
        assert mc.preset == name and 0.0 in mc.deltas
    assert preset("quick", stage2_steps=5).stage2_steps == 5
    assert preset("quick", sets=["stage2_steps=6", "deltas=[-1, 0, 1]"]).deltas == (-1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"variants\[0\]=3: expected a string"):
        preset("quick", sets=["variants=[3]"])
    with pytest.raises(ValueError, match="preset 'fast' unknown"):
        preset("fast")
    with pytest.raises(ValueError, match=r"unknown config key 'steps'.*\(valid: .*stage1_steps"):
        preset("quick", steps=3)
    with pytest.raises(ValueError, match="spoof_per_class"):
        MicroConfig(n_test=60, spoof_per_class=20)
    with pytest.raises(ValueError, match="variants"):
        MicroConfig(variants=("b5",))
    with pytest.raises(ValueError, match="delta"):
        MicroConfig(deltas=(-1.0, 1.0))


def test_variants_share_one_recipe_but_their_own_fields(tmp_path: Path) -> None:
    mc = preset("ci")
    s1 = config_from_dict(stage1_recipe(mc, tmp_path, tmp_path / "train"))
    assert s1.stage == 1 and s1.optim.max_steps == mc.stage1_steps
    cfgs = {
        k: config_from_dict(stage2_recipe(mc, tmp_path, tmp_path / "train", k)) for k in VARIANTS
    }
    # same data, budget, schedule and rank everywhere
    for c in cfgs.values():
        assert c.model.path == str(tmp_path / "runs" / "stage1" / "final" / "model")
        assert (c.optim.max_steps, c.optim.lr, c.optim.batch_size, c.adapter.r) == (
            mc.stage2_steps, mc.stage2_lr, mc.batch_size, mc.rank
        )  # fmt: skip
        assert c.data.records == cfgs["b2"].data.records
    assert cfgs["b2"].adapter.kind == "lora" and not cfgs["b2"].data.gsd_as_text
    assert cfgs["b3"].adapter.kind == "lora" and cfgs["b3"].data.gsd_as_text
    assert cfgs["b4"].adapter.kind == "moelora" and not cfgs["b4"].adapter.sseu
    assert cfgs["cshlora"].adapter.kind == "cshlora" and cfgs["cshlora"].adapter.sseu


# -- claim checks on hand-made curves ------------------------------------------------------


def _absolute(score) -> object:
    samples = [SpoofSample(a, g) for a, g in [("small vehicle", 0.3), ("building", 2.0)] * 5]
    return spoof_curve(score, samples, gsd_values=(0.1, 0.15, 0.3, 0.6, 1.5, 3.0), n_boot=20)


def test_step_changes_tell_bucket_steps_from_smooth_changes() -> None:
    edges = (0.2, 1.0)

    def bucketed(chunk, gsd_m):  # answers depend only on the bucket of the claim
        return ["small vehicle" if g < 1.0 else "building" for g in gsd_m]

    def smooth(chunk, gsd_m):  # the answer moves with the claim inside a bucket
        return ["small vehicle" if g < 0.45 else "building" for g in gsd_m]

    assert step_changes(_absolute(bucketed), edges) == (10, 0)
    crossing, within = step_changes(_absolute(smooth), edges)
    assert crossing == 0 and within == 10
    share = larger_member_share(_absolute(bucketed))
    assert list(share) == [f"{a} / {b}" for a, b in PAIRS]
    np.testing.assert_allclose(share["building / small vehicle"], [0, 0, 0, 0, 1, 1])
    assert np.isnan(share["roundabout / storage tank"]).all()  # no such items


# -- the reduced run, end to end -------------------------------------------------------------


@pytest.fixture(scope="module")
def results(micro_ci: Path) -> dict:
    return json.loads((micro_ci / "results.json").read_text(encoding="utf-8"))


def test_the_run_writes_every_artifact(micro_ci: Path, results: dict) -> None:
    report = (micro_ci / "report.md").read_text(encoding="utf-8")
    for heading in ("## Summary", "## Claims", "## Statistical tests", "## Gate curves",
                    "## SSE-U calibration", "## Rank probe", "## Figures"):  # fmt: skip
        assert heading in report
    twin = json.loads((micro_ci / "report.json").read_text(encoding="utf-8"))
    assert twin["seed"] == 0 and twin["earthvlm_version"]
    assert twin["config"]["experiment"]["preset"] == "ci"
    for name in FIGURES:
        png = micro_ci / "figures" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"figures/{name}" in report
    assert set(results["models"]) == {"stage1", *VARIANTS}
    for key in VARIANTS:
        m = results["models"][key]
        assert len(m["offset"]["predictions"]) == len(preset("ci").deltas)
        assert len(m["absolute"]["predictions"]) == len(preset("ci").gsd_values_m)
    assert {c["claim"] for c in results["claims"]} and all(
        c["holds"] in (True, False) for c in results["claims"]
    )


def _correct(curve: dict) -> np.ndarray:
    return (np.asarray(curve["predictions"]) == np.asarray(curve["answers"])[None]).astype(int)


def test_cshlora_spoof_curve_varies_with_gsd_and_b2_does_not(results: dict) -> None:
    cs = results["models"]["cshlora"]["offset"]
    b2 = results["models"]["b2"]["offset"]
    # a paired test on the measured answers, recomputed from the raw predictions
    q_cs = cochran_q(_correct(cs))
    q_b2 = cochran_q(_correct(b2))
    assert q_cs.p_value < 1e-3, (q_cs, cs["accuracy"])
    assert q_b2.p_value >= 0.05, (q_b2, b2["accuracy"])
    # B2 never hears the GSD: its answers are the same at every claimed value
    assert all(row == b2["predictions"][0] for row in b2["predictions"])
    # CS-HLoRA answers best near the true GSD
    acc = np.asarray(cs["accuracy"])
    assert acc[cs["x"].index(0.0)] >= acc.max() - 0.05


def test_shuffled_gsd_is_the_control(results: dict) -> None:
    cs = results["models"]["cshlora"]["accuracy"]
    s1 = results["models"]["stage1"]["accuracy"]
    assert cs["true"]["ambiguous"] > cs["shuffled"]["ambiguous"] + 0.15
    assert s1["true"] == s1["shuffled"]  # stage 1 takes no GSD at all


def test_a_finished_run_is_reused_and_a_changed_one_refused(micro_ci: Path) -> None:
    mc = preset("ci")
    train_dir = micro_ci / "data" / "train"
    assert train_once(stage1_recipe(mc, micro_ci, train_dir), lambda s: None) == 0.0
    changed = stage1_recipe(preset("ci", stage1_lr=1e-3), micro_ci, train_dir)
    with pytest.raises(EarthVLMError, match="another config"):
        train_once(changed, lambda s: None)
