"""CS-HLoRA internals: the learned gate curves (ScaleEarth Fig. 8d) and the bottleneck
latents the rank probe reads (App. A.4).

Gate curves: ``h_k(s) = sigmoid(alpha (tau_k - s))`` over ``s = log10 GSD`` from
log10 0.01 to log10 30, averaged over the ranks of each tier group and shown with the
spread across layers. Ranks are grouped by their *initial* tier (``tau_init()`` of the
config), so the curves show where training moved each group. At the paper's init
(tau = 0, 1, 4; alpha = 5) the object group is open below ~1 m, the structure group
below ~10 m, and the semantic group everywhere in range.

torch is imported inside the functions that read a model; the curve arithmetic and
the plot are numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from earthvlm.eval.diagnostics.report import (
    TIER_BOUNDARIES_M,
    mark_gsd_axis,
    markdown_table,
    new_figure,
    save_figure,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from earthvlm.adapters.cshlora import CSHLoRAConfig, CSHLoRALinear

#: The paper's plotting range of s = log10 GSD (0.01 m to 30 m).
S_RANGE: tuple[float, float] = (-2.0, math.log10(30.0))
#: Names of three tier groups, from the smallest initial tau to the largest.
GROUP_NAMES: tuple[str, ...] = ("object", "structure", "semantic")
#: GSDs at which the report reads the group curves, metres.
READOUT_GSDS_M: tuple[float, ...] = (0.05, 0.15, 0.5, 1.0, 3.0, 10.0, 30.0)


def rank_groups(tau_init: Sequence[float]) -> dict[str, np.ndarray]:
    """Rank indices per tier group, from each rank's initial threshold.

    Ranks sharing an initial tau form a group; groups are ordered by tau and named
    object / structure / semantic when there are three (``tau=<value>`` otherwise).
    """
    taus = np.asarray(tau_init, dtype=np.float64)
    values = sorted(set(taus.tolist()))
    names = GROUP_NAMES if len(values) == len(GROUP_NAMES) else [f"tau={v:g}" for v in values]
    return {n: np.flatnonzero(taus == v) for n, v in zip(names, values, strict=True)}


@dataclass(frozen=True, eq=False)
class GateCurves:
    """Gate curves of every CS-HLoRA layer, grouped by initial tier.

    Attributes:
        log10_gsd: (S,) the grid of s.
        layer_names: The L gated layers (module paths).
        taus: (L, r) learned thresholds.
        sharpness: (L,) learned alpha per layer.
        groups: Group name -> rank indices (by initial tier).
        per_layer: Group name -> (L, S) the group's mean gate in each layer.
    """

    log10_gsd: np.ndarray
    layer_names: tuple[str, ...]
    taus: np.ndarray
    sharpness: np.ndarray
    groups: dict[str, np.ndarray]
    per_layer: dict[str, np.ndarray]

    @property
    def gsd_m(self) -> np.ndarray:
        return 10.0**self.log10_gsd

    def mean(self, group: str) -> np.ndarray:
        """(S,) the group's gate averaged over its ranks and the layers."""
        return self.per_layer[group].mean(axis=0)

    def spread(self, group: str) -> tuple[np.ndarray, np.ndarray]:
        """(S,) min and max over layers of the group's per-layer mean gate."""
        p = self.per_layer[group]
        return p.min(axis=0), p.max(axis=0)

    def at(self, group: str, gsd_m: float) -> float:
        """The group's mean gate at one GSD (exact, not interpolated)."""
        s = math.log10(gsd_m)
        h = 1.0 / (1.0 + np.exp(-self.sharpness[:, None] * (self.taus[:, self.groups[group]] - s)))
        return float(h.mean())

    def half_open_gsd_m(self, group: str) -> float | None:
        """Where the group's mean gate falls through 0.5 on the grid (None if it never
        does; the grid's first GSD if it starts below)."""
        m = self.mean(group)
        below = np.flatnonzero(m < 0.5)
        if below.size == 0:
            return None
        i = int(below[0])
        if i == 0:
            return float(self.gsd_m[0])
        s0, s1, h0, h1 = self.log10_gsd[i - 1], self.log10_gsd[i], m[i - 1], m[i]
        return float(10.0 ** (s0 + (h0 - 0.5) * (s1 - s0) / (h0 - h1)))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n_layers": len(self.layer_names),
            "r": int(self.taus.shape[1]),
            "sharpness": {
                "mean": float(self.sharpness.mean()),
                "min": float(self.sharpness.min()),
                "max": float(self.sharpness.max()),
            },
            "groups": {},
        }
        for g, ranks in self.groups.items():
            t = self.taus[:, ranks]
            out["groups"][g] = {
                "ranks": ranks.tolist(),
                "tau_mean": float(t.mean()),
                "tau_std": float(t.std()),
                "half_open_gsd_m": self.half_open_gsd_m(g),
                "gate_at_gsd_m": {f"{v:g}": self.at(g, v) for v in READOUT_GSDS_M},
            }
        return out

    def to_markdown(self) -> str:
        d = self.to_dict()
        s = d["sharpness"]
        rows = []
        for g, v in d["groups"].items():
            ranks = v["ranks"]
            span = (
                f"{ranks[0]}-{ranks[-1]}"
                if ranks == list(range(ranks[0], ranks[-1] + 1))
                else str(ranks)
            )
            half = v["half_open_gsd_m"]
            rows.append(
                [
                    g,
                    f"{span} ({len(ranks)})",
                    f"{v['tau_mean']:.3f} ± {v['tau_std']:.3f}",
                    "open over the range" if half is None else f"{half:.3g} m",
                ]
                + [f"{x:.3f}" for x in v["gate_at_gsd_m"].values()]
            )
        header = ["group", "ranks (n)", "tau mean ± sd", "gate = 0.5 at"] + [
            f"h @ {v:g} m" for v in READOUT_GSDS_M
        ]
        return (
            f"{d['n_layers']} CS-HLoRA layers, r = {d['r']}; sharpness alpha mean "
            f"{s['mean']:.3f} (min {s['min']:.3f}, max {s['max']:.3f}). Groups by initial "
            "tier; gate values are means over the group's ranks and all layers.\n\n"
            + markdown_table(header, rows)
        )


