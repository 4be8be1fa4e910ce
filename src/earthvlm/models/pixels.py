"""Packed uint8 pixels, expanded on the model's device to the processor's exact values.

A Qwen-VL batch's ``pixel_values`` row holds one patch as ``C x T x p x p`` float32
values: the still image normalised and repeated over the temporal patch (``T = 2``), 8x
the bytes of the uint8 image (24 MiB per 1024 px image). The packed format
(``Collator(..., pixel_format="uint8")``, :meth:`earthvlm.data.pixels.PixelProcessor.pack`)
keeps the same rows in the same order as ``C x p x p`` uint8 values, and
:func:`install_packed_pixels` puts a forward pre-hook on the vision tower's patch
embedding that expands them where the model runs:

* a row of ``3 * p * p`` values (packed) becomes ``(x / (1 / rescale) - mean) / std``
  in float32, repeated over ``T`` in the processor's layout, cast to the dtype the
  tower got (transformers casts ``pixel_values`` to the tower's dtype before it:
  integers 0..255 are exact in bfloat16, float16 and float32, and so is the cast of the
  expanded float32 values, the same cast the float32 rows take);
* a row of ``3 * T * p * p`` values (the float32 format) passes through untouched;
* any other width, or packed values outside 0..255, raise :class:`PackedPixelsError`.

Exactness: the float32 arithmetic above is the fast path of
:class:`~earthvlm.data.pixels.PixelProcessor`, which equals the transformers processor's
(float64 rescale, float32 cast, float32 normalisation) for the usual rescale factors. It
is checked once per device on every uint8 value of every channel against
:func:`~earthvlm.data.pixels.normalised_table`; where it differs (another rescale
factor, a device whose division is not IEEE-rounded) the table is gathered instead, so
the output is bit-identical either way. Moving the normalisation and the temporal repeat
to the accelerator is what makes the batch cheap to build: the expansion is a few
elementwise passes there (on a CPU it costs about what the data loader saved).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from earthvlm.data.pixels import PixelProcessor, normalised_table
from earthvlm.errors import EarthVLMError

logger = logging.getLogger(__name__)

#: Attribute of the patch embedding that holds ``(PackedPixels, handle)`` once installed.
ATTR = "_earthvlm_packed_pixels"
#: CPU expansion works on blocks of rows whose float32 values take about this much (cache).
_BLOCK_BYTES = 1 << 20


class PackedPixelsError(EarthVLMError, ValueError):
    """``pixel_values`` the vision tower cannot read: a wrong row width or value range."""


@dataclass(frozen=True)
class PackedPixels:
    """Expands packed uint8 patch rows into the processor's float rows.

    Build it with :meth:`from_processor`; :func:`install_packed_pixels` hooks it into a
    model, and :meth:`expand` is what the hook calls (usable on its own, e.g. to compare a
    packed batch with a float32 one).
    """

    patch_size: int
    """Vision patch side in pixels."""
    temporal_patch_size: int
    """Frames per temporal patch (the packed row holds one)."""
    image_mean: tuple[float, float, float]
    """Per-channel mean of the 0-1 pixel values."""
    image_std: tuple[float, float, float]
    """Per-channel standard deviation of the 0-1 pixel values."""
    rescale_factor: float
    """Multiplies the uint8 values before normalising."""
    _exact: dict[Any, bool] = field(default_factory=dict, repr=False, compare=False)
    _numbers: dict[Any, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.temporal_patch_size < 2:
            raise ValueError(
                f"temporal_patch_size={self.temporal_patch_size}: packed rows are told from "
                "float rows by their width, which needs a temporal patch of 2 or more; use "
                "the float32 pixel format"
            )

    @classmethod
    def from_processor(cls, pixels: Any) -> PackedPixels:
        """The numbers of a :class:`~earthvlm.data.pixels.PixelProcessor`, a transformers
        Qwen-VL image processor, a processor holding one (``.image_processor``), or a
        :class:`~earthvlm.models.backbone.Backbone` (``.processor``).

        Raises:
            ValueError: If the image processor is configured in a way
                :class:`~earthvlm.data.pixels.PixelProcessor` does not reproduce.
        """
        for attr in ("processor", "image_processor"):
            if not isinstance(pixels, PixelProcessor) and hasattr(pixels, attr):
                pixels = getattr(pixels, attr)
        if not isinstance(pixels, PixelProcessor):
            pixels = PixelProcessor.from_image_processor(pixels)
        return cls(
            patch_size=pixels.patch_size,
            temporal_patch_size=pixels.temporal_patch_size,
            image_mean=pixels.image_mean,
            image_std=pixels.image_std,
            rescale_factor=pixels.rescale_factor,
        )

    @property
    def packed_dim(self) -> int:
        """Values per packed row: ``3 * patch_size**2``."""
        return 3 * self.patch_size**2

    @property
    def full_dim(self) -> int:
        """Values per float row: ``3 * temporal_patch_size * patch_size**2``."""
        return self.temporal_patch_size * self.packed_dim

    def is_packed(self, rows: torch.Tensor) -> bool:
        """Whether ``rows`` has the packed width (else it should be the full one)."""
        return rows.shape[-1] == self.packed_dim

    def expand(self, rows: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Packed rows ``(N, 3 * p * p)`` -> the processor's rows ``(N, 3 * T * p * p)``.

        Args:
            rows: Values 0..255, any dtype that holds them exactly (uint8 from the
                collator, or the tower's float dtype after transformers' cast).
            dtype: The output dtype; default ``rows``' dtype when it is a float type,
                else float32.

        Raises:
            PackedPixelsError: For another width or values outside 0..255.
        """
        if rows.ndim != 2 or rows.shape[-1] != self.packed_dim:
            raise PackedPixelsError(
                f"packed pixel_values of shape {tuple(rows.shape)}: expected (patches, "
                f"{self.packed_dim}) uint8 rows (3 x {self.patch_size} x {self.patch_size})"
            )
        if dtype is None:
            dtype = rows.dtype if rows.is_floating_point() else torch.float32
        n, t, pp = rows.shape[0], self.temporal_patch_size, self.patch_size**2
        out = torch.empty((n, 3, t, pp), dtype=dtype, device=rows.device)
        if n:
            if rows.dtype != torch.uint8:  # one reduction and one sync per forward
                lo, hi = torch.stack(list(torch.aminmax(rows))).tolist()
                if not (lo >= 0 and hi <= 255):
                    raise PackedPixelsError(
                        f"packed pixel_values hold values in [{lo:g}, {hi:g}]; packed rows "
                        "are uint8 pixels 0..255 (Collator(pixel_format='uint8')), not "
                        "normalised values"
                    )
            self._fill(rows.view(n, 3, pp), out)
        return out.view(n, self.full_dim)

    def _fill(self, src: torch.Tensor, out: torch.Tensor) -> None:
        """Normalise ``src`` ``(N, 3, p*p)`` into every frame of ``out`` ``(N, 3, T, p*p)``.

        On a CPU, blocks of rows are normalised in a cache-sized scratch buffer and then
        copied to each frame (as :class:`~earthvlm.data.pixels.PixelProcessor` does):
        half the time of whole-tensor passes over memory. An accelerator takes the whole
        tensor at once (one kernel per operation).
        """
        device = src.device
        if device not in self._exact:
            self._exact[device] = self._arithmetic_is_exact(device)
        n, _, t, pp = out.shape
        block = max(1, _BLOCK_BYTES // (3 * pp * 4)) if device.type == "cpu" else n
        scratch = torch.empty((min(block, n), 3, pp), dtype=torch.float32, device=device)
        for i in range(0, n, block):
            part, values = src[i : i + block], scratch[: min(block, n - i)]
            if self._exact[device]:
                self._arithmetic(part, values)
            else:
                table = torch.from_numpy(self._table()).to(device).view(-1)
                offsets = torch.arange(3, device=device).view(1, 3, 1) * 256
                values.copy_(table[part.to(torch.int64) + offsets])
            out[i : i + block].copy_(values.unsqueeze(2).expand(len(values), 3, t, pp))

    def _arithmetic(self, src: torch.Tensor, dst: torch.Tensor) -> None:
        """``dst = (src / float32(1 / rescale) - mean) / std`` in float32, in place.

        PixelProcessor's fast path. The divisors are tensors on the device: CUDA divides
        by a CPU scalar as a multiplication by its reciprocal, which is not always the
        correctly rounded quotient.
        """
        device = src.device
        if device not in self._numbers:
            numbers = [[1 / self.rescale_factor] * 3, self.image_mean, self.image_std]
            self._numbers[device] = torch.tensor(numbers, dtype=torch.float32, device=device)
        divisor, mean, std = self._numbers[device].view(3, 1, 3, 1)
        dst.copy_(src).div_(divisor).sub_(mean).div_(std)

    def _table(self):
        return normalised_table(self.image_mean, self.image_std, self.rescale_factor)

    def _arithmetic_is_exact(self, device: torch.device) -> bool:
        """The float32 arithmetic on every uint8 value, through the same kernels as
        :meth:`_fill`, against the processor's table."""
        pp = self.patch_size**2
        n = -(-256 // pp)  # rows that hold all 256 values per channel
        values = torch.arange(n * pp, device=device) % 256
        src = values.view(n, 1, pp).expand(n, 3, pp).to(torch.uint8)
        dst = torch.empty((n, 3, pp), device=device)
        self._arithmetic(src, dst)
        got = dst.permute(1, 0, 2).reshape(3, -1)[:, :256]
        exact = torch.equal(got.cpu(), torch.from_numpy(self._table()))
        if not exact:
            logger.info("packed pixels on %s: float32 arithmetic inexact, using the table", device)
        return exact

    # -- the hook -------------------------------------------------------------------------

    def __call__(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """Forward pre-hook of the patch embedding: expand packed rows, pass float rows."""
        if args:
            x, rest = args[0], args[1:]
        else:
            x, rest = kwargs.get("hidden_states"), ()
        if not isinstance(x, torch.Tensor) or x.shape[-1] == self.full_dim:
            return None
        if x.shape[-1] != self.packed_dim:
            raise PackedPixelsError(
                f"pixel_values rows have {x.shape[-1]} values; this vision tower reads "
                f"{self.full_dim} (float32: 3 x {self.temporal_patch_size} x "
                f"{self.patch_size} x {self.patch_size}) or {self.packed_dim} (packed uint8: "
                f"3 x {self.patch_size} x {self.patch_size}); collate with this backbone's "
                "processor"
            )
        y = self.expand(x.reshape(-1, self.packed_dim))
        if args:
            return (y, *rest), kwargs
        return (), {**kwargs, "hidden_states": y}


def patch_embedding(model: nn.Module) -> nn.Module:
    """The vision tower's patch embedding of a Qwen-VL model (``...ForConditionalGeneration``,
    its inner ``model``, or the tower itself).

    Raises:
        ValueError: If ``model`` has no Qwen-VL vision tower.
    """
    for candidate in (model, getattr(model, "model", None)):
        visual = getattr(candidate, "visual", None)
        if isinstance(visual, nn.Module) and isinstance(
            getattr(visual, "patch_embed", None), nn.Module
        ):
            return visual.patch_embed
    if isinstance(getattr(model, "patch_embed", None), nn.Module):
        return model.patch_embed
    raise ValueError(
        f"{type(model).__name__} has no vision tower with a patch embedding "
        "(model.model.visual.patch_embed); give a Qwen2.5-VL or Qwen3-VL model"
    )


def install_packed_pixels(model: nn.Module, pixels: Any) -> RemovableHandle:
    """Let ``model`` read packed uint8 ``pixel_values`` (see the module docstring).

    Idempotent: installing the same numbers again returns the installed hook's handle;
    other numbers replace it.

    Args:
        model: A Qwen2.5-VL / Qwen3-VL model (or its inner model, or its vision tower).
        pixels: What :meth:`PackedPixels.from_processor` takes (a ``PixelProcessor``, an
            image processor, a processor, a backbone) or a :class:`PackedPixels`.

    Returns:
        The hook's handle (``handle.remove()`` uninstalls it).

    Raises:
        ValueError: If the model has no patch embedding, or its patch sizes differ from
            the processor's.
    """
    packed = pixels if isinstance(pixels, PackedPixels) else PackedPixels.from_processor(pixels)
    embed = patch_embedding(model)
    want = (packed.patch_size, packed.temporal_patch_size, 3)
    have = tuple(getattr(embed, k, None) for k in ("patch_size", "temporal_patch_size",
                                                  "in_channels"))  # fmt: skip
    if have != want:
        raise ValueError(
            f"the vision tower's patch embedding has (patch_size, temporal_patch_size, "
            f"in_channels) = {have} but the processor gives {want}: use the model's own "
            "processor"
        )
    installed = getattr(embed, ATTR, None)
    if installed is not None:
        old, handle = installed
        if old == packed and handle.id in embed._forward_pre_hooks:
            return handle
        handle.remove()
    handle = embed.register_forward_pre_hook(packed, with_kwargs=True)
    setattr(embed, ATTR, (packed, handle))
    return handle


def installed_packed_pixels(model: nn.Module) -> PackedPixels | None:
    """The :class:`PackedPixels` installed on ``model``'s patch embedding, or ``None``."""
    try:
        embed = patch_embedding(model)
    except ValueError:
        return None
    installed = getattr(embed, ATTR, None)
    if installed is None or installed[1].id not in embed._forward_pre_hooks:
        return None
    return installed[0]


__all__ = [
    "PackedPixels",
    "PackedPixelsError",
    "install_packed_pixels",
    "installed_packed_pixels",
    "patch_embedding",
]
