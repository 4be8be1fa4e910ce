"""What every scale-conditioned adapter method shares: walk, inject, save, load.

A method (CS-HLoRA, bucketed MoE-LoRA, ...) is described once by an :class:`AdapterMethod`:
its name, its parameter prefix, its config class and how to wrap one linear layer. The
functions here do the rest for every method.

Saved adapters are a folder with ``adapter.safetensors`` (every prefixed tensor by
parameter path, plus extra tensors such as the SSE-U head) and ``earthvlm_adapter.json``
(method, config, wrapped module paths, package version, provenance), written last as
the completeness marker. Folders written before the rename carry the same JSON as
``adapter_config.json`` and still load. The folder is not a peft adapter (its layers
are not peft's): ``peft.PeftModel.from_pretrained`` refuses it with peft's own "Can't
find 'adapter_config.json'". Loading re-injects the layers from the saved config and
refuses to continue unless every saved tensor found its layer and every layer got its
tensors: a silent fall-back to plain LoRA (or to no adapter) is the trap this guards
against.

Loading a saved adapter onto its base Hugging Face model (``base_dir`` the base model
the adapter was trained on, ``adapter_dir`` the folder :func:`save_adapter` wrote,
``gsd_m`` the images' ground sampling distance in metres)::

    model = AutoModelForImageTextToText.from_pretrained(base_dir)
    context, extra = load_adapter(model, adapter_dir)
    context.set(torch.tensor([math.log10(gsd_m)]))  # one GSD for the batch, or one per sample

(imports: ``math``, ``torch``, ``transformers.AutoModelForImageTextToText`` and
:func:`load_adapter`). Every later ``model(...)`` / ``model.generate(...)`` runs at that
GSD until ``context.set`` is called again. To let the GSD follow each image (metadata,
else the SSE-U estimate in ``extra``, else 1 m) wrap the model in
:class:`earthvlm.models.scaleearth.ScaleEarth` instead; to drop the adapter for one fixed
GSD, :func:`earthvlm.adapters.merge.merge_at_gsd`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from earthvlm import __version__
from earthvlm.adapters.context import ScaleContext
from earthvlm.errors import EarthVLMError
from earthvlm.io import (
    UntrustedJSONError,
    atomic_dir,
    canonicalize_safetensors,
    loads_untrusted,
)
from earthvlm.registry import Registry

#: The adapter config, written last (the completeness marker). Not peft's file name: the
#: folder is not a peft adapter and must not pass for one.
CONFIG_NAME = "earthvlm_adapter.json"
#: Where folders written by earlier versions keep the same JSON (read, never written).
LEGACY_CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"
_ATTR = "_earthvlm_adapter"


@dataclass(frozen=True)
class AdapterMethod:
    """One adapter method.

    Attributes:
        name: Saved in the adapter config (``cshlora``, ``moelora``).
        prefix: Prefix of its trainable parameter names (drives freezing and saving).
        config_cls: Its config dataclass (fields ``target_modules``, ``within``,
            methods ``to_dict`` / ``from_dict``).
        layer_cls: The wrapper layer class.
        make_layer: Wraps one linear layer: ``(base, config, context) -> layer``.
    """

    name: str
    prefix: str
    config_cls: type
    layer_cls: type
    make_layer: Callable[[nn.Module, Any, ScaleContext], nn.Module]


#: The adapter methods by name, each the ``"module:attr"`` of its :class:`AdapterMethod`
#: (imported on first use).
REGISTRY: Registry[AdapterMethod] = Registry("adapter method")
REGISTRY.register("cshlora", "earthvlm.adapters.cshlora.model:METHOD")
REGISTRY.register("moelora", "earthvlm.adapters.moelora.model:METHOD")
#: Method name -> "module:attribute" of its AdapterMethod.
METHODS: dict[str, str] = REGISTRY.entries


def get_method(name: str) -> AdapterMethod:
    """The registered method called ``name`` (with a "did you mean" on a miss)."""
    return REGISTRY.get(name)


def target_names(model: nn.Module, config: Any) -> list[str]:
    """Paths of the linear layers a config targets (last path component in
    ``target_modules``, under a ``within`` module)."""
    names = []
    for name, module in model.named_modules():
        parts = name.split(".")
        # nn.Linear, and quantised linears (bitsandbytes Linear4bit subclasses nn.Linear)
        if (
            parts[-1] in config.target_modules
            and config.within in parts
            and isinstance(module, nn.Linear)
        ):
            names.append(name)
    return names


def adapter_layers(model: nn.Module, method: AdapterMethod) -> dict[str, nn.Module]:
    """Every layer of ``method`` in the model, by module path."""
    return {n: m for n, m in model.named_modules() if isinstance(m, method.layer_cls)}


def inject(
    model: nn.Module, method: AdapterMethod, config: Any, context: ScaleContext | None = None
) -> ScaleContext:
    """Wrap every targeted linear layer in ``method``'s layer, in place; freeze the rest.

    Returns:
        The shared scale context the layers read.

    Raises:
        EarthVLMError: If nothing matches the config or the model already has an adapter.
    """
    if getattr(model, _ATTR, None) is not None:
        raise EarthVLMError("the model already has an adapter; load or merge, do not inject twice")
    names = target_names(model, config)
    if not names:
        raise EarthVLMError(
            f"no linear layer named {list(config.target_modules)} under a "
            f"'{config.within}' module: check target_modules / within for this backbone"
        )
    ctx = context or ScaleContext()
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, method.make_layer(getattr(parent, child), config, ctx))
    for pname, p in model.named_parameters():
        p.requires_grad_(method.prefix in pname)
    setattr(model, _ATTR, {"method": method, "config": config, "context": ctx, "modules": names})
    return ctx


def adapter_info(model: nn.Module) -> dict[str, Any] | None:
    """The injected adapter's method, config, context and modules (``None`` if none)."""
    return getattr(model, _ATTR, None)


