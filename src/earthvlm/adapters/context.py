"""The scale context: the per-sample (or per-token) scale every gated layer reads.

ScaleEarth sets the gates once per forward pass, after the vision tower and before the
language model (sec. 3.3). The model wrapper writes ``s = log10(GSD)`` here; each gated
layer reads it. ``generate()`` passes no extra kwargs to layers and expands the batch for
``num_return_sequences`` / beams, so the context is shared by reference and layers
expand it to the batch they see (``repeat_interleave``, as transformers expands inputs).

``version`` changes whenever the scale changes, so layers may cache what they derive
from it (the gate is fixed during decoding) and recompute only when it changed or their
own parameters may have (training).
"""

from __future__ import annotations

import torch

from earthvlm.errors import EarthVLMError


class ScaleContext:
    """Holds the current scale ``s`` for a batch: shape (B,) or, per token, (B, T)."""

    def __init__(self) -> None:
        self._s: torch.Tensor | None = None
        self.version = 0

    @property
    def s(self) -> torch.Tensor | None:
        return self._s

    def set(self, s: torch.Tensor | None) -> None:
        """Set the scale for the next forward passes (``None`` clears it)."""
        if s is not None:
            if s.dim() not in (1, 2):
                raise EarthVLMError(f"scale must be (B,) or (B, T), got shape {tuple(s.shape)}")
            if not torch.isfinite(s).all():
                raise EarthVLMError("scale has NaN or inf: every sample needs a finite log10 GSD")
        self._s = s
        self.version += 1

    def for_batch(self, batch: int, seq: int) -> torch.Tensor:
        """The scale expanded to a (batch,) or (batch, seq) tensor for a layer's input.

        Raises:
            EarthVLMError: If no scale is set, or the batch is not a multiple of it.
        """
        s = self._s
        if s is None:
            raise EarthVLMError(
                "a scale-conditioned layer ran with no GSD set: call the model through its "
                "ScaleEarth wrapper, or set context.set(log10_gsd) before the forward pass"
            )
        if s.shape[0] != batch:
            if batch % s.shape[0]:
                raise EarthVLMError(
                    f"scale has {s.shape[0]} samples but the layer sees a batch of {batch}"
                )
            s = s.repeat_interleave(batch // s.shape[0], dim=0)
        if s.dim() == 2 and s.shape[1] != seq:
            # decoding: a per-token scale continues with each sample's last value
            s = s[:, -1]
        return s
