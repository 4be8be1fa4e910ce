"""Running the fusion experiment: data, one SFT run per fusion method, evaluation.

Every method trains through :func:`earthvlm.train.sft.train` with the same
:class:`~earthvlm.train.config.TrainConfig` but for its ``fusion.method``
(:func:`train_config`): stage 1 (full fine-tuning of a random tiny Qwen-VL, its fusion
module and its mask decoder; a frozen random backbone could not learn the task), the same
data, steps, schedule and seed. Runs resume: a finished run's checkpoint is reused.

Open-ended answers are scored by the open-ended judge's client
(:func:`~earthvlm.eval.judge.judge_open_ended`): a real judge when given one (any
OpenAI-compatible server), else the local rule-based judge
(:func:`~earthvlm.eval.judge_local.local_judge`, class-name overlap; the report says which).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from earthvlm.data.jsonl import read_records
from earthvlm.data.record import Record
from earthvlm.eval.judge import JudgeResult
from earthvlm.eval.judge_local import local_judge
from earthvlm.experiments.fusion.config import METHOD_LABELS, FusionExpConfig
from earthvlm.experiments.fusion.evaluate import (
    evaluate_model,
    judge_settings,
)
from earthvlm.experiments.fusion.report import write_report
from earthvlm.experiments.fusion.results import FusionExpResult, MethodResult
from earthvlm.models.earthvlm import EarthVLM
from earthvlm.synth.catalogue import CLASSES
from earthvlm.synth.fusion_world import WorldConfig, write_world
from earthvlm.teacher.client import ChatClient
from earthvlm.train.config import TrainConfig, config_from_dict
from earthvlm.train.sft import train


def world_config(cfg: FusionExpConfig, split: str) -> WorldConfig:
    """The generator settings of the ``train`` or ``test`` scenes."""
    n, seed = (cfg.n_train, cfg.train_data_seed) if split == "train" else (
        cfg.n_test, cfg.test_data_seed,
    )  # fmt: skip
    return WorldConfig(n_scenes=n, size_px=cfg.size_px, cloud_prob=cfg.cloud_prob, seed=seed,
                       layout=cfg.layout)  # fmt: skip


def ensure_world(cfg: FusionExpConfig, out: Path, split: str) -> Path:
    """Write a split's scenes under ``out/data/<split>`` unless already complete."""
    folder = out / "data" / split
    if not (folder / "manifest.json").is_file():
        write_world(folder, world_config(cfg, split))
    return folder


def train_config(cfg: FusionExpConfig, method: str, records: Path, out: Path) -> TrainConfig:
    """The SFT recipe of one method (the same for all but ``fusion.method``)."""
    return config_from_dict(
        {
            "stage": 1,
            "name": method,
            "output_dir": str(out / "runs"),
            "seed": cfg.seed,
            "progress": False,
            "save_every": 0,
            "keep_last": 1,
            "model": {"family": cfg.family, "size": "tiny", "init_seed": cfg.seed},
            "data": {"records": str(records), "sampler": "shuffle", "max_length": 2048},
            "fusion": {"method": method},
            "seg": {"dim": cfg.seg_dim, "heads": 2},
            "optim": {
                "lr": cfg.lr,
                "vision_lr": cfg.lr,
                "batch_size": cfg.batch_size,
                "grad_accum": 1,
                "max_steps": cfg.steps,
                "warmup_ratio": 0.05,
                "max_grad_norm": 1.0,
            },
        }
    )


def text_prior(train: list[Record], test: list[Record]) -> dict[str, dict[str, bool]]:
    """Per baseline that never looks at the images, ``item -> correct`` on the held-out
    MCQs: ``majority`` always gives the answer most common in training; ``class prior``
    gives, for the class asked about, the answer training gave it most often (ties: the
    first option). A model is only seen to use the images where it beats both.
    """
    mcq = [r for r in train if r.task == "mcq" and r.meta["setting"] == "fused"]
    overall = Counter(r.messages[-1].text() for r in mcq)
    per_class = Counter((r.meta["class"], r.messages[-1].text()) for r in mcq)
    out: dict[str, dict[str, bool]] = {"majority": {}, "class prior": {}}
    for r in test:
        if r.task == "mcq" and r.meta["setting"] == "fused":
            options, truth, cls = r.meta["candidates"], r.messages[-1].text(), r.meta["class"]
            first = {c: -options.index(c) for c in options}
            out["majority"][r.meta["item"]] = (
                max(options, key=lambda c: (overall[c], first[c])) == truth
            )
            out["class prior"][r.meta["item"]] = (
                max(options, key=lambda c: (per_class[(cls, c)], first[c])) == truth
            )
    return out


