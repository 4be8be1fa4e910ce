"""What a saved model is on disk, and how anything a user has is loaded as an EarthVLM.

A **run folder** (written by ``earthvlm train`` or ``earthvlm grpo``)::

    run/
      config.yaml              the run's config: its model sections are the recipe
      base_model.json          the base backbone's path as given, absolute, and
                               relative to the run folder (a moved folder still loads)
      checkpoint-N/            one complete checkpoint (COMPLETE written last)
        model/                 stage 1: the whole backbone (save_backbone: HF layout)
        adapter/               stage 2: earthvlm_adapter.json + adapter.safetensors
                               (CS-HLoRA, MoE-LoRA; SSE-U head as sseu.* tensors), or
                               peft's adapter_config.json + adapter_model.safetensors
        sseu_head.safetensors  the SSE-U head of a lora / none run
        modules.safetensors    fusion.* and seg.* tensors (fusion module, mask decoder)
      final -> checkpoint-N    the finished run's last checkpoint

:func:`load_model` also takes what was not written by earthvlm, each checked before a
weight loads and refused with the file and the fix:

1. a run folder or one of its checkpoints;
2. a plain Hugging Face Qwen2.5-VL / Qwen3-VL folder (zero-shot; ``config.json`` with a
   supported ``model_type``), in fp32, bf16 or NF4;
3. a peft LoRA adapter folder (``adapter_config.json`` with ``peft_type``) over its
   base (``base_model_name_or_path`` or ``base=``);
4. an earthvlm CS-HLoRA / MoE-LoRA adapter folder over a base (``base=``, else the base
   its provenance records).
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from earthvlm.errors import ConfigError, EarthVLMError
from earthvlm.io import UntrustedJSONError, canonicalize_safetensors, loads_untrusted
from earthvlm.models.earthvlm import EarthVLM
from earthvlm.models.processor import FAMILIES
from earthvlm.models.recipe import ModelConfig, ModelRecipe

logger = logging.getLogger(__name__)

#: Extra tensors of the SSE-U head are saved as ``sseu.<parameter>``.
SSEU_PREFIX = "sseu."
#: Where lora / none runs keep the SSE-U head in a checkpoint.
SSEU_FILE = "sseu_head.safetensors"
#: Where every run keeps its fusion module and mask decoder in a checkpoint.
MODULES_FILE = "modules.safetensors"
#: Key prefixes in :data:`MODULES_FILE`.
FUSION_PREFIX, SEG_PREFIX = "fusion.", "seg."
#: A checkpoint folder holding this file is complete (written last).
COMPLETE_FILE = "COMPLETE"
#: A run folder's config.
RUN_CONFIG_FILE = "config.yaml"
#: Where a run folder records its base backbone's path.
BASE_FILE = "base_model.json"
#: A peft adapter folder's config.
PEFT_CONFIG_FILE = "adapter_config.json"
_CKPT_NAME = re.compile(r"^checkpoint-(\d+)$")
#: What :func:`load_model` reads, by :func:`detect`'s name.
KINDS = ("run", "checkpoint", "hf", "peft", "adapter")


# -- checkpoints of a run ---------------------------------------------------------------


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete ``checkpoint-{step}`` folders of a run, oldest first."""
    run = Path(run_dir)
    if not run.is_dir():
        return []
    found = []
    for p in run.iterdir():
        m = _CKPT_NAME.match(p.name)
        if m and p.is_dir() and (p / COMPLETE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


class CorruptCheckpointError(EarthVLMError):
    """A checkpoint marked complete whose files are damaged; the message names the file."""


def verify_checkpoint(ckpt: str | Path) -> None:
    """Check a complete checkpoint's files without loading a weight.

    The marker's list of file sizes (written by :func:`earthvlm.train.checkpoint.
    save_checkpoint`; absent from older checkpoints) must match; every ``.safetensors``
    file must open (its header parses and its tensors fit the file) and every ``.json``
    file must parse. Damage inside tensor data is not seen (no checksums are kept).

    Raises:
        CorruptCheckpointError: Naming the first damaged file and what is wrong.
    """
    p = Path(ckpt)
    marker = p / COMPLETE_FILE
    try:
        text = marker.read_text(encoding="utf-8").strip()
        listed = json.loads(text) if text else {}
    except (OSError, ValueError) as e:
        raise CorruptCheckpointError(f"{marker}: unreadable completeness marker ({e})") from None
    files = listed.get("files", {}) if isinstance(listed, dict) else {}
    for rel, size in files.items() if isinstance(files, dict) else ():
        f = p / rel
        found = f.stat().st_size if f.is_file() else None
        if found != size:
            what = "missing" if found is None else f"{found:,} bytes, written as {size:,}"
            raise CorruptCheckpointError(f"{f}: {what}")
    for f in sorted(p.rglob("*")):
        if f.suffix == ".safetensors":
            try:
                with safe_open(str(f), framework="pt") as st:
                    st.keys()
            except Exception as e:  # SafetensorError, OSError: the message names no file
                raise CorruptCheckpointError(
                    f"{f}: not a readable safetensors file ({e})"
                ) from None
        elif f.suffix == ".json":
            try:
                json.loads(f.read_bytes())
            except (OSError, ValueError, RecursionError) as e:
                raise CorruptCheckpointError(f"{f}: not readable JSON ({e})") from None


def usable_checkpoint(
    candidates: list[Path], say: Callable[[str], None] | None = None
) -> Path | None:
    """The first of ``candidates`` (newest first) that :func:`verify_checkpoint` passes;
    each one skipped is reported through ``say`` (default: a warning), naming the file."""
    report = say or (lambda msg: warnings.warn(msg, stacklevel=3))
    for i, ckpt in enumerate(candidates):
        try:
            verify_checkpoint(ckpt)
        except CorruptCheckpointError as e:
            later = next((c.name for c in candidates[i + 1 :]), None)
            report(f"{e}; skipping {ckpt.name}" + (f", using {later}" if later else ""))
            continue
        return ckpt
    return None


def latest_checkpoint(
    run_dir: str | Path, *, say: Callable[[str], None] | None = None
) -> Path | None:
    """The newest complete checkpoint of a run whose files verify, or ``None``.

    A newer one whose files are damaged (:func:`verify_checkpoint`) is skipped, with a
    message through ``say`` (default: a warning) naming the file.
    """
    return usable_checkpoint(complete_checkpoints(run_dir)[::-1], say)


def resolve_run(path: str | Path) -> tuple[Path, Path]:
    """``(run_dir, checkpoint)`` for a run folder or one of its checkpoint folders.

    A run folder resolves to its ``final`` checkpoint, else its newest complete one; one
    whose files are damaged is skipped for the next older, with a warning.

    Raises:
        EarthVLMError: If the folder is neither, the checkpoint is incomplete, or every
            checkpoint is damaged (:class:`CorruptCheckpointError`, naming the file).
    """
    p = Path(path)
    if not p.is_dir():
        raise EarthVLMError(f"{p}: no such folder (give a run folder or a checkpoint folder)")
    if (p / RUN_CONFIG_FILE).is_file():
        run = p
        final = p / "final"
        ordered = complete_checkpoints(p)[::-1]
        if (final / COMPLETE_FILE).is_file():
            ordered = [final, *(c for c in ordered if c.resolve() != final.resolve())]
        if not ordered:
            raise EarthVLMError(
                f"{p}: the run has no complete checkpoint yet (train it, or resume it with "
                "`earthvlm train`)"
            )
        ckpt = usable_checkpoint(ordered)
        if ckpt is None:
            raise CorruptCheckpointError(
                f"{p}: every complete checkpoint is damaged (see the warnings); retrain, or "
                "restore one from a backup"
            )
    elif (p / COMPLETE_FILE).is_file() and (p.parent / RUN_CONFIG_FILE).is_file():
        run, ckpt = p.parent, p
        verify_checkpoint(ckpt)  # the one asked for: no silent fallback
    else:
        raise EarthVLMError(
            f"{p}: not a run folder ({RUN_CONFIG_FILE} + checkpoint-N/) or a complete "
            f"checkpoint folder ({COMPLETE_FILE} inside, {RUN_CONFIG_FILE} beside it)"
        )
    return run, ckpt


# -- the base backbone's path -----------------------------------------------------------


def record_base(run_dir: str | Path, recipe: ModelRecipe) -> Path | None:
    """Write :data:`BASE_FILE` into a run folder: the base path as the config gives it,
    absolute, and relative to the run folder, so the run still loads after the run
    folder (or the working directory) moved. Nothing for a tiny built backbone."""
    given = recipe.model.path
    if given is None:
        return None
    run = Path(run_dir)
    absolute = Path(given).expanduser().resolve()
    record = {
        "given": given,
        "absolute": str(absolute),
        "relative_to_run": os.path.relpath(absolute, run.resolve()),
    }
    run.mkdir(parents=True, exist_ok=True)
    path = run / BASE_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def resolve_base(run_dir: Path, given: str) -> tuple[str, str]:
    """The base folder a run's ``model.path`` names, and which record found it.

    Tried in order: the path as given (absolute, or relative to the working directory),
    the path relative to the run folder (the two moved together), the absolute path
    recorded at training time.

    Raises:
        EarthVLMError: If none exists, listing each path tried.
    """
    tried: list[tuple[str, Path]] = [("as given", Path(given).expanduser())]
    record_file = run_dir / BASE_FILE
    if record_file.is_file():
        try:
            record = loads_untrusted(record_file.read_bytes())
        except (OSError, UntrustedJSONError) as e:
            raise EarthVLMError(f"{record_file}: unreadable ({e}); delete it to retry") from e
        if not isinstance(record, dict):
            raise EarthVLMError(f"{record_file}: not a JSON object; delete it to retry")
        if isinstance(record.get("relative_to_run"), str):
            tried.append(("relative to the run folder", run_dir / record["relative_to_run"]))
        if isinstance(record.get("absolute"), str):
            tried.append(("absolute path recorded at training", Path(record["absolute"])))
    for how, path in tried:
        if path.is_dir():
            return str(path), how
    listing = "; ".join(f"{how}: {p}" for how, p in tried)
    raise EarthVLMError(
        f"{run_dir}: the base model folder is not found ({listing}); pass base=PATH "
        "(--base on the command line) to say where it is now"
    )


# -- reading a run's recipe -------------------------------------------------------------


def read_recipe(run_dir: str | Path) -> tuple[ModelRecipe, int]:
    """The recipe of a run folder's model and its ``data.max_length``.

    Raises:
        ConfigError: If ``config.yaml`` is unreadable or its model sections are invalid
            (an ``EarthVLMError``).
    """
    from earthvlm.typed import build_dataclass, read_yaml

    path = Path(run_dir) / RUN_CONFIG_FILE
    data = read_yaml(path, "run config")
    section = data.get("data") if isinstance(data.get("data"), dict) else {}
    fields = {
        k: data[k] for k in ("stage", "seed", "model", "adapter", "fusion", "seg") if k in data
    }
    if "gsd_as_text" in section:
        fields["gsd_as_text"] = section["gsd_as_text"]
    try:
        recipe = build_dataclass(ModelRecipe, fields)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    max_length = section.get("max_length", 8192)
    return recipe, int(max_length) if isinstance(max_length, int) else 8192


# -- what a folder is -------------------------------------------------------------------


def _json(path: Path) -> dict[str, Any]:
    from earthvlm.models.checkpoint import read_json_object

    return read_json_object(path, "the config")


def detect(path: str | Path) -> str:
    """Which of :data:`KINDS` a folder is.

    Raises:
        EarthVLMError: If it is none of them, or a model of an unsupported architecture
            (naming the supported families).
    """
    from earthvlm.adapters.base import read_adapter_meta

    p = Path(path)
    if not p.is_dir():
        raise EarthVLMError(f"{p}: no such folder")
    if (p / RUN_CONFIG_FILE).is_file():
        return "run"
    if (p / COMPLETE_FILE).is_file() and (p.parent / RUN_CONFIG_FILE).is_file():
        return "checkpoint"
    if read_adapter_meta(p) is not None:
        return "adapter"
    if (p / PEFT_CONFIG_FILE).is_file() and "peft_type" in _json(p / PEFT_CONFIG_FILE):
        return "peft"
    if (p / "config.json").is_file():
        model_type = _json(p / "config.json").get("model_type")
        if model_type in FAMILIES:
            return "hf"
        raise EarthVLMError(
            f"{p / 'config.json'}: model_type={model_type!r} is not supported; earthvlm "
            f"loads the Qwen-VL families {list(FAMILIES)} (Qwen3-VL, Qwen2.5-VL)"
        )
    raise EarthVLMError(
        f"{p}: not a model folder earthvlm can load: give a run folder (config.yaml + "
        "checkpoint-N/) or a checkpoint, a Hugging Face Qwen3-VL / Qwen2.5-VL folder "
        "(config.json), a peft LoRA folder (adapter_config.json) or an earthvlm adapter "
        "folder (earthvlm_adapter.json)"
    )


def load_model(
    path: str | Path,
    *,
    base: str | Path | None = None,
    name: str | None = None,
    dtype: str = "fp32",
    load_in_4bit: bool = False,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> EarthVLM:
    """Load anything :func:`detect` recognises as an :class:`EarthVLM` in eval mode,
    every parameter frozen.

    Args:
        path: The folder.
        base: The base backbone folder of an adapter folder, or a run's base that moved.
        name: A label for reports (default: the folder's name).
        dtype: ``fp32`` or ``bf16`` for a Hugging Face folder or an adapter's base.
        load_in_4bit: Quantise a Hugging Face folder's or a base's language model to NF4
            (needs bitsandbytes).
        min_pixels, max_pixels: Override the saved image processor's pixel range.

    Raises:
        EarthVLMError: If the folder is not loadable, naming the file and the fix.
    """
    kind = detect(path)
    p = Path(path)
    label = name or (p.parent.name if kind == "checkpoint" else p.name)
    if dtype not in ("fp32", "bf16"):
        raise EarthVLMError(f"dtype={dtype!r}: choose 'fp32' or 'bf16'")
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    pixels = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    if kind in ("run", "checkpoint"):
        model = _load_run(p, base=base, name=label, **pixels)
    elif kind == "hf":
        model = _load_hf(p, torch_dtype, load_in_4bit, label, pixels)
    elif kind == "peft":
        model = _load_peft(p, base, torch_dtype, load_in_4bit, label, pixels)
    else:
        model = _load_adapter_folder(p, base, torch_dtype, load_in_4bit, label, pixels)
    return model.inference()


def _load_run(
    path: Path,
    *,
    base: str | Path | None,
    name: str,
    min_pixels: int | None,
    max_pixels: int | None,
) -> EarthVLM:
    run, ckpt = resolve_run(path)
    recipe, max_length = read_recipe(run)
    if recipe.stage == 2 and recipe.model.path is not None:
        found, how = (
            (str(base), "given") if base is not None else resolve_base(run, recipe.model.path)
        )
        if found != recipe.model.path:
            logger.info("%s: base model read from %s (%s)", run, found, how)
        recipe = replace(recipe, model=replace(recipe.model, path=found))
    if min_pixels is not None or max_pixels is not None:
        m = recipe.model
        recipe = replace(
            recipe,
            model=replace(
                m,
                min_pixels=min_pixels if min_pixels is not None else m.min_pixels,
                max_pixels=max_pixels if max_pixels is not None else m.max_pixels,
            ),
        )
    from earthvlm.models.assemble import build_model

    return build_model(recipe, weights_from=ckpt, name=name, max_length=max_length)


def _backbone_from(
    folder: Path, torch_dtype: torch.dtype, load_in_4bit: bool, pixels: dict[str, Any]
) -> Any:
    from earthvlm.models.checkpoint import load_backbone

    return load_backbone(
        folder,
        dtype=None if load_in_4bit else torch_dtype,
        load_in_4bit=load_in_4bit,
        device_map="cpu" if load_in_4bit and not torch.cuda.is_available() else None,
        **pixels,
    )


def _hf_recipe(backbone: Any, *, stage: int, kind: str = "none") -> ModelRecipe:
    from earthvlm.models.recipe import AdapterConfig

    model = ModelConfig(path=backbone.source, family=backbone.family)
    return ModelRecipe(stage=stage, model=model, adapter=AdapterConfig(kind=kind, sseu=False))


def _load_hf(
    path: Path, torch_dtype: torch.dtype, load_in_4bit: bool, name: str, pixels: dict[str, Any]
) -> EarthVLM:
    bb = _backbone_from(path, torch_dtype, load_in_4bit, pixels)
    return EarthVLM(bb, recipe=_hf_recipe(bb, stage=1), name=name, source=path, origin="hf")


def _load_peft(
    path: Path,
    base: str | Path | None,
    torch_dtype: torch.dtype,
    load_in_4bit: bool,
    name: str,
    pixels: dict[str, Any],
) -> EarthVLM:
    from peft import PeftModel

    cfg_file = path / PEFT_CONFIG_FILE
    meta = _json(cfg_file)
    base_path = _adapter_base(path, base, meta.get("base_model_name_or_path"), cfg_file)
    bb = _backbone_from(base_path, torch_dtype, load_in_4bit, pixels)
    try:
        peft_model = PeftModel.from_pretrained(bb.model, str(path), is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise EarthVLMError(f"{path}: peft cannot load this adapter onto {base_path}: {e}") from e
    return EarthVLM(
        bb,
        recipe=_hf_recipe(bb, stage=2, kind="lora"),
        peft_model=peft_model,
        name=name,
        source=path,
        origin="peft",
    )


def _adapter_base(path: Path, base: str | Path | None, recorded: Any, where: Path) -> Path:
    """The base folder of an adapter: ``base``, else the recorded one (as given, then
    relative to the adapter folder)."""
    if base is not None:
        if not Path(base).is_dir():
            raise EarthVLMError(f"base={base}: no such folder")
        return Path(base)
    if isinstance(recorded, str) and recorded:
        for candidate in (Path(recorded).expanduser(), path / recorded):
            if candidate.is_dir():
                return candidate
        raise EarthVLMError(
            f"{where}: the base model {recorded!r} is not a local folder (nothing is "
            "downloaded); pass base=PATH (--base) naming the base Qwen-VL folder"
        )
    raise EarthVLMError(
        f"{where}: no base model is recorded; pass base=PATH (--base) naming the base "
        "Qwen-VL folder the adapter was trained on"
    )


def _load_adapter_folder(
    path: Path,
    base: str | Path | None,
    torch_dtype: torch.dtype,
    load_in_4bit: bool,
    name: str,
    pixels: dict[str, Any],
) -> EarthVLM:
    from earthvlm.adapters.base import adapter_info, load_adapter, read_adapter_meta
    from earthvlm.adapters.context import ScaleContext
    from earthvlm.models.recipe import AdapterConfig
    from earthvlm.models.scaleearth import ScaleEarth
    from earthvlm.models.sseu import SSEUHead

    meta = read_adapter_meta(path) or {}
    recorded = ((meta.get("provenance") or {}).get("config") or {}).get("model", {})
    recorded_path = recorded.get("path") if isinstance(recorded, dict) else None
    base_path = _adapter_base(path, base, recorded_path, path)
    bb = _backbone_from(base_path, torch_dtype, load_in_4bit, pixels)
    model = bb.model
    for p in model.parameters():
        p.requires_grad_(False)
    ctx, extra = load_adapter(model, path)
    kind = str(meta.get("adapter"))
    head = {k.removeprefix(SSEU_PREFIX): v for k, v in extra.items() if k.startswith(SSEU_PREFIX)}
    sseu = None
    if head:
        hidden = int(model.config.text_config.hidden_size)
        width = head["trunk.weight"].shape[0] if "trunk.weight" in head else None
        sseu = SSEUHead(hidden, width)
        try:
            sseu.load_state_dict(head, strict=True)
        except RuntimeError as e:
            raise EarthVLMError(f"{path}: the SSE-U head does not fit: {e}") from None
    scale = ScaleEarth(model, ctx or ScaleContext(), sseu)
    recipe = _hf_recipe(bb, stage=2, kind=kind)
    recipe = replace(recipe, adapter=AdapterConfig(kind=kind, sseu=sseu is not None))  # type: ignore[arg-type]
    return EarthVLM(
        bb,
        recipe=recipe,
        scale=scale,
        sseu=sseu,
        gated=adapter_info(model)["config"],
        name=name,
        source=path,
        origin="adapter",
    )


# -- writing ------------------------------------------------------------------------------


def save_weights(model: EarthVLM, out: Path, info: dict[str, Any]) -> None:
    """Write the weights a checkpoint needs into ``out``: ``model/`` (stage 1, the whole
    backbone) or ``adapter/`` (stage 2), :data:`SSEU_FILE` for a lora / none run's head,
    and :data:`MODULES_FILE` for fusion and segmentation."""
    from earthvlm.adapters.base import save_adapter
    from earthvlm.models.checkpoint import save_backbone

    save_modules(model, out, info)
    if model.recipe.stage == 1:
        save_backbone(model.backbone, out / "model", overwrite=True)
        return
    head = (
        {SSEU_PREFIX + k: v.detach().float() for k, v in model.sseu.state_dict().items()}
        if model.sseu is not None
        else {}
    )
    if model.gated is not None:  # CS-HLoRA / MoE-LoRA: one generic writer
        save_adapter(model.hf_model, out / "adapter", extra_tensors=head, provenance=info)
        return
    if model.peft_model is not None:
        model.peft_model.save_pretrained(str(out / "adapter"))
    if head:
        save_file({k: v.contiguous() for k, v in head.items()}, str(out / SSEU_FILE))
        canonicalize_safetensors(out / SSEU_FILE)


def modules_state_dict(model: EarthVLM) -> dict[str, torch.Tensor]:
    """The fusion module's (``fusion.*``) and segmentation's (``seg.*``) tensors."""
    out: dict[str, torch.Tensor] = {}
    if model.fusion is not None:
        out.update({FUSION_PREFIX + k: v for k, v in model.fusion.fusion_state_dict().items()})
    if model.seg is not None:
        out.update({SEG_PREFIX + k: v for k, v in model.seg.seg_state_dict().items()})
    return out


def save_modules(model: EarthVLM, out: Path, info: dict[str, Any]) -> Path | None:
    """Write :data:`MODULES_FILE` into ``out`` (a checkpoint's temporary folder, renamed
    into place whole), the run's provenance in its metadata; nothing without modules."""
    if model.fusion is None and model.seg is None:
        return None
    tensors = {k: v.detach().cpu().contiguous() for k, v in modules_state_dict(model).items()}
    meta = {
        "format": "pt",
        "fusion": json.dumps(model.fusion.fusion.config.to_dict()) if model.fusion else "",
        "seg_token_id": str(model.seg_token_id) if model.seg is not None else "",
        "provenance": json.dumps(info, default=str, sort_keys=True),
    }
    path = Path(out) / MODULES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    canonicalize_safetensors(path)  # four metadata keys: their order would vary by process
    return path


def load_modules(model: EarthVLM, ckpt: str | Path) -> None:
    """Load :data:`MODULES_FILE` of checkpoint ``ckpt`` into the fusion module and mask
    decoder (strict; unknown keys are ignored with a warning).

    Raises:
        EarthVLMError: If the file is missing, or its tensors do not fit the modules.
    """
    if model.fusion is None and model.seg is None:
        return
    path = Path(ckpt) / MODULES_FILE
    if not path.is_file():
        raise EarthVLMError(
            f"{path}: missing; the run's config has a fusion / seg section but the checkpoint "
            "holds no fusion or segmentation weights (was it written with another config?)"
        )
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    saved_seg = meta.get("seg_token_id")
    if model.seg is not None and saved_seg and int(saved_seg) != model.seg_token_id:
        raise EarthVLMError(
            f"{path}: [SEG] was token {saved_seg} when saved but is {model.seg_token_id} "
            "now: the tokenizer differs from the run's"
        )
    state = load_file(str(path))
    fusion = {
        k.removeprefix(FUSION_PREFIX): v for k, v in state.items() if k.startswith(FUSION_PREFIX)
    }
    seg = {k.removeprefix(SEG_PREFIX): v for k, v in state.items() if k.startswith(SEG_PREFIX)}
    unknown = sorted(k for k in state if not k.startswith((FUSION_PREFIX, SEG_PREFIX)))
    if unknown:
        warnings.warn(f"{path}: ignoring unknown tensors {unknown[:4]}", stacklevel=2)
    try:
        if model.fusion is not None:
            model.fusion.load_fusion_state_dict(fusion)
        if model.seg is not None:
            model.seg.load_seg_state_dict(seg)
    except RuntimeError as e:
        raise EarthVLMError(f"{path}: the saved modules do not fit this config: {e}") from None


__all__ = [
    "BASE_FILE",
    "COMPLETE_FILE",
    "KINDS",
    "MODULES_FILE",
    "SSEU_FILE",
    "CorruptCheckpointError",
    "complete_checkpoints",
    "detect",
    "latest_checkpoint",
    "load_model",
    "load_modules",
    "modules_state_dict",
    "read_recipe",
    "record_base",
    "resolve_base",
    "resolve_run",
    "save_modules",
    "save_weights",
    "usable_checkpoint",
    "verify_checkpoint",
]