def save_adapter(
    model: nn.Module,
    out_dir: str | Path,
    *,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Save the model's adapter (and extra tensors, e.g. the SSE-U head) atomically."""
    info = adapter_info(model)
    if info is None:
        raise EarthVLMError("this model has no adapter to save (inject or load first)")
    method: AdapterMethod = info["method"]
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        tensors = {
            n: p.detach().cpu().contiguous()
            for n, p in model.named_parameters()
            if method.prefix in n
        }
        for k, v in (extra_tensors or {}).items():
            if k in tensors:
                raise EarthVLMError(f"extra tensor {k!r} clashes with an adapter tensor")
            tensors[k] = v.detach().cpu().contiguous()
        save_file(
            tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "earthvlm": __version__}
        )
        canonicalize_safetensors(tmp / WEIGHTS_NAME)  # same run, same bytes
        meta = {
            "adapter": method.name,
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


def _find_meta(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The config file and JSON of an earthvlm adapter folder (current or legacy name),
    ``None`` if the folder has none; errors for a config of ours that is broken."""
    path = folder / CONFIG_NAME
    if path.is_file():
        meta = _read_json(path)
        if not isinstance(meta, dict) or not isinstance(meta.get("adapter"), str):
            raise EarthVLMError(f"{path}: not an earthvlm adapter config (no 'adapter' method)")
    else:
        path = folder / LEGACY_CONFIG_NAME
        if not path.is_file():
            return None
        try:
            meta = _read_json(path)
        except EarthVLMError:
            return None  # someone else's broken adapter_config.json: not ours to judge
        # ours (written before the rename) names its method and has no peft_type
        if (
            not isinstance(meta, dict)
            or not isinstance(meta.get("adapter"), str)
            or "peft_type" in meta
        ):
            return None
    if meta["adapter"] not in REGISTRY:
        raise EarthVLMError(f"{path}: {REGISTRY.unknown(meta['adapter'])}")
    if not (folder / WEIGHTS_NAME).is_file():
        raise EarthVLMError(
            f"{folder}: not a complete earthvlm adapter: {path.name} without {WEIGHTS_NAME}"
        )
    return path, meta


def _read_json(path: Path) -> Any:
    try:  # an adapter folder may come from anywhere: loads_untrusted, never a traceback
        return loads_untrusted(path.read_bytes())
    except (OSError, UntrustedJSONError) as e:
        raise EarthVLMError(f"{path}: unreadable adapter config ({e})") from None


def _peft_hint(folder: Path) -> str:
    if (folder / LEGACY_CONFIG_NAME).is_file():
        return f"; its {LEGACY_CONFIG_NAME} is not earthvlm's: a peft adapter? load it with peft"
    return ""


def read_adapter_meta(folder: str | Path) -> dict[str, Any] | None:
    """What a folder holds if it is an earthvlm adapter folder, else ``None``.

    Reads the config :func:`save_adapter` wrote (``earthvlm_adapter.json``, or
    ``adapter_config.json`` in folders written before the rename; a peft adapter's
    ``adapter_config.json`` is not taken for ours). Loads no tensors.

    Returns:
        The saved config: ``adapter`` (the method, e.g. ``"cshlora"``), ``config``,
        ``modules``, ``extra_tensors``, ``earthvlm_version``, ``provenance``; ``None``
        for anything that is not an earthvlm adapter folder (a model, a peft adapter, a
        file, a missing path, a folder whose save did not finish).

    Raises:
        EarthVLMError: If the folder has earthvlm's adapter config but it is unreadable,
            names an unknown method, or the weights file is missing.
    """
    d = Path(folder)
    if not d.is_dir():
        return None
    found = _find_meta(d)
    return None if found is None else found[1]


def load_adapter(
    model: nn.Module,
    adapter_dir: str | Path,
    context: ScaleContext | None = None,
    *,
    expect: str | None = None,
) -> tuple[ScaleContext, dict[str, torch.Tensor]]:
    """Inject the saved adapter's method into ``model`` and load its weights.

    Args:
        model: The base model (no adapter yet).
        adapter_dir: A folder written by :func:`save_adapter` (either config file name).
        context: A scale context to share (a new one by default).
        expect: Refuse an adapter of another method.

    Returns:
        The scale context and the extra tensors saved with the adapter.

    Raises:
        EarthVLMError: If the folder is incomplete, of another method, or any saved tensor
            does not match a layer of this model (or vice versa): never a partial load.
    """
    d = Path(adapter_dir)
    found = _find_meta(d)
    if found is None:
        raise EarthVLMError(
            f"{d}: not a complete earthvlm adapter (needs {CONFIG_NAME} and {WEIGHTS_NAME}"
            f"{_peft_hint(d)})"
        )
    cfg_path, meta = found
    w_path = d / WEIGHTS_NAME
    name = meta["adapter"]
    if expect is not None and name != expect:
        raise EarthVLMError(f"{cfg_path}: adapter type {name!r}, expected {expect!r}")
    method = get_method(name)
    config = method.config_cls.from_dict(meta["config"])
    ctx = inject(model, method, config, context)
    tensors = load_file(str(w_path))
    extra_names = set(meta.get("extra_tensors", []))
    extra = {k: tensors.pop(k) for k in list(tensors) if k in extra_names}
    own = dict(model.named_parameters())
    expected = {n for n in own if method.prefix in n}
    missing, unexpected = expected - set(tensors), set(tensors) - expected
    if missing or unexpected:
        raise EarthVLMError(
            f"{d}: adapter does not fit this model: {len(missing)} tensor(s) missing "
            f"(e.g. {sorted(missing)[:2]}), {len(unexpected)} unexpected (e.g. "
            f"{sorted(unexpected)[:2]}); was it saved from another backbone?"
        )
    with torch.no_grad():
        for pname, value in tensors.items():
            p = own[pname]
            if p.shape != value.shape:
                raise EarthVLMError(
                    f"{d}: {pname} has shape {tuple(value.shape)}, model {tuple(p.shape)}"
                )
            p.copy_(value.to(p.dtype))
    if set(meta.get("modules", [])) != set(adapter_layers(model, method)):
        raise EarthVLMError(f"{d}: the adapted modules differ from those saved")
    return ctx, extra


def remove_adapter(model: nn.Module, replace: Callable[[str, nn.Module], nn.Module]) -> int:
    """Replace every adapter layer by ``replace(path, layer)`` and forget the adapter."""
    info = adapter_info(model)
    if info is None:
        return 0
    layers = adapter_layers(model, info["method"])
    for name, layer in layers.items():
        parent_name, _, child = name.rpartition(".")
        setattr(
            model.get_submodule(parent_name) if parent_name else model, child, replace(name, layer)
        )
    delattr(model, _ATTR)
    return len(layers)