def gate_curves_from_params(
    taus: np.ndarray,
    sharpness: np.ndarray,
    tau_init: Sequence[float],
    *,
    layer_names: Sequence[str] | None = None,
    log10_gsd: np.ndarray | None = None,
) -> GateCurves:
    """Gate curves from raw parameters: ``taus`` (L, r), ``sharpness`` (L,).

    Raises:
        ValueError: If the shapes disagree with each other or with ``tau_init``.
    """
    taus = np.atleast_2d(np.asarray(taus, dtype=np.float64))
    alpha = np.atleast_1d(np.asarray(sharpness, dtype=np.float64))
    if alpha.shape != (taus.shape[0],) or taus.shape[1] != len(tau_init):
        raise ValueError(
            f"taus {taus.shape}, sharpness {alpha.shape} and tau_init ({len(tau_init)}) "
            "disagree: expected (L, r), (L,) and r"
        )
    s = np.linspace(*S_RANGE, 200) if log10_gsd is None else np.asarray(log10_gsd, float)
    names = tuple(layer_names) if layer_names is not None else tuple(map(str, range(len(alpha))))
    groups = rank_groups(tau_init)
    # (L, r, S)
    h = 1.0 / (1.0 + np.exp(-alpha[:, None, None] * (taus[:, :, None] - s[None, None, :])))
    per_layer = {g: h[:, ranks, :].mean(axis=1) for g, ranks in groups.items()}
    return GateCurves(s, names, taus, alpha, groups, per_layer)


def gate_curves(
    model: nn.Module,
    config: CSHLoRAConfig | None = None,
    *,
    log10_gsd: np.ndarray | None = None,
) -> GateCurves:
    """The gate curves of every CS-HLoRA layer of ``model``.

    Args:
        model: Any module holding :class:`CSHLoRALinear` layers (a ScaleEarth wrapper
            or the bare backbone).
        config: The adapter's config, for the initial tier of each rank (default: the
            paper's tiers at the layers' rank).
        log10_gsd: The grid of s (default: 200 points over :data:`S_RANGE`).

    Raises:
        ValueError: If the model has no CS-HLoRA layer, or the config's rank differs.
    """
    from earthvlm.adapters.cshlora import CSHLoRAConfig, gated_layers

    layers = gated_layers(model)
    if not layers:
        raise ValueError("the model has no CS-HLoRA layer (inject_cshlora or load_cshlora first)")
    taus = np.stack([lay.cshlora_tau.detach().float().cpu().numpy() for lay in layers.values()])
    alpha = np.asarray([float(lay.cshlora_sharpness.detach()) for lay in layers.values()])
    r = taus.shape[1]
    config = config or CSHLoRAConfig(r=r)
    if config.r != r:
        raise ValueError(f"config has r = {config.r} but the model's gated layers have r = {r}")
    return gate_curves_from_params(
        taus, alpha, config.tau_init(), layer_names=list(layers), log10_gsd=log10_gsd
    )


