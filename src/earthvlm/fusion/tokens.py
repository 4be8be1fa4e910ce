"""What goes into a fusion module and what comes out of it.

A batch is a list of :class:`TokenGroup`: one per image (or optical + SAR pair) of a
sample, so that a sample may hold any number of images (text-only samples hold none).
Each group has an optional optical block ``(P, D)`` and an optional SAR block ``(N, D)``
of projected vision tokens, their token grids ``(rows, cols)``, and the prompt's text
embeddings ``(L, D)``. Qwen-VL's merged tokens are in row-major order over the merged
grid ``(grid_h / merge, grid_w / merge)`` of each image, which is the grid to give here.

A :class:`FusedTokens` holds what replaces the group in the language model's input: the
tokens, the source of each (optical, SAR, or a fusion of both), the fusion weights of
fused tokens, and the per-token scores behind them for diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from earthvlm.errors import EarthVLMError

#: Source codes of output tokens, and their names.
OPTICAL, SAR, FUSED = 0, 1, 2
SOURCE_NAMES = ("optical", "sar", "fused")
#: The modalities of Eq. 1, in the order of every ``(..., 2)`` weight or composition.
MODALITIES = ("optical", "sar")

Grid = tuple[int, int]


class FusionInputError(EarthVLMError, ValueError):
    """Token blocks, grids or text embeddings given to a fusion module do not fit."""


def _check_block(x: torch.Tensor | None, grid: Grid | None, dim: int, name: str) -> None:
    if x is None:
        if grid is not None:
            raise FusionInputError(f"{name}_grid {grid} given without {name} tokens")
        return
    if x.dim() != 2 or x.shape[1] != dim:
        raise FusionInputError(
            f"{name} tokens of shape {tuple(x.shape)}: expected (n_tokens, {dim}) "
            "(one image's projected tokens; split a batch into one group per image)"
        )
    if grid is not None:
        if len(grid) != 2 or any(int(g) < 1 for g in grid):
            raise FusionInputError(f"{name}_grid must be (rows, cols) >= 1, got {grid}")
        if grid[0] * grid[1] != x.shape[0]:
            raise FusionInputError(
                f"{name}_grid {tuple(grid)} holds {grid[0] * grid[1]} tokens but {name} has "
                f"{x.shape[0]}; for Qwen-VL give (grid_h // merge, grid_w // merge)"
            )


@dataclass(eq=False)
class TokenGroup:
    """One image, or one optical + SAR pair, of a sample, after the vision projector.

    Attributes:
        optical: ``(P, D)`` optical tokens, or ``None``.
        sar: ``(N, D)`` SAR tokens, or ``None``.
        optical_grid: ``(rows, cols)`` of the optical tokens (needed to pool).
        sar_grid: ``(rows, cols)`` of the SAR tokens (the fused tokens lie on it).
        text: ``(L, D)`` embeddings of the prompt the tokens answer (text-guided
            relevance, Eq. 4-5), or ``None``.
    """

    optical: torch.Tensor | None = None
    sar: torch.Tensor | None = None
    optical_grid: Grid | None = None
    sar_grid: Grid | None = None
    text: torch.Tensor | None = None

    @property
    def n_sensors(self) -> int:
        return int(self.optical is not None) + int(self.sar is not None)

    def validate(self, dim: int) -> None:
        """Raise :class:`FusionInputError` unless shapes and grids agree with width ``dim``."""
        _check_block(self.optical, self.optical_grid, dim, "optical")
        _check_block(self.sar, self.sar_grid, dim, "sar")
        if self.text is not None and (self.text.dim() != 2 or self.text.shape[1] != dim):
            raise FusionInputError(
                f"text embeddings of shape {tuple(self.text.shape)}: expected (L, {dim})"
            )


@dataclass(eq=False)
class FusedTokens:
    """What replaces one :class:`TokenGroup` in the language model's input.

    Attributes:
        tokens: ``(T, D)``. T is N for a fused pair (the sequence does not grow), P + N
            for concatenation, the block's own count for a single sensor, 0 for none.
        source: ``(T,)`` long: :data:`OPTICAL`, :data:`SAR` or :data:`FUSED` per token.
        grid: ``(rows, cols)`` of the output tokens when they lie on one grid, else
            ``None`` (concatenation, or a block given without its grid).
        weights: ``(T, 2)`` fusion weights ``[w_o, w_s]`` of fused tokens (Eq. 7), rows
            summing to 1; ``None`` when nothing was fused.
        alpha: ``(T, 2)`` cross-sensor importance ``[alpha_o, alpha_s]`` (Eq. 3, after
            ``score_scale``), for methods that compute it.
        beta: ``(T, 2)`` text relevance ``[beta_o, beta_s]`` (Eq. 5), when a prompt was given.
    """

    tokens: torch.Tensor
    source: torch.Tensor
    grid: Grid | None = None
    weights: torch.Tensor | None = None
    alpha: torch.Tensor | None = None
    beta: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def composition(self) -> torch.Tensor:
        """``(T, 2)``: the share of each token that is optical and SAR.

        One-hot for single-sensor and concatenated tokens, the fusion weights for fused
        ones: what the modality attention score (Eq. 1) needs to credit attention to a
        modality when tokens are mixtures.
        """
        comp = torch.zeros(len(self), 2, dtype=torch.float32, device=self.tokens.device)
        comp[self.source == OPTICAL, 0] = 1.0
        comp[self.source == SAR, 1] = 1.0
        fused = self.source == FUSED
        if bool(fused.any()):
            if self.weights is None:
                raise FusionInputError(
                    "fused tokens without weights: cannot split them by modality"
                )
            comp[fused] = self.weights[fused].detach().float()
        return comp


def flatten(outputs: list[FusedTokens]) -> tuple[torch.Tensor, torch.Tensor]:
    """All groups' tokens and sources concatenated in order: ``(sum T, D)``, ``(sum T,)``.

    The layout of Qwen-VL's image-token stream (one block per image, in order).
    """
    if not outputs:
        raise FusionInputError("no fused groups to flatten")
    return (
        torch.cat([o.tokens for o in outputs]),
        torch.cat([o.source for o in outputs]),
    )
