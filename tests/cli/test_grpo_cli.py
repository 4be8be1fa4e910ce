"""``earthvlm train-grpo``: argument handling and errors, without running training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import earthvlm.train.grpo as grpo_mod
from earthvlm.cli.grpo import bench_score_fn, grpo_command, row_record

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "grpo_tiny_cpu.yaml"
ENV = {"COLUMNS": "400"}  # rich does not fold messages


@pytest.fixture
def app() -> typer.Typer:
    # registered as cli/main.py registers it, plus a second command so that Typer keeps
    # the command name (a one-command app runs it without one)
    app = typer.Typer()
    app.command("train-grpo")(grpo_command)
    app.command("noop")(lambda: None)
    return app


@pytest.fixture
def tasks(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"source": "a.tif", "question": "Is there a ship?", "answer": "yes"}\n')
    return path


@pytest.fixture
def fake_train(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace ``train_grpo`` with a recorder: the command's wiring, not training."""
    calls: list[dict[str, Any]] = []

    def fake(cfg: Any, *, score_fn: Any = None, **kwargs: Any) -> Any:
        calls.append({"cfg": cfg, "score_fn": score_fn})
        return grpo_mod.GRPOResult(trainer=None, log_history=[{"reward": 0.25}, {"reward": 0.5}])

    monkeypatch.setattr(grpo_mod, "train_grpo", fake)
    return calls


def _run(app: typer.Typer, *args: str) -> Any:
    return CliRunner().invoke(app, ["train-grpo", *args], env=ENV)


def test_missing_config_exits_2_naming_the_path(app: typer.Typer, tmp_path: Path) -> None:
    result = _run(app, str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "nope.yaml: no such config file" in result.output


def test_set_without_equals_exits_2(app: typer.Typer, fake_train: list) -> None:
    result = _run(app, str(RECIPE), "--set", "grpo.lr")
    assert result.exit_code == 2
    assert "expected key=value" in result.output
    assert not fake_train


def test_set_unknown_field_suggests_the_right_one(app: typer.Typer, fake_train: list) -> None:
    result = _run(app, str(RECIPE), "--set", "grpo.num_generation=4")
    assert result.exit_code == 2
    assert "did you mean 'grpo.num_generations'" in result.output
    assert not fake_train


def test_set_bad_value_names_the_field(app: typer.Typer, fake_train: list) -> None:
    result = _run(app, str(RECIPE), "--set", "grpo.batch_size=3")
    assert result.exit_code == 2
    assert "grpo.batch_size=3 is not a multiple" in result.output


def test_unknown_bench_suggests_a_name(app: typer.Typer, tasks: Path, fake_train: list) -> None:
    result = _run(app, str(RECIPE), "--set", f"data.tasks={tasks}", "--bench", "synth_vq")
    assert result.exit_code == 2
    assert "--bench" in result.output and "synth_vqa" in result.output
    assert not fake_train


def test_missing_tasks_file_exits_2_before_training(app: typer.Typer, fake_train: list) -> None:
    result = _run(app, str(RECIPE), "--set", "data.tasks=/nonexistent/tasks.jsonl")
    assert result.exit_code == 2
    assert "data.tasks" in result.output and "no such file" in result.output
    assert not fake_train


def test_overrides_and_bench_reach_training(
    app: typer.Typer, tasks: Path, fake_train: list, tmp_path: Path
) -> None:
    recipe_before = RECIPE.read_text()
    result = _run(
        app, str(RECIPE), "--set", f"data.tasks={tasks}", "--set", "grpo.lr=2e-5",
        "--set", f"output_dir={tmp_path}", "--bench", "synth-vqa",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (call,) = fake_train
    assert call["cfg"].grpo.lr == 2e-5 and call["cfg"].data.tasks == str(tasks)
    assert call["cfg"].grpo.num_generations == 2  # untouched fields keep the recipe's
    score = call["score_fn"]
    assert score({"question": "Is there a ship?", "answer": "yes"}, "Yes.") == 1.0
    assert score({"question": "Is there a ship?", "answer": "yes"}, "no") == 0.0
    assert "0.2500" in result.output and "0.5000" in result.output
    assert "synth_vqa_reward" in result.output
    assert RECIPE.read_text() == recipe_before


def test_without_bench_training_gets_no_score_fn(
    app: typer.Typer, tasks: Path, fake_train: list, tmp_path: Path
) -> None:
    result = _run(
        app, str(RECIPE), "--set", f"data.tasks={tasks}", "--set", f"output_dir={tmp_path}"
    )
    assert result.exit_code == 0, result.output
    assert fake_train[0]["score_fn"] is None
    assert "exact match" in result.output


def test_count_answers_use_the_benchmark_tolerance() -> None:
    score = bench_score_fn("synth_vqa")
    row = {"question": "How many ships are there?", "answer": "12", "task": "counting"}
    assert row_record(row).task == "counting"
    assert score(row, "12") == 1.0
    assert score(row, "7") == 0.0
