"""What every fusion method shares: groups in, fused tokens out; pooling; the registry.

A method subclasses :class:`SensorFusion` and implements
:meth:`SensorFusion.token_weights`: the two-way weights ``[w_o, w_s]`` of each token once
the optical tokens are on the SAR grid (Eq. 7 then mixes the two sensors). A method that
fuses otherwise (concatenation) overrides :meth:`SensorFusion.fuse_pair` instead.
Everything else is common: validation, the identity for a single sensor (EarthMind
accepts single-sensor input unchanged, sec. 3), the empty output for a group with no
image, and adaptive pooling of the optical tokens onto the SAR grid (sec. 3.2, before
Eq. 2).

Trainable parameters of fusion modules carry the ``fusion_`` prefix (what is trained and
saved).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from earthvlm.fusion.config import METHODS, REGISTRY, FusionConfig
from earthvlm.fusion.tokens import (
    FUSED,
    OPTICAL,
    SAR,
    FusedTokens,
    FusionInputError,
    Grid,
    TokenGroup,
)

#: Prefix of every trainable fusion parameter.
PREFIX = "fusion_"

#: What :meth:`SensorFusion.token_weights` returns: ``(weights, alpha, beta)``, each
#: ``(N, 2)`` (see :class:`FusedTokens`); alpha and beta None where a method has none.
TokenWeights = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]


def pool_to_grid(tokens: torch.Tensor, src: Grid, dst: Grid, mode: str = "avg") -> torch.Tensor:
    """Adaptive pooling of row-major grid tokens ``(h*w, D)`` onto grid ``dst``.

    ``avg`` or ``max``. A coarser source grid is spread over the finer one (each output
    cell takes the source cells that overlap it), so either sensor may be the finer.
    """
    (h, w), (oh, ow) = src, dst
    if (h, w) == (oh, ow):
        return tokens
    x = tokens.t().reshape(1, tokens.shape[1], h, w)
    pool = F.adaptive_avg_pool2d if mode == "avg" else F.adaptive_max_pool2d
    return pool(x, (oh, ow)).reshape(tokens.shape[1], oh * ow).t()


def _as_grid(grid: Sequence[int] | None) -> Grid | None:
    if grid is None:
        return None
    if len(grid) != 2:
        raise FusionInputError(f"a grid is (rows, cols), got {tuple(grid)}")
    return int(grid[0]), int(grid[1])


def _passthrough(x: torch.Tensor, code: int, grid: Grid | None) -> FusedTokens:
    """A single sensor's tokens, unchanged (EarthMind accepts single-sensor input, sec. 3)."""
    return FusedTokens(x, torch.full((x.shape[0],), code, dtype=torch.long, device=x.device), grid)


class SensorFusion(nn.Module):
    """Base class: fuses each :class:`TokenGroup` of a batch independently.

    Call :meth:`forward` with a list of groups, or :meth:`fuse` with one group's tensors.
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, groups: Sequence[TokenGroup]) -> list[FusedTokens]:
        """One :class:`FusedTokens` per group, in order."""
        return [self.fuse(g.optical, g.sar, (g.optical_grid, g.sar_grid), g.text) for g in groups]

    def fuse(
        self,
        optical: torch.Tensor | None,
        sar: torch.Tensor | None,
        grids: tuple[Grid | None, Grid | None] = (None, None),
        text: torch.Tensor | None = None,
    ) -> FusedTokens:
        """Fuse one image pair: ``optical (P, D)``, ``sar (N, D)``, their grids, the prompt.

        A single sensor passes through unchanged; no sensor gives ``(0, D)`` tokens.
        """
        og, sg = (_as_grid(g) for g in grids)
        TokenGroup(optical, sar, og, sg, text).validate(self.config.dim)
        if optical is not None and sar is not None:
            return self.fuse_pair(optical, sar, og, sg, text)
        if optical is not None:
            return _passthrough(optical, OPTICAL, og)
        if sar is not None:
            return _passthrough(sar, SAR, sg)
        ref = text if text is not None else next(iter(self.parameters()), None)
        kw = {"dtype": ref.dtype, "device": ref.device} if ref is not None else {}
        empty = torch.zeros(0, self.config.dim, **kw)
        return FusedTokens(empty, torch.zeros(0, dtype=torch.long, device=empty.device))

    def fuse_pair(
        self,
        optical: torch.Tensor,
        sar: torch.Tensor,
        optical_grid: Grid | None,
        sar_grid: Grid | None,
        text: torch.Tensor | None,
    ) -> FusedTokens:
        """Fuse a group that has both sensors (shapes already validated).

        Eq. 7, shared by every method but concatenation: the optical tokens are brought
        onto the SAR grid (:meth:`align`, X-hat_o), :meth:`token_weights` gives each
        token's ``[w_o, w_s]``, and the fused token is ``w_o * X-hat_o + w_s * X_s`` in
        the tokens' dtype, on the SAR grid.
        """
        xo = self.align(optical, sar, optical_grid, sar_grid)
        weights, alpha, beta = self.token_weights(xo, sar, text)
        w = weights.to(sar.dtype)
        tokens = w[:, :1] * xo + w[:, 1:] * sar
        source = torch.full((sar.shape[0],), FUSED, dtype=torch.long, device=sar.device)
        return FusedTokens(tokens, source, sar_grid, weights, alpha, beta)

    def token_weights(
        self, xo: torch.Tensor, sar: torch.Tensor, text: torch.Tensor | None
    ) -> TokenWeights:
        """``[w_o, w_s]`` per token ``(N, 2)``, rows summing to 1, and the scores behind
        them, for the optical tokens on the SAR grid ``xo`` (X-hat_o) and ``sar``, both
        ``(N, D)``, given the prompt's embeddings ``text`` ``(L, D)`` if any."""
        raise NotImplementedError

    def align(
        self,
        optical: torch.Tensor,
        sar: torch.Tensor,
        optical_grid: Grid | None,
        sar_grid: Grid | None,
    ) -> torch.Tensor:
        """The optical tokens on the SAR grid, ``(N, D)`` (EarthMind's X-hat_o, sec. 3.2)."""
        p, n = optical.shape[0], sar.shape[0]
        same = optical_grid == sar_grid if optical_grid and sar_grid else p == n
        if same and p == n:
            return optical
        if self.config.pooling == "none":
            raise FusionInputError(
                f"optical tokens {p} (grid {optical_grid}) and SAR tokens {n} (grid "
                f"{sar_grid}) are on different grids and pooling is 'none': set pooling "
                "to 'avg' or 'max', or resample the views to one grid"
            )
        if optical_grid is None or sar_grid is None:
            raise FusionInputError(
                f"optical ({p}) and SAR ({n}) token counts differ: give both grids "
                "(rows, cols) so that the optical tokens can be pooled onto the SAR grid"
            )
        return pool_to_grid(optical, optical_grid, sar_grid, self.config.pooling)


def build_fusion(config: FusionConfig) -> SensorFusion:
    """The fusion module of ``config.method`` (registered in :data:`METHODS`)."""
    if config.method not in METHODS:  # a config built with object.__setattr__ or similar
        raise FusionInputError(f"unknown fusion method {config.method!r}; known: {sorted(METHODS)}")
    return REGISTRY.get(config.method)(config)
