"""The supervised fine-tuning loop: ScaleEarth stage 1 and stage 2, one loop for both.

Read top to bottom: set up (accelerator, data, model, optimiser, resume), then for each
optimiser step: the step's batch from the sampler, ``grad_accum`` micro-batches through
the model, the joint loss, clip, step, log, checkpoint.

    stage 1:  L = L_VLM                                    (sec. 3.1)
    stage 2:  L = L_VLM(s_eff) + lambda_gsd(t) * L_nll     (Eq. 4)
    + seg:    L += seg.loss_weight * (BCE + Dice)          (EarthMind sec. 3.3)

With a ``fusion`` section each batch is put in the fused layout (one image slot per
optical + SAR pair, :meth:`~earthvlm.models.fusion.EarthFusion.collapse_pairs`) and the
pairs come from the collator's per-sample modalities; with ``seg`` the collator reads the
records' masks, and a sample's masks are targets when its answer holds ``[SEG]`` (one
per mask). Fusion and segmentation are joint with the rest of the data (EarthMind App.
H): a batch may mix single-sensor, paired, segmentation and plain samples.

Stages and adapters are configuration (:mod:`earthvlm.train.config`), not copies of
this loop. The loop runs on ``accelerate``: unchanged on one CPU process, on several
GPUs with ``accelerate launch`` (DDP; ``configs/accelerate/*.yaml`` for ZeRO-3/FSDP).

Where this departs from the paper (and why):

* Table 6's BalancedScaleSampler constraint ("each mini-batch ... exact-GSD ratio 0.25,
  at least two distinct scale bins") is applied to the batch of one optimiser step
  (batch x accumulation x processes): with one sample per device a micro-batch could
  never hold two bins.
* Warm-up starts at ``1 / warmup_steps``, not 0 (:mod:`earthvlm.train.schedule`).
* Weight decay skips vectors and scalars (biases, norms, CS-HLoRA thresholds and
  sharpness), as HF Trainer does; the paper does not say.
* Samples longer than ``data.max_length`` are dropped and counted, not truncated.

Resuming: checkpoints are taken after whole optimiser steps and hold the sampler
position, optimiser moments, schedule step and RNG states; Eq. 4's draws are seeded
per micro-batch from the run seed and the step. A run stopped at step k and resumed
gives the weights and losses of the uninterrupted run (``tests/train/test_sft.py``,
``tests/train/test_mixture_training.py``).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from rich.console import Console
from torch.utils.data import DataLoader

from earthvlm.data.collate import Collator
from earthvlm.data.ledger import Ledger
from earthvlm.errors import ConfigError, EarthVLMError
from earthvlm.io import atomic_write_text
from earthvlm.models.earthvlm import EarthVLM
from earthvlm.models.saved import record_base, save_weights
from earthvlm.train import checkpoint as ckpt_io
from earthvlm.train.config import TrainConfig, config_from_dict, dump_config
from earthvlm.train.data import (
    DataCounts,
    ensure_dataset,
    load_training_data,
    mean_exact_log10_gsd,
    micro_batches,
    total_steps,
)
from earthvlm.train.metrics import MetricsLog, gate_means, sseu_abs_error
from earthvlm.train.params import gated, param_groups
from earthvlm.train.progress import StepProgress
from earthvlm.train.schedule import cosine_with_warmup, lambda_gsd

#: Config fields that may change between a run and its resumption.
RESUMABLE_CHANGES = {
    "resume", "stop_after", "progress", "log_every", "save_every", "keep_last",
    "data.num_workers",
}  # fmt: skip
#: Failure checks start after this many samples have been read.
MIN_SAMPLES_FOR_FAILURE_CHECK = 32


@dataclass
class TrainResult:
    """What a call to :func:`train` did.

    Attributes:
        run_dir: The run folder.
        step: The global step reached.
        total_steps: Steps of the whole run.
        checkpoint: The last checkpoint written (or resumed from).
        resumed_from: The checkpoint the run resumed from, if any.
        ledger: Counts of the samples read (ok / failed with reasons).
        metrics: The rows logged by this call.
        finished: True when ``step == total_steps``.
    """

    run_dir: Path
    step: int
    total_steps: int
    checkpoint: Path | None
    resumed_from: Path | None
    ledger: Ledger
    metrics: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False


def _mixed_precision(precision: str) -> str:
    bf16_ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not bf16_ok:
        raise ConfigError(
            "precision=bf16 needs a CUDA GPU with bf16 support; this machine has none (a "
            "paper recipe is for GPUs). Use --set precision=auto (bf16 where supported, "
            "else fp32) or --set precision=fp32"
        )
    return "bf16" if precision == "bf16" or (precision == "auto" and bf16_ok) else "no"


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's saved config with the fields added since it was written at their
    defaults: a new field's default keeps the earlier behaviour, so resuming an older
    checkpoint is not a config change (e.g. ``data.pixel_format``). A config this version
    cannot read is compared as saved."""
    try:
        return config_from_dict(saved).to_dict()
    except (EarthVLMError, ValueError, TypeError, KeyError):
        return saved


