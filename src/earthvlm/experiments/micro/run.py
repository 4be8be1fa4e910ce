"""Run micro-ScaleEarth end to end: data, stage 1, stage-2 variants, every diagnostic.

Folder layout of a run (``out``)::

    data/train, data/test       generated chips (GeoTIFFs + records.jsonl + manifest)
    runs/stage1, runs/<variant> training runs (config.yaml, checkpoints, metrics.jsonl)
    figures/*.png               spoof curves, gates, calibration, probe heatmap
    report.md, report.json      the numbers, the claims, the config, seed and version

A rerun with the same settings reuses finished data and training runs (each is
complete or absent: the dataset manifest and the checkpoint marker are written last),
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

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
from earthvlm.scale.gsd import GSD
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.train.checkpoint import COMPLETE_FILE
from earthvlm.train.config import config_from_dict, dump_config
from earthvlm.train.sft import train

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
        "save_every": 0,
        "keep_last": 1,
        "progress": False,
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
        "save_every": 0,
        "keep_last": 1,
        "progress": False,
    }
    for section, values in VARIANTS[key].fields.items():
        base[section] = {**base[section], **values}
    return base


def train_once(recipe: dict[str, Any], log: Log) -> float:
    """Train a recipe unless its run folder already finished with the same config.

    Returns:
        Seconds spent training (0 when reused).

    Raises:
        EarthVLMError: If the folder holds a finished run with another config.
    """
    cfg = config_from_dict(recipe)
    run = Path(cfg.output_dir) / cfg.name
    if (run / "final" / COMPLETE_FILE).is_file():
        saved = (run / "config.yaml").read_text(encoding="utf-8")
        if saved != dump_config(cfg):
            raise EarthVLMError(
                f"{run} finished with another config; give another output folder or delete it"
            )
        log(f"{cfg.name}: reusing the finished run")
        return 0.0
    steps = cfg.optim.max_steps
    log(f"{cfg.name}: training {steps} steps")
    t0 = time.perf_counter()
    result = train(cfg)
    if not result.finished:
        raise EarthVLMError(f"{run}: training stopped at step {result.step}/{steps}")
    return time.perf_counter() - t0


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

    train_seconds = {"stage1": train_once(stage1_recipe(mc, out, train_dir), log)}
    for key in mc.variants:
        train_seconds[key] = train_once(stage2_recipe(mc, out, train_dir, key), log)
    timings["training"] = sum(train_seconds.values())

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
    "evaluate",
    "make_data",
    "run_experiment",
    "shuffled_gsds",
    "stage1_recipe",
    "stage2_recipe",
    "train_once",
]
