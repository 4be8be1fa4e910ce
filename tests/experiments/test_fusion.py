"""The fusion experiment: its synthetic world, evaluation in the EarthMind-Bench format,
the modality attention score, the claim checks, the report and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from earthvlm.cli.fusion import fusion_app
from earthvlm.data.jsonl import read_records
from earthvlm.eval.judge_local import VocabularyJudge, local_judge
from earthvlm.experiments.fusion import preset, run_experiment
from earthvlm.experiments.fusion.evaluate import (
    MASResult,
    SettingScores,
    evaluate_setting,
    judge_settings,
    modality_attention,
)
from earthvlm.experiments.fusion.report import check_claims, paired_iou, paired_judge, paired_mcq
from earthvlm.experiments.fusion.run import FusionExpResult, MethodResult, train_config
from earthvlm.models import EarthVLM
from earthvlm.synth.catalogue import CLASSES
from earthvlm.synth.fusion_world import CHIP_CLASSES, WorldConfig, write_world
from earthvlm.teacher.fake_server import FakeChatServer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    write_world(out, WorldConfig(n_scenes=6, size_px=64, cloud_prob=0.7, seed=2, layout="scene"))
    return out


def test_the_world_asks_each_question_in_three_settings(world: Path, tmp_path: Path) -> None:
    manifest = json.loads((world / "manifest.json").read_text())
    assert manifest["scenes"] == 6  # scenes without a visible object are redrawn
    recs = read_records(world / "records.jsonl").records
    by_item: dict[str, dict[str, object]] = {}
    for r in recs:
        by_item.setdefault(r.meta["item"], {})[r.meta["setting"]] = r
    assert all(set(v) == {"fused", "optical", "sar"} for v in by_item.values())
    fused = next(r for r in recs if r.meta["setting"] == "fused" and r.task == "segmentation"
                 and r.meta["present"])  # fmt: skip
    assert [im.modality for im in fused.images] == ["optical", "sar"]
    assert fused.messages[-1].text() == "[SEG]" and fused.masks[0].image == 0
    mask = np.asarray(Image.open(world / str(fused.masks[0].path)))
    assert mask.shape == (64, 64) and set(np.unique(mask).tolist()) <= {0, 255} and mask.any()
    for r in recs:  # cloud-hidden items are from cloudy scenes, by the recorded share
        if r.task == "open":
            assert r.meta["cloud_hidden"] == bool(r.meta["hidden_classes"])
        else:
            assert r.meta["cloud_hidden"] == (r.meta["hidden_share"] > 0.5)
        assert not r.meta["cloud_hidden"] or r.meta["cloudy"]
    mcq = next(r for r in recs if r.task == "mcq")
    assert mcq.messages[-1].text() in mcq.meta["candidates"]
    assert mcq.meta["candidates"] == ["yes", "no"]
    scenes: dict[str, list] = {}
    for r in recs:
        if r.meta["setting"] == "fused":
            scenes.setdefault(r.id.split("-")[1], []).append(r)
    for items in scenes.values():
        mcqs = [r for r in items if r.task == "mcq"]
        yes = [r for r in mcqs if r.messages[-1].text() == "yes"]
        # up to two present classes (cloud-hidden ones first) and as many absent ones
        assert 1 <= len(yes) <= 2 and len(mcqs) == 2 * len(yes)
        assert len({r.meta["class"] for r in mcqs}) == len(mcqs)
        (open_q,) = [r for r in items if r.task == "open"]
        present = open_q.meta["classes"]
        assert {r.meta["class"] for r in yes} <= set(present)
        if open_q.meta["hidden_classes"]:
            assert yes[0].meta["class"] in open_q.meta["hidden_classes"]
        assert open_q.messages[-1].text().endswith(f"{present[-1]}.")
        assert all(c in open_q.messages[-1].text() for c in present)
    # the same seed writes the same bytes
    again = tmp_path / "again"
    write_world(again, WorldConfig(n_scenes=6, size_px=64, cloud_prob=0.7, seed=2, layout="scene"))
    assert (again / "records.jsonl").read_bytes() == (world / "records.jsonl").read_bytes()


def test_chip_layout_one_centred_object_per_scene(tmp_path: Path) -> None:
    cfg = WorldConfig(n_scenes=12, cloud_prob=0.8, seed=3)  # chips: the default
    write_world(tmp_path, cfg)
    recs = [r for r in read_records(tmp_path / "records.jsonl").records
            if r.meta["setting"] == "fused"]  # fmt: skip
    opens = [r for r in recs if r.task == "open"]
    assert len(opens) == 12
    for r in opens:
        (cls,) = r.meta["classes"]
        assert cls in CHIP_CLASSES and r.messages[-1].text() == f"{cls}."
    mcq = [r for r in recs if r.task == "mcq"]
    assert sum(r.meta["present"] for r in mcq) == 12 and len(mcq) == 24  # one yes, one no
    assert {r.meta["class"] for r in mcq} <= set(CHIP_CLASSES)
    seg = next(r for r in recs if r.task == "segmentation" and r.meta["present"])
    mask = np.asarray(Image.open(tmp_path / str(seg.masks[0].path))) > 0
    rows, cols = np.nonzero(mask)
    assert abs(rows.mean() - 32) <= 6 and abs(cols.mean() - 32) <= 6  # near the centre
    assert any(r.meta["cloud_hidden"] for r in recs)  # clouds hide some of the objects
    with pytest.raises(ValueError, match="layout"):
        WorldConfig(layout="tiles")
    with pytest.raises(ValueError, match="chip_classes"):
        WorldConfig(chip_classes=("ship",))
    with pytest.raises(ValueError, match="chip_length_px"):
        WorldConfig(chip_length_px=(16.0, 60.0))


def test_class_frequency_alone_does_not_answer_the_mcq(tmp_path: Path) -> None:
    from earthvlm.experiments.fusion.run import text_prior

    train, test = tmp_path / "train", tmp_path / "test"
    write_world(train, WorldConfig(n_scenes=64, seed=0))
    write_world(test, WorldConfig(n_scenes=32, seed=1))
    tr = read_records(train / "records.jsonl").records
    te = read_records(test / "records.jsonl").records
    answers = [r.messages[-1].text() for r in tr if r.task == "mcq"]
    assert 0.35 < answers.count("yes") / len(answers) < 0.65
    prior = text_prior(tr, te)
    assert set(prior) == {"majority", "class prior"}
    for correct in prior.values():
        n_test = sum(r.task == "mcq" and r.meta["setting"] == "fused" for r in te)
        assert len(correct) == n_test and np.mean(list(correct.values())) < 0.75  # near 50%


def test_presets_and_fields_are_checked() -> None:
    assert preset("ci").steps < preset("quick").steps < preset("full").steps
    with pytest.raises(ValueError, match="preset 'huge' unknown"):
        preset("huge")
    with pytest.raises(ValueError, match=r"unknown config key 'stepz'; did you mean 'steps'"):
        preset("ci", stepz=3)
    with pytest.raises(ValueError, match="methods"):
        preset("ci", methods=("hca", "attention"))
    with pytest.raises(ValueError, match="size_px=8"):  # the world's checks, up front
        preset("ci", size_px=8)
    with pytest.raises(ValueError, match="layout='tiles'"):
        preset("ci", layout="tiles")
    # the CLI's --set texts go through the same builder, after the named overrides
    assert preset("ci", sets=["lr=1e-3", "methods=[hca, concat]"], steps=5).methods == (
        "hca",
        "concat",
    )
    with pytest.raises(ValueError, match=r"steps=2\.5: expected an integer"):
        preset("ci", sets=["steps=2.5"])
    tc = train_config(preset("ci"), "cosine", Path("r.jsonl"), Path("out"))
    assert tc.fusion is not None and tc.fusion.method == "cosine" and tc.seg is not None


def _untrained(world: Path, method: str) -> EarthVLM:
    cfg = train_config(preset("ci"), method, world / "records.jsonl", world / "out")
    model = EarthVLM.build(cfg.recipe, name=method, max_length=cfg.data.max_length)
    return model.inference()


def test_an_untrained_model_is_scored_in_every_split(world: Path) -> None:
    tm = _untrained(world, "hca")
    recs = read_records(world / "records.jsonl").records
    fused = [r for r in recs if r.meta["setting"] == "fused"]
    fused = [r for r in fused if r.task == "mcq"][:3] + [
        r for r in fused if r.task == "segmentation"
    ][:3] + [r for r in fused if r.task == "open"][:2]  # fmt: skip
    scores = evaluate_setting(tm, fused, world, batch_size=8)
    assert len(scores.open_pred) == 2 and all(isinstance(v, str) for v in scores.open_pred.values())
    with local_judge(CLASSES) as (client, _):
        judged = judge_settings(client, {"fused": scores})
    assert judged.ledger.read == 2
    assert set(scores.open_score) <= set(scores.open_ref)
    assert all(1 <= v <= 5 for v in scores.open_score.values())
    table = scores.table()
    assert table["all"]["n_open"] == 2
    n_mcq = sum(r.task == "mcq" for r in fused)
    assert table["all"]["n_mcq"] == n_mcq
    assert table["clear"]["n_mcq"] + table["cloudy"]["n_mcq"] == n_mcq
    n_seg = sum(r.task == "segmentation" and r.meta["present"] for r in fused)
    assert table["all"]["n_seg"] == n_seg and 0.0 <= table["all"]["miou"] <= 1.0
    n_absent = sum(r.task == "segmentation" and not r.meta["present"] for r in fused)
    assert table["all"]["n_absent"] == n_absent


@pytest.mark.parametrize("method", ["hca", "concat"])
def test_mas_per_layer_sums_to_one(world: Path, method: str) -> None:
    tm = _untrained(world, method)
    recs = read_records(world / "records.jsonl").records
    fused = [r for r in recs if r.meta["setting"] == "fused"][:3]
    before = tm.hf_model.config._attn_implementation
    mas = modality_attention(tm, fused, world, batch_size=3)
    # eager attention is set for the measurement only
    assert tm.hf_model.config._attn_implementation == before
    assert mas.per_layer.shape == (2, 2) and mas.n == 3
    assert np.allclose(mas.per_layer.sum(-1), 1.0)  # Eq. 1: the shares sum to 1
    if method == "concat":
        assert mas.weight_gap is None  # nothing mixed: the gap is in the attention only
    else:
        assert mas.weight_gap is not None and abs(mas.weight_gap) < 1.0


def _scores(correct: dict[str, bool], hidden: set[str]) -> SettingScores:
    s = SettingScores()
    for k, v in correct.items():
        s.mcq[k] = v
        s.splits[k] = {"all", "cloudy" if k in hidden else "clear"} | (
            {"cloud_hidden"} if k in hidden else set()
        )
    return s


def test_claims_read_yes_only_for_a_significant_difference_of_the_claimed_sign() -> None:
    items = [f"i{k}" for k in range(12)]
    hidden = set(items)
    fused = _scores(dict.fromkeys(items, True), hidden)
    optical = _scores(dict.fromkeys(items, False), hidden)
    t = paired_mcq(fused, optical, "cloud_hidden")
    assert (t["n"], t["diff"]) == (12, 1.0) and t["p_value"] < 0.001
    few = _scores({"a": True, "b": False}, {"a", "b"})
    mas = MASResult(np.array([[0.5, 0.5], [0.6, 0.4]]), 0.0, 2)

    def result(f: SettingScores, o: SettingScores) -> FusionExpResult:
        res = FusionExpResult(preset("ci"), Path("."), {})
        res.methods["hca"] = MethodResult(
            "hca", "HCA", Path("."), {"fused": f, "optical": o, "sar": o}, mas, [], 0.5, 0.0
        )
        return res  # fmt: skip

    claims = {c["claim"]: c["holds"] for c in check_claims(result(fused, optical))}
    assert claims["hca: fusing SAR answers cloud-hidden MCQs better than optical alone"] == "yes"
    claims = {c["claim"]: c["holds"] for c in check_claims(result(few, _scores(
        {"a": False, "b": False}, {"a", "b"})))}  # fmt: skip
    assert claims["hca: fusing SAR answers cloud-hidden MCQs better than optical alone"] == (
        "not shown"  # one discordant item: the sign is right, chance is not ruled out
    )
    claims = {c["claim"]: c["holds"] for c in check_claims(result(optical, fused))}
    assert claims["hca: fusing SAR answers cloud-hidden MCQs better than optical alone"] == "no"
    iou = paired_iou(fused, optical, "cloud_hidden")
    assert iou["n"] == 0 and math.isnan(iou["diff"])
    # judge scores: paired on the items both settings have a score for
    fused.open_score.update({k: 5 for k in items})
    optical.open_score.update({k: 2 for k in items[:-1]})
    j = paired_judge(fused, optical, "cloud_hidden")
    assert (j["n"], j["better"], j["worse"]) == (11, 11, 0) and j["diff"] == 3.0
    assert j["p_value"] < 0.001
    claims = {c["claim"]: c["holds"] for c in check_claims(result(fused, optical))}
    key = (
        "hca: fusing SAR answers open questions about cloud-hidden objects better than "
        "optical alone"
    )
    assert claims[key] == "yes"


def test_the_cli_writes_the_world(tmp_path: Path) -> None:
    out = tmp_path / "w"
    r = CliRunner().invoke(fusion_app, ["world", str(out), "--n-scenes", "2", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert (out / "manifest.json").is_file() and "records" in r.output
    assert json.loads((out / "manifest.json").read_text())["config"]["layout"] == "chip"
    scenes = tmp_path / "s"
    r = CliRunner().invoke(fusion_app, ["world", str(scenes), "--n-scenes", "1", "--layout",
                                        "scene"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads((scenes / "manifest.json").read_text())["config"]["layout"] == "scene"
    bad = CliRunner().invoke(fusion_app, ["world", str(scenes), "--layout", "tiles"])
    assert bad.exit_code == 2 and "layout" in bad.output
    bad = CliRunner().invoke(fusion_app, ["run", "--preset", "huge"])
    assert bad.exit_code == 2 and "unknown" in bad.output
    bad = CliRunner().invoke(fusion_app, ["run", "--preset", "ci", "--judge-url", "http://x/v1"])
    assert bad.exit_code == 2 and "judge_model" in bad.output


def test_the_cli_asks_the_given_judge(tmp_path: Path) -> None:
    """``--judge-url``: the open-ended answers go to that server (here a judge on
    loopback), which the report names instead of the local judge."""
    judge = VocabularyJudge(CLASSES)
    with FakeChatServer(judge) as server:
        args = ["run", "--preset", "ci", "--methods", "hca", "--steps", "1"]
        args += ["--out", str(tmp_path / "exp"), "--judge-url", server.url, "--judge-model", "j1"]
        r = CliRunner().invoke(fusion_app, args)
        assert r.exit_code == 0, r.output
        n_calls = server.n_calls
    data = json.loads((tmp_path / "exp" / "report.json").read_text())
    assert data["judge"] == f"LLM judge `j1` at {server.url}"
    n_open = data["methods"]["hca"]["scores"]["fused"]["all"]["n_open"]
    # every answer generated was sent (empty answers are scored 1 without a request)
    sent = data["methods"]["hca"]["judge"]["requests"]["http_requests"]
    assert n_calls == sent and 0 < sent <= 3 * n_open
    assert (tmp_path / "exp" / "judge-cache").is_dir()


def test_the_ci_experiment_writes_its_report(tmp_path: Path) -> None:
    cfg = preset("ci", methods=("hca", "concat"), steps=4, n_train=8, n_test=4)
    res = run_experiment(cfg, tmp_path / "exp")
    assert set(res.methods) == {"hca", "concat"}
    report = (tmp_path / "exp" / "report.md").read_text()
    assert "## Claims, checked" in report and "mas_per_layer.png" in report
    data = json.loads((tmp_path / "exp" / "report.json").read_text())
    assert set(data["methods"]["hca"]["scores"]) == {"fused", "optical", "sar"}
    assert len(data["methods"]["concat"]["mas"]["gap"]) == 2
    assert (tmp_path / "exp" / "figures" / "mas_per_layer.png").stat().st_size > 1000
    # open-ended answers judged through the client, by the local judge, said so
    assert "not an LLM" in data["judge"] and "not an LLM" in report
    hca = data["methods"]["hca"]
    n_open = hca["scores"]["fused"]["all"]["n_open"]
    assert n_open >= 4 and hca["judge"]["ledger"]["read"] == 3 * n_open
    lines = (tmp_path / "exp" / "open_answers.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 2 * 3 * n_open  # methods x settings x items
    assert {r["setting"] for r in rows} == {"fused", "optical", "sar"}
    assert all(r["reference"].endswith(".") for r in rows)
    # a second call reuses the finished runs and the data
    again = run_experiment(cfg, tmp_path / "exp")
    assert again.methods["hca"].run_dir == res.methods["hca"].run_dir