def plot_gate_curves(
    curves: GateCurves,
    path: str | Path,
    *,
    tier_boundaries_m: Sequence[float] = TIER_BOUNDARIES_M,
    title: str = "CS-HLoRA gates h_k(s) by initial tier group",
    true_gsd_m: float | None = None,
) -> Path:
    """Mean gate per group over GSD (log axis) with the min-max band across layers."""
    fig = new_figure((7.5, 4.5))
    ax = fig.subplots()
    x = curves.gsd_m
    for i, g in enumerate(curves.groups):
        lo, hi = curves.spread(g)
        n = len(curves.groups[g])
        ax.fill_between(x, lo, hi, color=f"C{i}", alpha=0.2, lw=0)
        ax.plot(x, curves.mean(g), color=f"C{i}", lw=2.0, label=f"{g} ({n} ranks)")
    mark_gsd_axis(ax, tier_boundaries_m)
    if true_gsd_m is not None:
        ax.axvline(true_gsd_m, color="black", lw=1.4, label="true GSD")
    ax.set_xscale("log")
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("GSD (m), s = log10 GSD")
    ax.set_ylabel("gate h_k(s), group mean")
    ax.set_title(f"{title}\nband: min-max over {len(curves.layer_names)} layers")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.85)
    return save_figure(fig, path)


# -- bottleneck latents for the rank probe -----------------------------------------------


def bottleneck_layer(model: nn.Module, name: str) -> CSHLoRALinear:
    """The CS-HLoRA layer at module path ``name`` (or the one path ending with it).

    Raises:
        ValueError: If no layer, or more than one, matches (the message lists some).
    """
    from earthvlm.adapters.cshlora import gated_layers

    layers = gated_layers(model)
    if name in layers:
        return layers[name]
    hits = [n for n in layers if n.endswith(name)]
    if len(hits) == 1:
        return layers[hits[0]]
    some = ", ".join(list(layers)[:6]) + (" ..." if len(layers) > 6 else "")
    why = "matches several layers" if hits else "matches no CS-HLoRA layer"
    raise ValueError(f"{name!r} {why}; give a full path, e.g. one of: {some}")


class BottleneckRecorder:
    """Records the r-dim bottleneck ``h(s) * (A x)`` of one CS-HLoRA layer: the
    activations after A and the gate, before B (the paper's "latent before the final
    up-projection"), mean-pooled over each sample's tokens.

    Use as a context manager around plain forward passes (one hook call per batch;
    ``generate`` would add one call per decoded token). Set ``token_mask`` (B, T) before a
    pass to pool over real tokens only (e.g. the attention mask). Dropout is not applied
    (eval semantics).

    Example::

        layer = bottleneck_layer(model, "language_model.layers.1.mlp.down_proj")
        with BottleneckRecorder(layer) as rec:
            for batch in batches:
                rec.token_mask = batch["attention_mask"]
                wrapper(**batch)
        latents = rec.latents()  # (N, r)
    """

    def __init__(self, layer: CSHLoRALinear) -> None:
        self.layer = layer
        self.token_mask: torch.Tensor | None = None
        self._rows: list[np.ndarray] = []
        self._handle: Any = None

    def __enter__(self) -> BottleneckRecorder:
        self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        import torch
        from torch.nn import functional as F

        layer = self.layer
        x = args[0]
        with torch.no_grad():
            z = F.linear(x, layer.cshlora_A.to(x.dtype)).float()
            if x.dim() == 3:
                batch, seq = x.shape[0], x.shape[1]
            else:  # (B, in): one token per sample
                batch, seq, z = x.shape[0], 1, z[:, None, :]
            h = layer.gate(layer.context.for_batch(batch, seq)).float()
            if h.dim() == 2:
                h = h[:, None, :]
            latent = z * h  # (B, T, r)
            mask = self.token_mask
            if mask is None:
                pooled = latent.mean(dim=1)
            else:
                m = mask.to(latent.device).float()
                if m.shape != latent.shape[:2]:
                    raise ValueError(
                        f"token_mask has shape {tuple(m.shape)} but the layer saw "
                        f"{tuple(latent.shape[:2])} (batch, tokens); set it per batch"
                    )
                pooled = (latent * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)
        self._rows.append(pooled.cpu().numpy())

    def latents(self) -> np.ndarray:
        """(N, r) every recorded sample, in call order.

        Raises:
            ValueError: If nothing was recorded.
        """
        if not self._rows:
            raise ValueError("no forward pass reached the recorded layer")
        return np.concatenate(self._rows, axis=0)

    def clear(self) -> None:
        self._rows.clear()