def _losses(run_dir: Path) -> tuple[list[float], list[float]]:
    """The run's logged total and mask losses per step (``metrics.jsonl``)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if line.strip()]  # fmt: skip
    return (
        [float(r["loss"]) for r in rows if r.get("loss") is not None],
        [float(r["loss_seg"]) for r in rows if r.get("loss_seg") is not None],
    )


@contextmanager
def _judge(client: ChatClient | None, out: Path) -> Iterator[tuple[ChatClient, str]]:
    """The given judge client, or the local rule-based one (cached under ``out``)."""
    if client is not None:
        yield client, f"LLM judge `{client.config.model}` at {client.config.base_url}"
        return
    with local_judge(CLASSES, cache_dir=str(out / "judge-cache")) as (local, judge):
        yield local, judge.description


def run_experiment(
    cfg: FusionExpConfig,
    out: str | Path,
    *,
    log: Callable[[str], None] | None = None,
    judge: ChatClient | None = None,
) -> FusionExpResult:
    """Generate the data, train every method, evaluate, write the report.

    Args:
        cfg: The experiment's settings.
        out: The experiment folder (``data/``, ``runs/``, ``report.md``, ``report.json``,
            ``figures/``, ``judge-cache/``).
        log: Called with a line per stage (default: nothing).
        judge: The open-ended judge's client (set ``temperature=0`` and a ``cache_dir``);
            default: the local rule-based judge (class-name overlap, not an LLM).
    """

    say = log or (lambda line: None)
    t0 = time.perf_counter()
    out = Path(out)
    train_dir, test_dir = ensure_world(cfg, out, "train"), ensure_world(cfg, out, "test")
    test = read_records(test_dir / "records.jsonl").records
    data = {
        s: json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        for s, d in (("train", train_dir), ("test", test_dir))
    }
    say(f"data: {data['train']['records']} training records, {len(test)} held-out records")
    res = FusionExpResult(cfg, out, data)
    res.prior = text_prior(read_records(train_dir / "records.jsonl").records, test)
    quiet = Console(quiet=True)
    threads = torch.get_num_threads()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        with _judge(judge, out) as (client, res.judge):
            _train_and_score(cfg, out, res, train_dir, test_dir, test, client, quiet, say)
    finally:
        torch.set_num_threads(threads)
    res.seconds = time.perf_counter() - t0
    write_report(res)
    return res


def _train_and_score(
    cfg: FusionExpConfig,
    out: Path,
    res: FusionExpResult,
    train_dir: Path,
    test_dir: Path,
    test: list[Record],
    client: ChatClient,
    quiet: Console,
    say: Callable[[str], None],
) -> None:
    for method in cfg.methods:
        t = time.perf_counter()
        tc = train_config(cfg, method, train_dir / "records.jsonl", out)
        result = train(tc, console=quiet)
        tm = EarthVLM.load(result.run_dir, name=method)
        scores, mas = evaluate_model(tm, test, test_dir, batch_size=cfg.eval_batch)
        judged = judge_settings(client, scores, stage=f"{method} judge")
        lam = getattr(tm.fusion.fusion, "lam", None) if tm.fusion else None
        losses, seg_losses = _losses(result.run_dir)
        res.methods[method] = MethodResult(
            method, METHOD_LABELS.get(method, method), result.run_dir, scores, mas, losses,
            float(lam.detach()) if lam is not None else None, time.perf_counter() - t,
            seg_losses, _judge_summary(judged),
        )  # fmt: skip
        fused = scores["fused"].table()["all"]
        say(f"{method}: trained {tc.optim.max_steps} steps, fused MCQ {fused['mcq_acc']:.3f}, "
            f"fused mIoU {fused['miou']:.3f}, fused judge {fused['open_score']:.2f} "
            f"({time.perf_counter() - t:.0f} s)")  # fmt: skip


def _judge_summary(result: JudgeResult) -> dict[str, Any]:
    """The judge's accounting for the report (the per-item scores live in the scores)."""
    return {
        "ledger": result.ledger.to_dict(),
        "requests": dict(result.requests or {}),
        "coverage": result.coverage,
        "by_setting": {k: v.to_dict() for k, v in result.by_group.items()},
    }


__all__ = [
    "FusionExpResult",
    "MethodResult",
    "ensure_world",
    "run_experiment",
    "text_prior",
    "train_config",
    "world_config",
]
