"""The typed run config: YAML recipes, dotted overrides, errors that name the field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from earthvlm.errors import EarthVLMError
from earthvlm.train.config import (
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
    parse_override,
)

BASE = {"data": {"records": "data/records.jsonl"}}


def test_overrides_set_dotted_keys_with_yaml_values(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("stage: 2\ndata: {records: r.jsonl}\noptim: {lr: 1.0e-4}\n")
    cfg = load_config(
        path,
        ["optim.lr=2e-5", "adapter.kind=lora", "optim.betas=[0.8, 0.99]", "data.synth.n_chips=9",
         "stop_after=null", "model.gradient_checkpointing=true"],
    )  # fmt: skip
    assert cfg.optim.lr == 2e-5  # "2e-5" is a string to YAML 1.1; a float field takes it
    assert cfg.adapter.kind == "lora" and cfg.optim.betas == (0.8, 0.99)
    assert cfg.data.synth is not None and cfg.data.synth.n_chips == 9
    assert cfg.model.gradient_checkpointing is True and cfg.stop_after is None
    assert parse_override("a.b= x ") == (["a", "b"], "x")


def test_overrides_never_mutate_the_callers_dict() -> None:
    data = {"data": {"records": "r.jsonl"}, "optim": {"lr": 1e-4}}
    out = apply_overrides(data, ["optim.lr=5e-4"])
    assert data["optim"]["lr"] == 1e-4 and out["optim"]["lr"] == "5e-4"


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ("optim.lrr=1", r"unknown config key 'optim\.lrr'; did you mean 'optim\.lr'"),
        ("optim.lr=fast", r"optim\.lr='fast': expected a number"),
        ("optim.lr=-1", r"optim\.lr=-1\.0: must be >= 0"),
        ("optim.grad_accum=0", r"optim\.grad_accum=0"),
        ("optim.grad_accum=1.5", r"optim\.grad_accum=1\.5: expected an integer"),
        ("adapter.kind=dora", r"adapter\.kind='dora': choose one of"),
        ("data.exact_share=2", r"data\.exact_share=2\.0: must be in \[0, 1\]"),
        ("stage=3", r"stage=3: choose 1"),
        ("precision=fp16", r"precision='fp16'"),
        ("model.load_in_4bit=true", r"model\.load_in_4bit=true needs model\.path"),
        ("adapter.sseu=yes please", r"adapter\.sseu='yes please': expected true or false"),
        ("optim=3", r"optim: expected a mapping"),
        ("optim.lr", r"expected key=value"),
    ],
)
def test_bad_values_raise_value_errors_naming_the_field(over: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config_from_dict(apply_overrides(BASE, [over]))


def test_cross_field_rules() -> None:
    with pytest.raises(ValueError, match="stage=1"):
        config_from_dict({**BASE, "stage": 1, "model": {"path": "m", "load_in_4bit": True}})
    with pytest.raises(ValueError, match="trains nothing"):
        config_from_dict({**BASE, "adapter": {"kind": "none", "sseu": False}})
    with pytest.raises(ValueError, match=r"missing \['data'\]"):
        config_from_dict({"stage": 2})
    with pytest.raises(ValueError, match=r"data\.records is required"):
        config_from_dict({"data": {}})


def test_configs_are_frozen_and_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = config_from_dict(apply_overrides(BASE, ["optim.lr=3e-4", "data.synth.n_chips=4"]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.lr = 1.0  # type: ignore[misc]
    path = tmp_path / "again.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg
    assert cfg.run_dir == Path("runs") / "run"


def test_every_field_has_a_docstring() -> None:
    import ast
    import inspect

    from earthvlm.models import recipe
    from earthvlm.train import config as module

    classes = {}
    for mod in (module, recipe):  # the model's sections live with the model
        tree = ast.parse(inspect.getsource(mod))
        classes.update({n.name: n for n in tree.body if isinstance(n, ast.ClassDef)})
    assert "TrainConfig" in classes and "ModelRecipe" in classes and len(classes) == 9
    for name, node in classes.items():
        body = node.body
        for i, stmt in enumerate(body):
            if isinstance(stmt, ast.AnnAssign):
                nxt = body[i + 1] if i + 1 < len(body) else None
                documented = isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                assert documented, f"{name}.{stmt.target.id} has no docstring"


def test_missing_and_malformed_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(EarthVLMError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: [1\n")
    with pytest.raises(EarthVLMError, match="not valid YAML"):
        load_config(bad)


def test_mixture_and_augment_sections_round_trip_through_yaml(tmp_path: Path) -> None:
    data = {"data": {"mixture": "configs/mixtures/example.yaml",
                     "augment": {"json_prob": 1, "synonym_sources": {"dota": "dota"},
                                 "resize_area_ratio": [0.5, 1]}}}  # fmt: skip
    cfg = config_from_dict(data)
    aug = cfg.data.augment
    assert cfg.data.records == "" and cfg.data.mixture == "configs/mixtures/example.yaml"
    assert aug is not None and aug.json_prob == 1.0 and aug.resize_area_ratio == (0.5, 1.0)
    assert aug.synonym_sources == {"dota": "dota"} and aug.templates  # defaults kept
    path = tmp_path / "run.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg
    assert config_from_dict({"data": {"records": "r.jsonl"}}).data.augment is None
