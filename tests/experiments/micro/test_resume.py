"""An interrupted micro-ScaleEarth run resumes where it stopped and says so; a training
run shows its progress where the output is not a terminal; the time left is estimated."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from earthvlm.experiments.micro import preset
from earthvlm.experiments.micro.run import TimeLeft, make_data, stage1_recipe, train_once
from earthvlm.train.progress import StepProgress, format_seconds


class Stop(Exception):
    """Stands for Ctrl-C in the middle of a run."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("micro")
    sizes = {"n_train": 24, "n_test": 12, "stage1_steps": 6, "batch_size": 4}
    mc = preset("quick", **sizes, save_every=2, spoof_per_class=2, variants=("b2",))
    train_dir, _ = make_data(mc, out, lambda s: None)
    return mc, out, train_dir


def test_an_interrupted_stage_resumes_from_its_last_checkpoint(tiny) -> None:
    mc, out, train_dir = tiny
    recipe = stage1_recipe(mc, out, train_dir)
    log: list[str] = []

    def stop_at_3(row: dict) -> None:
        if row["step"] == 3:
            raise Stop

    with pytest.raises(Stop):
        train_once(recipe, log.append, on_step=stop_at_3)
    run = out / "runs" / "stage1"
    assert (run / "checkpoint-2").is_dir() and not (run / "final").exists()

    seen: list[int] = []
    train_once(recipe, log.append, on_step=lambda row: seen.append(row["step"]))
    assert any("resuming at step 2 of 6" in line for line in log), log
    assert seen == [3, 4, 5, 6]  # from where it stopped, not from 0
    assert json.loads((run / "run.json").read_text())["finished"] is True
    assert train_once(recipe, log.append) == 0.0 and log[-1] == "stage1: reusing the finished run"


def test_progress_is_a_line_every_tenth_of_the_run_off_a_terminal() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=200)
    with StepProgress(console, "b2 (stage 2)", total=20) as progress:
        for step in range(1, 21):
            progress.update(step, 0.5)
    lines = buf.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        f"b2 (stage 2): step {k}/20" for k in range(2, 21, 2)
    ]
    assert "loss 0.5000" in lines[-1] and "steps/s" in lines[-1] and "left" in lines[-1]


def test_time_left_follows_the_measured_speed() -> None:
    mc = preset("quick", stage1_steps=100, stage2_steps=10, variants=("b2",))
    said: list[str] = []
    left = TimeLeft(mc, said.append)
    on_step = left.stepper("stage1", 100)
    for step in range(1, 41):  # one step per second (the first ones are not timed)
        on_step({"step": step, "seconds": float(step)})
    assert len(said) == 1 and "after the first steps" in said[0]
    # 60 stage-1 steps and the rest at the measured second per unit of work
    units = left.units_left()
    assert left.seconds_left() == pytest.approx(units, rel=1e-6)
    assert units > 60
    assert format_seconds(125) == "2 min 05 s" and format_seconds(float("nan")) == "?"