def _config_changes(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(saved) | set(current)):
        path = f"{prefix}{key}"
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_changes(a, b, path + ".")
        elif a != b and path not in RESUMABLE_CHANGES:
            out.append(f"{path}: {a!r} -> {b!r}")
    return out


def _set_lrs(optimizer: torch.optim.Optimizer, mult: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * mult


@dataclass
class _Run:
    """What one call to :func:`train` works with, built once by :func:`_setup` and read by
    the steps below (the loop's state: the position and the last checkpoint)."""

    cfg: TrainConfig
    accelerator: Accelerator
    say: Any
    data: Any
    counts: DataCounts
    track: bool
    model: EarthVLM
    module: Any
    optimizer: torch.optim.Optimizer
    trainable: list[torch.nn.Parameter]
    collator: Collator
    layers: dict[str, Any]
    log: MetricsLog
    total: int
    stop: int
    resumed_from: Path | None
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    last_ckpt: Path | None = None
    ledger: Ledger = field(default_factory=lambda: Ledger(stage="train samples"))
    logged: list[dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)

    @property
    def run_dir(self) -> Path:
        return self.cfg.run_dir

    @property
    def procs(self) -> int:
        return self.accelerator.num_processes

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def train(
    cfg: TrainConfig,
    *,
    console: Console | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Run (or resume) the SFT run that ``cfg`` describes.

    Args:
        cfg: The run config.
        console: Where progress and messages go (default: stderr). On a terminal the
            progress is a live bar; elsewhere one line every tenth of the run.
        on_step: Called with each optimiser step's metrics row (its ``step`` and
            ``seconds`` let a caller time the run, e.g. for an estimate of what is left).

    Returns:
        A :class:`TrainResult`.

    Raises:
        ConfigError: A config this machine cannot run (``precision=bf16`` without a GPU).
        EarthVLMError: Missing data or weights, a config that differs from the one the
            checkpoint was written with, or too many failed samples.
    """
    console = console or Console(stderr=True)
    run = _setup(cfg, console)
    label = f"{cfg.name} (stage {cfg.stage})"
    show = cfg.progress and run.main
    with StepProgress(console, label, run.total, run.step, enabled=show) as progress:
        while run.step < run.stop:
            micro_iter, n_batches = _epoch(run)
            for _ in range(n_batches):
                if run.step >= run.stop:
                    break
                row = _optimiser_step(run, micro_iter)
                progress.update(run.step, row.get("loss"))
                if on_step is not None:
                    on_step(row)
                _check_failures(run.ledger, cfg.data.max_failed_fraction)
                if (cfg.save_every and run.step % cfg.save_every == 0) or run.step == run.stop:
                    run.last_ckpt = _save(run, row)
    return _finish(run)


def _setup(cfg: TrainConfig, console: Console) -> _Run:
    """Accelerator, data and sampler, resume state, model, optimiser, collator, log."""
    o = cfg.optim
    accelerator = Accelerator(
        gradient_accumulation_steps=o.grad_accum,
        mixed_precision=_mixed_precision(cfg.precision),
        # stage 2: a text-only micro-batch leaves the SSE-U head out of the graph
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.stage == 2)],
    )
    main = accelerator.is_main_process
    say = console.print if main else (lambda *args, **kw: None)
    run_dir = cfg.run_dir
    set_seed(cfg.seed)

    # -- data: records, the sampler of optimiser-step batches ---------------------------
    if main and ensure_dataset(cfg.data):
        say(f"generated a synthetic dataset at {Path(cfg.data.records).parent}")
    if main and cfg.resume:  # what killed saves and prunes left, before any rank looks
        for line in ckpt_io.clean_run_dir(run_dir):
            say(f"{run_dir}: {line}")
    accelerator.wait_for_everyone()
    procs, accum, per_device = accelerator.num_processes, o.grad_accum, o.batch_size
    data = load_training_data(cfg.data, per_device * accum * procs, cfg.seed)
    say(data.ledger.summary())
    if data.mixture is not None:
        how = "draws in order" if cfg.data.sampler == "shuffle" else "balanced GSD batches"
        say(f"{data.mixture.summary()}\n(mixture batches: {how})")
    total = total_steps(len(data.sampler), o.epochs, o.max_steps)
    stop = min(total, cfg.stop_after) if cfg.stop_after else total

    resumed_from, state = _resume_point(cfg, say)

    # -- model, optimiser -----------------------------------------------------------------
    device_map = {"": accelerator.local_process_index} if torch.cuda.is_available() else "cpu"
    model = EarthVLM.build(
        cfg.recipe,
        init_mu=mean_exact_log10_gsd(data.records),
        weights_from=resumed_from,
        device_map=device_map,
        name=cfg.name,
        max_length=cfg.data.max_length,
    )
    ds = accelerator.state.deepspeed_plugin
    if ds is not None:
        # the recipe, not the launcher's file, owns these; ZeRO clips inside its engine
        ds.deepspeed_config.update(
            train_micro_batch_size_per_gpu=per_device,
            gradient_accumulation_steps=accum,
            gradient_clipping=o.max_grad_norm,
        )
    groups = param_groups(cfg, model)
    optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, eps=o.eps)
    module, optimizer = accelerator.prepare(model, optimizer)
    module.train()
    collator = Collator(
        model.backbone,
        data.root,
        max_length=cfg.data.max_length,
        read_masks=model.seg is not None,
        pixel_format=cfg.data.pixel_format,
    )
    run = _Run(
        cfg=cfg,
        accelerator=accelerator,
        say=say,
        data=data,
        # mixture draws and augmentation are counted into the run's data_counts.json
        counts=DataCounts(data.mixture, data.prepare),
        track=data.mixture is not None or data.prepare is not None,
        model=model,
        module=module,
        optimizer=optimizer,
        trainable=[p for g in groups for p in g["params"]],
        collator=collator,
        layers=gated(model),
        log=MetricsLog(
            run_dir / "metrics.jsonl", keep_through_step=state["step"] if state else None
        ),
        total=total,
        stop=stop,
        resumed_from=resumed_from,
        last_ckpt=resumed_from,
    )
    if state is not None:
        ckpt_io.load_optimizer(resumed_from, optimizer, state)
        ckpt_io.restore_rng(resumed_from, state)
        run.step, run.epoch, run.batch_in_epoch = (
            state["step"],
            state["epoch"],
            state["batch_in_epoch"],
        )
        say(f"resuming from {resumed_from} (step {run.step} of {total})")
        if run.track:  # data_counts.json covers the whole run, not just this call
            _recount(run)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if state is None:
            atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
            record_base(run_dir, cfg.recipe)
    n_train = sum(p.numel() for p in run.trainable)
    adapter = cfg.adapter.kind if cfg.stage == 2 else "-"
    say(
        f"run folder: {run_dir}\nstage {cfg.stage}, adapter {adapter}, {n_train:,} trainable "
        f"parameters, {len(data.records)} records, {total} steps of "
        f"{per_device * accum * procs} samples, {accelerator.device}, "
        f"precision {accelerator.mixed_precision}"
    )
    run.t0 = time.perf_counter()
    return run


def _resume_point(
    cfg: TrainConfig, say: Callable[[str], None]
) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint to resume from and its state, after checking that it was written
    with this config (a fresh run among an old run's checkpoints is refused too). A
    damaged newest checkpoint is skipped for the one before it, and ``say`` tells which
    file was damaged.

    Raises:
        EarthVLMError: A config change that cannot be resumed, ``resume=false`` over an
            earlier run's checkpoints, or no checkpoint that can be resumed from.
    """
    run_dir = cfg.run_dir
    resumed_from, state = ckpt_io.resume_point(run_dir, say) if cfg.resume else (None, None)
    if state is not None:
        changes = _config_changes(_with_defaults(state["config"]), cfg.to_dict())
        if changes:
            raise EarthVLMError(
                f"{resumed_from} was written with a different config ({'; '.join(changes)}); "
                "restore it, start a new run name, or set resume=false"
            )
    elif not cfg.resume and ckpt_io.complete_checkpoints(run_dir):
        # a fresh run among an old run's checkpoints would later resume from the wrong one
        raise EarthVLMError(
            f"resume=false but {run_dir} holds checkpoints of an earlier run; choose another "
            "name, delete the folder, or set resume=true"
        )
    return resumed_from, state


def _micro(run: _Run, batches: list[Any], epoch: int, first: int) -> list[list[int]]:
    """The micro-batches (sample indices) of this process for ``batches``, the optimiser
    steps from ``first`` on in ``epoch``: a function of the seed, epoch and step."""
    o = run.cfg.optim
    return [
        mb
        for i, batch in enumerate(batches)
        for mb in micro_batches(
            batch,
            batch_size=o.batch_size,
            grad_accum=o.grad_accum,
            process_index=run.accelerator.process_index,
            num_processes=run.procs,
            seed=f"{run.cfg.seed}:{epoch}:{first + i}",
        )
    ]


def _prepared(
    run: _Run, micro: list[list[int]], epoch: int, first: int
) -> tuple[list[Any], list[list[int]]]:
    """The samples and micro-batches after augmentation (and GSD text), keyed by step."""
    if run.data.prepare is None:
        return run.data.records, micro
    o = run.cfg.optim
    return run.data.prepare.epoch_samples(
        run.data.records,
        micro,
        epoch=epoch,
        first_step=first,
        batch_size=o.batch_size,
        grad_accum=o.grad_accum,
        process_index=run.accelerator.process_index,
        num_processes=run.procs,
    )


def _epoch(run: _Run) -> tuple[Any, int]:
    """The rest of the current epoch: an iterator over its micro-batches (as collated
    batches) and the number of optimiser steps it holds."""
    sampler = run.data.sampler
    sampler.set_epoch(run.epoch)
    batches = list(sampler)[run.batch_in_epoch :]
    micro = _micro(run, batches[: run.stop - run.step], run.epoch, run.batch_in_epoch)
    if run.track:
        run.counts.add(
            run.epoch, [i for mb in micro for i in mb], len(micro) // run.cfg.optim.grad_accum
        )
    samples, micro = _prepared(run, micro, run.epoch, run.batch_in_epoch)
    # its own generator: creating the iterator must not draw from the global RNG
    # (a resumed run creates it at another step than the uninterrupted one)
    loader = DataLoader(
        samples,
        batch_sampler=micro,
        collate_fn=run.collator,
        num_workers=run.cfg.data.num_workers,
        generator=torch.Generator().manual_seed(run.epoch),
    )
    return iter(loader), len(batches)


def _optimiser_step(run: _Run, micro_iter: Any) -> dict[str, Any]:
    """``grad_accum`` micro-batches through the model, the joint loss, clip, step; then
    advance the position and log the step's row (returned)."""
    cfg, o, a = run.cfg, run.cfg.optim, run.cfg.adapter
    accelerator, model, step = run.accelerator, run.model, run.step
    _set_lrs(run.optimizer, cosine_with_warmup(step, run.total, o.warmup_ratio))
    lam = 0.0
    if cfg.stage == 2:
        lam = lambda_gsd(
            step,
            run.total,
            warmup=a.lambda_gsd_warmup,
            steady=a.lambda_gsd,
            frac=a.lambda_warmup_frac,
        )
    sums: dict[str, float] = {}
    counts = {"micro": 0, "exact": 0, "gates": 0}
    grad_norm = float("nan")
    for j in range(o.grad_accum):
        batch = next(micro_iter)
        run.ledger.merge(batch.ledger)
        with accelerator.accumulate(run.module):
            if len(batch) == 0:
                # every sample failed: a zero loss keeps processes in step
                loss = sum(p.sum() * 0.0 for p in run.trainable)
            else:
                inputs, extra = model_inputs(model, batch, accelerator.device)
                seed = ((cfg.seed * 1_000_003 + step) * o.grad_accum + j) * run.procs
                loss_vlm, loss_nll, loss_seg = run.module(
                    inputs, batch.gsds, seed=seed + accelerator.process_index, **extra
                )
                loss = loss_vlm + lam * loss_nll + loss_seg
                if not math.isfinite(loss.item()):
                    raise EarthVLMError(
                        f"the loss is {loss.item()} at step {step + 1} (records "
                        f"{batch.ids[:4]}); lower optim.lr or check those samples"
                    )
                _measure(sums, counts, loss, loss_vlm, loss_nll, inputs, batch)
                if model.seg is not None:
                    _add(sums, "loss_seg", loss_seg.item())
                if model.fusion is not None:
                    _measure_fusion(sums, counts, model)
                if model.scale is not None:
                    _measure_scale(sums, counts, model, run.layers, batch.gsds)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                norm = accelerator.clip_grad_norm_(run.trainable, o.max_grad_norm or math.inf)
                grad_norm = float(norm) if norm is not None else math.nan
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    run.batch_in_epoch += 1
    if run.batch_in_epoch >= len(run.data.sampler):
        run.epoch, run.batch_in_epoch = run.epoch + 1, 0
        if run.track:
            _save_counts(accelerator, run.counts, run.run_dir)
    row = _row(run.step, sums, counts, lam, run.optimizer, grad_norm, run.ledger, run.t0)
    row = _reduce(accelerator, row)
    if run.main and run.step % cfg.log_every == 0:
        run.log.write(row)
    run.logged.append(row)
    return row


def _finish(run: _Run) -> TrainResult:
    """Mark a finished run, write ``run.json`` and the ledgers, and say where things are."""
    finished = run.step >= run.total
    ledger = _gather_ledger(run.ledger) if run.procs > 1 else run.ledger
    if run.track:
        _save_counts(run.accelerator, run.counts, run.run_dir)
    if run.main and finished and run.last_ckpt is not None:
        ckpt_io.mark_final(run.run_dir, run.last_ckpt)
    if run.main:
        summary = {
            "step": run.step,
            "total_steps": run.total,
            "finished": finished,
            "checkpoint": str(run.last_ckpt) if run.last_ckpt else None,
            "resumed_from": str(run.resumed_from) if run.resumed_from else None,
            "seconds": round(time.perf_counter() - run.t0, 2),
            "samples": ledger.to_dict(),
            "records": run.data.ledger.to_dict(),
        }
        atomic_write_text(run.run_dir / "run.json", json.dumps(summary, indent=2) + "\n")
    run.say(ledger.summary())
    run.say(
        f"{'finished' if finished else 'stopped'} at step {run.step}/{run.total}; "
        f"checkpoint: {run.last_ckpt}; run folder: {run.run_dir}"
    )
    run.accelerator.wait_for_everyone()
    return TrainResult(
        run.run_dir,
        run.step,
        run.total,
        run.last_ckpt,
        run.resumed_from,
        ledger,
        run.logged,
        finished,
    )


# -- helpers ------------------------------------------------------------------------------


def _add(sums: dict[str, float], key: str, value: float) -> None:
    sums[key] = sums.get(key, 0.0) + value


def _measure(
    sums: dict[str, float],
    counts: dict[str, int],
    loss: torch.Tensor,
    loss_vlm: torch.Tensor,
    loss_nll: torch.Tensor,
    inputs: dict[str, torch.Tensor],
    batch: Any,
) -> None:
    """Add one micro-batch's losses and label tokens to the step's sums."""
    _add(sums, "loss", loss.item())
    _add(sums, "loss_vlm", loss_vlm.item())
    _add(sums, "loss_nll", loss_nll.item())
    _add(sums, "label_tokens", float((inputs["labels"] != -100).sum()))
    counts["micro"] += 1


def model_inputs(model: Any, batch: Any, device: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A collated batch as the run's model reads it: ``(inputs, extra)``.

    ``inputs`` are on ``device``, in the fused layout when the run fuses; ``extra`` holds
    the keyword arguments of fusion (``modalities``) and segmentation (``masks``,
    ``mask_images``: a sample's masks are targets only when its sequence holds ``[SEG]``
    tokens, so records that carry masks for other questions train as plain samples).
    """
    inputs = model.fused_layout(batch.inputs, batch.modalities)
    inputs = {k: v.to(device) for k, v in inputs.items()}
    extra: dict[str, Any] = {}
    if model.fusion is not None:
        extra["modalities"] = batch.modalities
    if model.seg is not None:
        n_seg = (inputs["input_ids"] == model.seg_token_id).sum(1).tolist()
        masks: list[torch.Tensor | None] = []
        for k, m in zip(n_seg, batch.masks or [None] * len(n_seg), strict=True):
            masks.append(torch.from_numpy(m).to(device) if k and m is not None else None)
        extra["masks"] = masks
        extra["mask_images"] = list(batch.mask_images) or None
    return inputs, extra


def _measure_fusion(sums: dict[str, float], counts: dict[str, int], model: Any) -> None:
    """Add the fusion's view of the micro-batch: HCA's lambda and mean optical weight."""
    fused = [f for f in model.fusion.last.fused if f.weights is not None and len(f)]
    if fused:
        w = torch.cat([f.weights.detach().float() for f in fused])
        _add(sums, "fusion_w_optical", float(w[:, 0].mean()))
        counts["fused"] = counts.get("fused", 0) + 1
    lam = getattr(model.fusion.fusion, "lam", None)  # HCA's lambda (Eq. 6), if any
    if isinstance(lam, torch.Tensor):
        sums["fusion_lambda"] = float(lam.detach())


def _measure_scale(
    sums: dict[str, float], counts: dict[str, int], model: Any, layers: dict, gsds: list
) -> None:
    """Add the scale path's view of the micro-batch: SSE-U error, gates per rank group."""
    last = model.scale.last
    err, n = sseu_abs_error(last.mu, gsds)
    _add(sums, "sseu_abs_err", err)
    counts["exact"] += n
    gates = gate_means(layers, last.s_image, model.cshlora)
    for k, v in gates.items():
        _add(sums, k, v)
    counts["gates"] += bool(gates)


def _row(
    step: int,
    sums: dict[str, float],
    counts: dict[str, int],
    lam: float,
    optimizer: torch.optim.Optimizer,
    grad_norm: float,
    ledger: Ledger,
    t0: float,
) -> dict[str, Any]:
    """One metrics line: micro-batch means of the step, learning rates, gates, counts."""
    n = max(1, counts["micro"])
    row: dict[str, Any] = {"step": step}
    for key in ("loss", "loss_vlm", "loss_nll"):
        row[key] = sums[key] / n if key in sums else None
    if "loss_seg" in sums:
        row["loss_seg"] = sums["loss_seg"] / n
    if counts.get("fused"):
        row["fusion_w_optical"] = sums["fusion_w_optical"] / counts["fused"]
    if "fusion_lambda" in sums:
        row["fusion_lambda"] = sums["fusion_lambda"]
    row["lambda"] = lam
    main = [g for g in optimizer.param_groups if g["name"] in ("adapter", "llm_projector")]
    row["lr"] = (main or optimizer.param_groups)[0]["lr"]
    for group in optimizer.param_groups:
        row.setdefault(f"lr_{group['name']}", group["lr"])
    row["grad_norm"] = grad_norm
    for key, value in sums.items():
        if key.startswith("gate_"):
            row[key] = value / max(1, counts["gates"])
    if counts["exact"]:
        row["sseu_abs_err"] = sums["sseu_abs_err"] / counts["exact"]
    row["label_tokens"] = int(sums.get("label_tokens", 0))
    row["samples_ok"], row["samples_failed"] = ledger.ok, ledger.n_failed
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


def _reduce(accelerator: Accelerator, row: dict[str, Any]) -> dict[str, Any]:
    """Average the float metrics over processes (one process: unchanged)."""
    if accelerator.num_processes == 1:
        return row
    keys = [k for k, v in row.items() if isinstance(v, float) and k != "seconds"]
    values = torch.tensor([row[k] for k in keys], device=accelerator.device)
    values = accelerator.reduce(values, reduction="mean")
    return {**row, **dict(zip(keys, values.tolist(), strict=True))}


def _gather_ledger(ledger: Ledger) -> Ledger:
    """The sum of every process's ledger (each counts the samples it read)."""
    from accelerate.utils import gather_object

    total = Ledger(stage=ledger.stage)
    for d in gather_object([ledger.to_dict()]):
        total.read += d["read"]
        total.ok += d["ok"]
        total.skipped.update(d["skipped"])
        total.failed.update(d["failed"])
    return total


def _save_counts(accelerator: Accelerator, counts: DataCounts, run_dir: Path) -> None:
    """Write ``data_counts.json``: every process's counts summed (each lays out its own
    samples), by the main process."""
    data = counts.to_dict()
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        data = _sum_counts(gather_object([data]))
    if accelerator.is_main_process:
        counts.save(run_dir / "data_counts.json", data)


def _sum_counts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-process ``data_counts`` summed (steps are the same on every process)."""
    out = dict(parts[0])
    out["samples"] = sum(p["samples"] for p in parts)
    if "augment" in out:
        total: Counter[str] = Counter()
        for p in parts:
            total.update(p["augment"]["counts"])
        out["augment"] = {
            **out["augment"], "samples": sum(p["augment"]["samples"] for p in parts),
            "counts": dict(sorted(total.items())),
        }  # fmt: skip
    epochs = []
    for k, e in enumerate(out["epochs"]):
        merged = {**e, "samples": sum(p["epochs"][k]["samples"] for p in parts)}
        if "subsets" in e:
            merged["subsets"] = {
                n: sum(p["epochs"][k]["subsets"][n] for p in parts) for n in e["subsets"]
            }
        epochs.append(merged)
    out["epochs"] = epochs
    return out


def _check_failures(ledger: Ledger, max_fraction: float) -> None:
    if (
        ledger.read >= MIN_SAMPLES_FOR_FAILURE_CHECK
        and ledger.n_failed > max_fraction * ledger.read
    ):
        raise EarthVLMError(
            f"{ledger.n_failed} of {ledger.read} samples failed ({ledger.summary()}), more "
            f"than data.max_failed_fraction={max_fraction}; fix the data (earthvlm records "
            "check) or raise the limit"
        )


def _recount(run: _Run) -> None:
    """Count the draws and augmentations of the steps before a resumption.

    The batches, their micro-batches and each sample's augmentation are functions of the
    seed, the epoch and the step, so laying out the finished steps again (no training)
    gives the counts the uninterrupted run had there.
    """
    sampler = run.data.sampler
    for e in range(run.epoch + 1):
        sampler.set_epoch(e)
        done = list(sampler)[: run.batch_in_epoch if e == run.epoch else None]
        micro = _micro(run, done, e, 0)
        if not micro:
            continue
        run.counts.add(e, [i for mb in micro for i in mb], len(micro) // run.cfg.optim.grad_accum)
        _prepared(run, micro, e, 0)


def _save(run: _Run, row: dict[str, Any]) -> Path:
    """Checkpoint after the current step (every process waits; the main one writes)."""
    cfg, accelerator, step = run.cfg, run.accelerator, run.step
    accelerator.wait_for_everyone()
    path = run.run_dir / f"checkpoint-{step}"
    if accelerator.is_main_process:
        info = {"step": step, "config": cfg.to_dict(), **ckpt_io.provenance()}
        state = {
            "step": step,
            "epoch": run.epoch,
            "batch_in_epoch": run.batch_in_epoch,
            "total_steps": run.total,
            "config": cfg.to_dict(),
            "metrics": row,
            "scheduler": {
                "kind": "cosine_with_warmup",
                "step": step,
                "total_steps": run.total,
                "warmup_ratio": cfg.optim.warmup_ratio,
            },
        }
        path = ckpt_io.save_checkpoint(
            run.run_dir,
            step,
            write_weights=lambda out: save_weights(run.model, out, info),
            optimizer=run.optimizer,
            state=state,
            keep_last=cfg.keep_last,
        )
    accelerator.wait_for_everyone()
    return path


__all__ = ["TrainResult", "model_inputs", "train"]
