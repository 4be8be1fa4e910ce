"""Fold a GSD-gated adapter into its base model for one fixed GSD.

At a fixed GSD ``g`` every gate is a constant, so each adapter layer is a plain linear
layer (dropout on the adapter input is the identity in evaluation):

* CS-HLoRA (``y = W x + (alpha_lora / r) B diag(h(s)) A x``, ``h_k(s) = sigmoid(alpha
  (tau_k - s))``, one ``h`` per sample or per token): when every token is at
  ``s = log10 g`` (a per-sample context, or a per-token one that is ``log10 g``
  everywhere, as :class:`~earthvlm.models.scaleearth.ScaleEarth` sets it for samples
  whose images all have GSD ``g``), ``W' = W + (alpha_lora / r) B diag(h(log10 g)) A``:
  every rank of every tier, weighted by its gate;
* bucketed MoE-LoRA: ``W' = W + (alpha_lora / r_total) B_e A_e``, ``e`` the expert of
  the bucket ``g`` falls in (a GSD on an edge goes to the coarser bucket, as in the
  forward pass).

Each method's layer gives its update as ``delta_weight(log10_gsd)``. The merged model is
the unmerged one run at that GSD, at the base model's speed, and it is a plain
transformers model: its wrappers are gone (each replaced by its own ``nn.Linear``, same
dtype, device and bias) and so is the adapter record, so ``save_pretrained`` writes a
checkpoint ``AutoModelForImageTextToText.from_pretrained`` loads with no earthvlm code.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from earthvlm.adapters.base import AdapterMethod, adapter_info, adapter_layers, remove_adapter
from earthvlm.errors import EarthVLMError, GSDError
from earthvlm.scale.gsd import check_gsd_m


def merge_at_gsd(model: nn.Module, gsd_m: float) -> int:
    """Fold the model's gated adapter, evaluated at ``gsd_m`` metres per pixel, into the
    base weights and remove the adapter, in place.

    Args:
        model: A model with a CS-HLoRA or MoE-LoRA adapter (injected or loaded), its
            adapted layers full-precision ``nn.Linear`` (not 4-bit).
        gsd_m: The ground sampling distance the merged model is for, in metres.

    Returns:
        The number of layers merged.

    Raises:
        GSDError: If ``gsd_m`` is not a finite positive number of metres (nothing changed).
        EarthVLMError: If the model has no gated adapter, or an adapted layer cannot be
            merged (a quantised base): nothing is changed then either.
    """
    g = check_gsd_m(gsd_m, source="merge_at_gsd")
    return merge_at_log10_gsd(model, math.log10(g))


def merge_at_log10_gsd(model: nn.Module, log10_gsd: float, *, expect: str | None = None) -> int:
    """:func:`merge_at_gsd` for a scale ``s = log10 GSD`` (what the gates read).

    Args:
        expect: Refuse an adapter of another method (e.g. ``"cshlora"``).
    """
    s = float(log10_gsd)
    if not math.isfinite(s):
        raise GSDError(f"log10 GSD {log10_gsd!r} is not finite: merge at a real GSD")
    info = adapter_info(model)
    if info is None:
        raise EarthVLMError(
            "this model has no gated adapter to merge (inject one, or load_adapter a saved one)"
        )
    method: AdapterMethod = info["method"]
    if expect is not None and method.name != expect:
        raise EarthVLMError(f"the model's adapter is {method.name!r}, expected {expect!r}")
    layers = adapter_layers(model, method)
    if not layers:
        raise EarthVLMError(f"the model's {method.name} adapter has no layers left to merge")
    for name, layer in layers.items():
        if not callable(getattr(layer, "delta_weight", None)):
            raise EarthVLMError(f"{name}: {method.name} layers cannot be merged (no delta_weight)")
        if type(layer.base_layer) is not nn.Linear:
            raise EarthVLMError(
                f"{name}: cannot merge into a {type(layer.base_layer).__name__}; load the "
                "base model in full precision to merge"
            )

    def merged(_: str, layer: nn.Module) -> nn.Module:
        base: nn.Linear = layer.base_layer
        w = base.weight
        with torch.no_grad():
            delta = layer.delta_weight(s).to(device=w.device)
            w.copy_((w.float() + delta).to(w.dtype))
        return base

    return remove_adapter(model, merged)


__all__ = ["merge_at_gsd", "merge_at_log10_gsd"]
