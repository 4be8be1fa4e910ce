"""Run micro-ScaleEarth end to end: data, stage 1, stage-2 variants, every diagnostic.

Folder layout of a run (``out``)::

    data/train, data/test       generated chips (GeoTIFFs + records.jsonl + manifest)
    runs/stage1, runs/<variant> training runs (config.yaml, checkpoints, metrics.jsonl)
    figures/*.png               spoof curves, gates, calibration, probe heatmap
    report.md, report.json      the numbers, the claims, the config, seed and version

A rerun with the same settings reuses finished data and training runs (each is
complete or absent: the dataset manifest and the checkpoint marker are written last),
and a training run stopped part-way resumes from its last checkpoint (every
``save_every`` steps; the SFT loop resumes exactly), so an interrupted run goes on where
it stopped. Each training run shows its progress (a bar on a terminal, a line every
tenth of the run elsewhere), and after the first steps the run says how long the whole
experiment has left (:class:`TimeLeft`).
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from earthvlm.data.jsonl import read_records
from earthvlm.data.record import Record
from earthvlm.errors import EarthVLMError
from earthvlm.eval.choice import ChoiceScorer
from earthvlm.eval.diagnose import calibrate_model, probe_model, spoof_model
from earthvlm.eval.diagnostics import bootstrap_ci, gate_curves
from earthvlm.experiments.micro.config import VARIANTS, MicroConfig
from earthvlm.experiments.micro.report import write_experiment_report
from earthvlm.experiments.micro.results import CLASSES, PAIRS, ExperimentResult, ModelResult
from earthvlm.models.earthvlm import EarthVLM
from earthvlm.models.saved import complete_checkpoints
from earthvlm.scale.gsd import GSD
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.train.checkpoint import COMPLETE_FILE
from earthvlm.train.config import config_from_dict, load_config
from earthvlm.train.progress import format_seconds
from earthvlm.train.sft import RESUMABLE_CHANGES, train
from earthvlm.train.threads import CpuThreads

Log = Callable[[str], None]


# -- data and training --------------------------------------------------------------------


def make_data(mc: MicroConfig, out: Path, log: Log) -> tuple[Path, Path]:
    """Generate the training and held-out chips (reused when complete)."""
    dirs = []
    for split, n, seed in (
        ("train", mc.n_train, mc.train_data_seed),
        ("test", mc.n_test, mc.test_data_seed),
    ):
        d = out / "data" / split
        want = {"n_chips": n, "seed": seed, "chip_size_px": mc.chip_size_px}
        manifest = d / "manifest.json"
        if manifest.is_file():
            got = json.loads(manifest.read_text()).get("config", {})
            if any(got.get(k) != v for k, v in want.items()):
                raise EarthVLMError(
                    f"{d} holds another dataset ({ {k: got.get(k) for k in want} }, want "
                    f"{want}); give another output folder or delete it"
                )
            log(f"data/{split}: reusing {n} chips")
        else:
            log(f"data/{split}: generating {n} plain chips (seed {seed})")
            generate_dataset(
                d,
                SynthConfig(
                    n_scenes=0,
                    n_chips=n,
                    chip_size_px=mc.chip_size_px,
                    chip_style="plain",
                    seed=seed,
                    split=split,
                ),
            )
        dirs.append(d)
    return dirs[0], dirs[1]


def stage1_recipe(mc: MicroConfig, out: Path, train_dir: Path) -> dict[str, Any]:
    """Stage 1 (Table 4's structure on a tiny backbone): everything trains, no GSD."""
    return {
        "stage": 1,
        "name": "stage1",
        "output_dir": str(out / "runs"),
        "seed": mc.seed,
        "model": {"path": None, "family": mc.family, "size": "tiny"},
        "data": {
            "records": str(train_dir / "records.jsonl"),
            "sampler": "shuffle",
            "max_length": 512,
        },
        "optim": {
            "lr": mc.stage1_lr,
            "vision_lr": mc.stage1_lr,
            "weight_decay": 0.01,
            "warmup_ratio": 0.05,
            "max_grad_norm": 1.0,
            "batch_size": mc.batch_size,
            "grad_accum": 1,
            "max_steps": mc.stage1_steps,
        },
        "save_every": mc.save_every,
        "keep_last": 1,
        "progress": True,
    }


def stage2_recipe(mc: MicroConfig, out: Path, train_dir: Path, key: str) -> dict[str, Any]:
    """Stage 2 (Table 6's structure): one variant over the shared recipe."""
    base: dict[str, Any] = {
        "stage": 2,
        "name": key,
        "output_dir": str(out / "runs"),
        "seed": mc.seed,
        "model": {"path": str(out / "runs" / "stage1" / "final" / "model"), "family": mc.family},
        "data": {
            "records": str(train_dir / "records.jsonl"),
            "sampler": "balanced",
            "exact_share": 1.0,
            "min_bins": 2,
            "max_length": 512,
        },
        "adapter": {"r": mc.rank, "alpha": 32.0, "dropout": 0.0},
        "optim": {
            "lr": mc.stage2_lr,
            "head_lr": mc.stage2_lr,
            "weight_decay": 1e-3,
            "warmup_ratio": 0.05,
            "max_grad_norm": 5.0,
            "batch_size": mc.batch_size,
            "grad_accum": 1,
            "max_steps": mc.stage2_steps,
        },
        "save_every": mc.save_every,
        "keep_last": 1,
        "progress": True,
    }
    for section, values in VARIANTS[key].fields.items():
        base[section] = {**base[section], **values}
    return base


#: Top-level run fields a finished run may differ in and still be reused (how it was
#: shown and checkpointed, not what it trained).
_REUSABLE = tuple(k for k in sorted(RESUMABLE_CHANGES) if "." not in k)


def same_run(saved: Path, cfg: Any) -> bool:
    """Whether the run folder's ``config.yaml`` describes the run ``cfg`` describes
    (fields that only change how it is shown or checkpointed aside)."""
    try:
        old = load_config(saved)
    except EarthVLMError:
        return False
    return dataclasses.replace(old, **{k: getattr(cfg, k) for k in _REUSABLE}) == cfg


def train_once(
    recipe: dict[str, Any],
    log: Log,
    *,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> float:
    """Train a recipe unless its run folder already finished with the same config; a run
    stopped part-way resumes from its newest checkpoint (and says so).

    Returns:
        Seconds spent training (0 when reused).

    Raises:
        EarthVLMError: If the folder holds a finished run with another config (a
            checkpoint of another config is refused by the loop, naming the change).
    """
    cfg = config_from_dict(recipe)
    run = Path(cfg.output_dir) / cfg.name
    if (run / "final" / COMPLETE_FILE).is_file():
        if not same_run(run / "config.yaml", cfg):
            raise EarthVLMError(
                f"{run} finished with another config; give another output folder or delete it"
            )
        log(f"{cfg.name}: reusing the finished run")
        return 0.0
    steps = cfg.optim.max_steps
    done = complete_checkpoints(run)
    if done:
        step = int(done[-1].name.rpartition("-")[2])
        log(f"{cfg.name}: resuming at step {step} of {steps} (from {done[-1]})")
    else:
        log(f"{cfg.name}: training {steps} steps")
    t0 = time.perf_counter()
    result = train(cfg, on_step=on_step)
    if not result.finished:
        raise EarthVLMError(f"{run}: training stopped at step {result.step}/{steps}")
    return time.perf_counter() - t0


class TimeLeft:
    """The time the whole experiment has left, from the speed measured so far.

    Work is counted in stage-1 step equivalents: a stage-2 step and a chip scored in the
    evaluation cost fixed multiples of a stage-1 step (:data:`STAGE2_STEP_COST`,
    :data:`EVAL_COST_PER_ITEM`, measured on the quick preset), and the seconds per
    equivalent come from the steps timed in this call, so the estimate follows the
    machine's load.
    """

    def __init__(self, mc: MicroConfig, log: Log) -> None:
        self.log = log
        self.todo: dict[str, float] = {"stage1": float(mc.stage1_steps)}
        for key in mc.variants:
            self.todo[key] = mc.stage2_steps * STAGE2_STEP_COST
        self.todo["evaluation"] = EVAL_COST_PER_ITEM * eval_items(mc)
        self.done_units = 0.0
        self.seconds = 0.0
        self.said = False

    def units_left(self) -> float:
        return sum(self.todo.values())

    def seconds_left(self) -> float:
        """NaN until some work was timed."""
        if self.done_units <= 0:
            return float("nan")
        return self.units_left() * self.seconds / self.done_units

    def skip(self, key: str) -> None:
        """``key``'s work is not needed (reused)."""
        self.todo.pop(key, None)

    def stepper(self, key: str, steps_total: int) -> Callable[[dict[str, Any]], None]:
        """An ``on_step`` for training run ``key``: times its steps after the first
        :data:`WARMUP_STEPS`, and says the time left once :data:`FIRST_STEPS` are timed."""
        unit = self.todo.get(key, 0.0) / max(1, steps_total)
        first: dict[str, float] = {}

        def on_step(row: dict[str, Any]) -> None:
            if not first:
                first["start"] = row["step"]
            if "step" not in first:  # the clock starts after a few warm-up steps
                if row["step"] - first["start"] < WARMUP_STEPS:
                    return
                first.update(step=row["step"], seconds=row["seconds"], base=self.seconds)
                first["units"] = self.done_units
                return
            n = row["step"] - first["step"]
            self.seconds = first["base"] + row["seconds"] - first["seconds"]
            self.done_units = first["units"] + n * unit
            self.todo[key] = max(0.0, (steps_total - row["step"]) * unit)
            if not self.said and n >= FIRST_STEPS:
                self.said = True
                self.say("after the first steps")

        return on_step

    def say(self, when: str) -> None:
        left = self.seconds_left()
        if left == left:  # not NaN
            self.log(f"time left for the whole run: about {format_seconds(left)} ({when})")


#: Cost of one stage-2 step of any variant in stage-1 steps, and of scoring one chip
#: under one GSD (every candidate answer): measured on the quick preset (2 cores, 2026-12-08:
#: stage 1 0.148 s a step, stage 2 0.15-0.16 s, evaluation 4.8 ms a chip).
STAGE2_STEP_COST = 1.05
EVAL_COST_PER_ITEM = 0.033


def eval_items(mc: MicroConfig) -> int:
    """Chips scored after training: every model with the true and a shuffled GSD, each
    variant's spoof sweeps (6 classes x ``spoof_per_class`` per claimed GSD), and the
    CS-HLoRA diagnostics (about three passes over the held-out chips)."""
    sweeps = len(mc.deltas) + len(mc.gsd_values_m)
    n = (1 + len(mc.variants)) * 2 * mc.n_test + len(mc.variants) * 6 * mc.spoof_per_class * sweeps
    return n + (3 * mc.n_test if "cshlora" in mc.variants else 0)


#: Steps of each training run left untimed (start-up: the loader, first allocations).
WARMUP_STEPS = 5
#: Timed steps before the first estimate.
FIRST_STEPS = 30


# -- evaluation ---------------------------------------------------------------------------


def _group_accuracy(records: Sequence[Record], preds: Sequence[str]) -> dict[str, float]:
    buckets: dict[str, list[bool]] = {"all": []}
    for r, p in zip(records, preds, strict=True):
        ok = p == r.messages[-1].text()
        buckets["all"].append(ok)
        group = "ambiguous" if r.meta.get("ambiguous_pair") else "unambiguous"
        buckets.setdefault(group, []).append(ok)
        buckets.setdefault(f"tier:{r.meta.get('tier', '?')}", []).append(ok)
    return {k: float(np.mean(v)) for k, v in sorted(buckets.items())}


def shuffled_gsds(records: Sequence[Record], seed: int) -> list[GSD]:
    """The records' own GSDs, permuted (the control: right distribution, wrong image)."""
    gsds = [r.images[0].gsd for r in records]
    random.Random(seed).shuffle(gsds)
    return gsds


def evaluate(
    model: EarthVLM,
    scorer: ChoiceScorer,
    records: Sequence[Record],
    mc: MicroConfig,
    train_range_m: tuple[float, float],
    *,
    sweeps: bool,
) -> ModelResult:
    """Accuracy with the true and a shuffled GSD, then (``sweeps``) both spoof sweeps."""
    key = model.name
    label = "stage 1 (no GSD)" if key == "stage1" else VARIANTS[key].label
    res = ModelResult(key, label, model.trainable_parameters(), 0.0)
    true_preds = scorer.predict(records, [r.images[0].gsd for r in records])
    res.accuracy["true"] = _group_accuracy(records, true_preds)
    res.accuracy["shuffled"] = _group_accuracy(
        records, scorer.predict(records, shuffled_gsds(records, mc.seed))
    )
    amb = [
        p == r.messages[-1].text()
        for r, p in zip(records, true_preds, strict=True)
        if r.meta.get("ambiguous_pair")
    ]
    res.ambiguous_ci = bootstrap_ci(np.asarray(amb, float), n_boot=mc.n_boot, seed=mc.seed)
    if not sweeps:
        return res

    common = dict(
        pairs=PAIRS,
        train_range_m=train_range_m,
        n_per_class=mc.spoof_per_class,
        n_boot=mc.n_boot,
        seed=mc.seed,
    )
    res.offset = spoof_model(scorer, records, deltas=mc.deltas, **common)
    res.absolute = spoof_model(scorer, records, gsd_values_m=mc.gsd_values_m, **common)
    return res


# -- the whole run --------------------------------------------------------------------------


def run_experiment(mc: MicroConfig, out: str | Path, *, log: Log = print) -> ExperimentResult:
    """Train and diagnose every model of the experiment; write the report and figures.

    Args:
        mc: The settings (see :func:`earthvlm.experiments.micro.preset`).
        out: The run folder (created; a finished part of an earlier run with the same
            settings is reused).
        log: Receives one line per step.

    Returns:
        The measured results (``report`` names the Markdown report).
    """

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    torch.manual_seed(mc.seed)

    t0 = time.perf_counter()
    train_dir, test_dir = make_data(mc, out, log)
    timings["data"] = time.perf_counter() - t0

    left = TimeLeft(mc, log)
    train_seconds: dict[str, float] = {}
    recipes = {"stage1": stage1_recipe(mc, out, train_dir)}
    recipes |= {key: stage2_recipe(mc, out, train_dir, key) for key in mc.variants}
    for key, recipe in recipes.items():
        if (Path(recipe["output_dir"]) / key / "final" / COMPLETE_FILE).is_file():
            left.skip(key)
    threads = CpuThreads(log)
    for key, recipe in recipes.items():
        steps = recipe["optim"]["max_steps"]
        threads.pick()
        train_seconds[key] = train_once(recipe, log, on_step=left.stepper(key, steps))
        if train_seconds[key] and key != next(reversed(recipes)):
            left.say(f"after {key}")
    timings["training"] = sum(train_seconds.values())
    left.say("training done, evaluation next")
    threads.pick()

    t0 = time.perf_counter()
    records = read_records(test_dir / "records.jsonl", root=test_dir).records
    train_gsds = [
        r.images[0].gsd.point_m
        for r in read_records(train_dir / "records.jsonl", root=train_dir).records
    ]
    train_range = (float(min(train_gsds)), float(max(train_gsds)))
    models: dict[str, ModelResult] = {}
    loaded: dict[str, tuple[EarthVLM, ChoiceScorer]] = {}
    for key in ("stage1", *mc.variants):
        log(f"{key}: evaluating" + (" and spoofing" if key != "stage1" else ""))
        model = EarthVLM.load(out / "runs" / key, name=key)
        scorer = ChoiceScorer(model, test_dir, CLASSES)
        res = evaluate(model, scorer, records, mc, train_range, sweeps=key != "stage1")
        res.train_seconds = train_seconds[key]
        models[key] = res
        if key == "cshlora":
            loaded[key] = (model, scorer)
    timings["evaluation"] = time.perf_counter() - t0

    result = ExperimentResult(mc, out, models, train_range, timings)
    if "cshlora" in loaded:
        t0 = time.perf_counter()
        model, scorer = loaded["cshlora"]
        log("cshlora: gates, SSE-U calibration, rank probe")
        result.gates = gate_curves(model.hf_model, model.cshlora)
        result.calibration = calibrate_model(model, scorer, records)
        result.probe = probe_model(
            model, scorer, records, test_dir, layer=mc.probe_layer, seed=mc.seed
        )
        timings["diagnostics"] = time.perf_counter() - t0
    result.report = write_experiment_report(result)
    return result


__all__ = [
    "CLASSES",
    "PAIRS",
    "ExperimentResult",
    "ModelResult",
    "TimeLeft",
    "eval_items",
    "evaluate",
    "make_data",
    "run_experiment",
    "same_run",
    "shuffled_gsds",
    "stage1_recipe",
    "stage2_recipe",
    "train_once",
]
