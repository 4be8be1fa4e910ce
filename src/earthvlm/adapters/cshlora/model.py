"""Walking a model: inject CS-HLoRA layers, save and load them, merge them for one GSD.

Saved adapters are a folder with ``adapter.safetensors`` (every ``cshlora_*`` tensor by
module path, plus any extra tensors such as the SSE-U head), and ``adapter_config.json``
(the config, the wrapped module paths, the package version and provenance), written
last as the completeness marker. Loading re-injects the layers from the config and
refuses to continue unless every saved tensor found its gated layer and every gated
layer got its tensors: a silent fall-back to plain LoRA (or to no adapter) is the trap
this guards against.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from earthvlm import __version__
from earthvlm.adapters.context import ScaleContext
from earthvlm.adapters.cshlora.config import CSHLoRAConfig
from earthvlm.adapters.cshlora.layer import CSHLoRALinear
from earthvlm.errors import EarthVLMError
from earthvlm.io import atomic_dir

PREFIX = "cshlora_"
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"


def _is_linear(module: nn.Module) -> bool:
    # nn.Linear, and quantised linears (bitsandbytes Linear4bit subclasses nn.Linear)
    return isinstance(module, nn.Linear)


def _targets(model: nn.Module, config: CSHLoRAConfig) -> list[str]:
    names = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if parts[-1] in config.target_modules and config.within in parts and _is_linear(module):
            names.append(name)
    return names


def inject_cshlora(
    model: nn.Module, config: CSHLoRAConfig, context: ScaleContext | None = None
) -> ScaleContext:
    """Wrap every targeted linear layer of ``model`` in a :class:`CSHLoRALinear`, in place.

    Freezes every parameter that is not a ``cshlora_*`` parameter.

    Returns:
        The shared scale context the layers read (set it before each forward pass).

    Raises:
        EarthVLMError: If no layer matches the config, or the model already has CS-HLoRA.
    """
    if gated_layers(model):
        raise EarthVLMError(
            "the model already has CS-HLoRA layers; load or merge, do not inject twice"
        )
    names = _targets(model, config)
    if not names:
        raise EarthVLMError(
            f"no linear layer named {list(config.target_modules)} under a "
            f"'{config.within}' module: check target_modules / within for this backbone"
        )
    ctx = context or ScaleContext()
    taus = config.tau_init()
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child)
        layer = CSHLoRALinear(
            base, r=config.r, alpha_lora=config.alpha_lora, dropout=config.dropout,
            tau_init=taus, sharpness_init=config.sharpness_init, context=ctx,
        )  # fmt: skip
        setattr(parent, child, layer)
    for pname, p in model.named_parameters():
        p.requires_grad_(PREFIX in pname)
    model._earthvlm_cshlora = {"config": config, "context": ctx, "modules": names}  # type: ignore[assignment]
    return ctx


def gated_layers(model: nn.Module) -> dict[str, CSHLoRALinear]:
    """Every CS-HLoRA layer of the model by module path."""
    return {n: m for n, m in model.named_modules() if isinstance(m, CSHLoRALinear)}


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The ``cshlora_*`` tensors of the model, by parameter path."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if PREFIX in n}


def save_cshlora(
    model: nn.Module,
    out_dir: str | Path,
    *,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Save the adapter (and e.g. the SSE-U head as ``extra_tensors``) atomically.

    The folder is written under a temporary name and renamed into place; the config
    file, written last inside it, marks it complete.
    """
    info = getattr(model, "_earthvlm_cshlora", None)
    if info is None:
        raise EarthVLMError("this model has no CS-HLoRA layers to save (inject or load first)")
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        tensors = adapter_state_dict(model)
        for k, v in (extra_tensors or {}).items():
            if k in tensors:
                raise EarthVLMError(f"extra tensor {k!r} clashes with an adapter tensor")
            tensors[k] = v.detach().cpu().contiguous()
        save_file(
            tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "earthvlm": __version__}
        )
        meta = {
            "adapter": "cshlora",
            "config": info["config"].to_dict(),
            "modules": info["modules"],
            "extra_tensors": sorted(extra_tensors or {}),
            "earthvlm_version": __version__,
            "provenance": provenance or {},
        }
        # the config is written last: its presence marks a complete adapter
        with open(tmp / CONFIG_NAME, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
    return out


def load_cshlora(
    model: nn.Module, adapter_dir: str | Path, context: ScaleContext | None = None
) -> tuple[ScaleContext, dict[str, torch.Tensor]]:
    """Inject CS-HLoRA into ``model`` from a saved adapter and load its weights.

    Returns:
        The scale context and the extra tensors saved with the adapter.

    Raises:
        EarthVLMError: If the folder is incomplete, or any saved tensor does not match a
            gated layer of this model (or vice versa): never a silent partial load.
    """
    d = Path(adapter_dir)
    cfg_path, w_path = d / CONFIG_NAME, d / WEIGHTS_NAME
    if not cfg_path.is_file() or not w_path.is_file():
        raise EarthVLMError(
            f"{d}: not a complete CS-HLoRA adapter (needs {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    if meta.get("adapter") != "cshlora":
        raise EarthVLMError(f"{cfg_path}: adapter type {meta.get('adapter')!r}, expected 'cshlora'")
    config = CSHLoRAConfig.from_dict(meta["config"])
    ctx = inject_cshlora(model, config, context)
    tensors = load_file(str(w_path))
    extra_names = set(meta.get("extra_tensors", []))
    extra = {k: tensors.pop(k) for k in list(tensors) if k in extra_names}
    own = dict(model.named_parameters())
    expected = {n for n in own if PREFIX in n}
    missing, unexpected = expected - set(tensors), set(tensors) - expected
    if missing or unexpected:
        raise EarthVLMError(
            f"{d}: adapter does not fit this model: {len(missing)} gated tensor(s) missing "
            f"(e.g. {sorted(missing)[:2]}), {len(unexpected)} unexpected (e.g. "
            f"{sorted(unexpected)[:2]}); was it saved from another backbone?"
        )
    with torch.no_grad():
        for name, value in tensors.items():
            p = own[name]
            if p.shape != value.shape:
                raise EarthVLMError(
                    f"{d}: {name} has shape {tuple(value.shape)}, model {tuple(p.shape)}"
                )
            p.copy_(value.to(p.dtype))
    if set(meta.get("modules", [])) != set(gated_layers(model)):
        raise EarthVLMError(f"{d}: the gated modules differ from those saved")
    return ctx, extra


def merge_cshlora(model: nn.Module, log10_gsd: float) -> int:
    """Fold Delta W(s) for one fixed scale into the base weights and remove the adapters.

    A merged model runs at the base model's speed and gives the unmerged model's output
    at that GSD. Returns the number of layers merged.

    Raises:
        EarthVLMError: For quantised base layers (merge into a full-precision copy).
    """
    layers = gated_layers(model)
    for name, layer in layers.items():
        base = layer.base_layer
        if type(base) is not nn.Linear:
            raise EarthVLMError(
                f"{name}: cannot merge into a {type(base).__name__}; load the base model in "
                "full precision to merge"
            )
        with torch.no_grad():
            base.weight += layer.delta_weight(log10_gsd).to(base.weight.dtype)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, base)
    if hasattr(model, "_earthvlm_cshlora"):
        del model._earthvlm_cshlora
    return len(layers)
