"""Referring segmentation with a ``[SEG]`` token and a light mask decoder (EarthMind sec.
3.1, 3.3 and App. D).

* :func:`add_seg_token` adds ``[SEG]`` to the tokenizer and makes a row for it in the
  embeddings (and the output head when it is not tied).
* The final hidden state of the language model at each ``[SEG]`` position prompts a mask
  decoder (App. D: "the hidden state of the final LLM layer corresponding to the [SEG]
  token serves as the semantic prompt"). A sample without ``[SEG]`` gets no mask: the
  queried object is not present (App. D).
* :class:`LightMaskDecoder`: a compact decoder written here. The ``[SEG]`` state becomes a
  query that attends to the image's vision tokens; the tokens are upsampled from the
  merged grid to the patch grid and refined; mask logits are the query's dot product with
  every patch feature, upsampled to the image.
* :func:`mask_loss`: pixel binary cross-entropy plus Dice (sec. 3.3), on samples with a
  mask.
* :class:`EarthSeg` ties them into one forward pass of a Qwen-VL model (or of an
  :class:`~earthvlm.models.fusion.EarthFusion`, whose fused pairs then feed the decoder).

Trainable decoder parameters carry the ``seg_`` prefix (what is trained and saved, as
``fusion_`` for fusion and ``cshlora_`` for adapters).

Where this departs from the paper, and why:

* **No grounding encoder.** EarthMind decodes masks with SAM2 and its own image encoder
  (E_g, sec. 3.1). The light decoder reads the vision tokens the language model sees
  (Qwen's merger output, fused for a pair), so it adds no second encoder; a SAM-style
  decoder plugs in through :class:`MaskDecoderConfig` (``kind="sam"``) when its weights are
  on disk, and receives the image's pixels through :class:`SegQuery`.
* **Loss weights** are LISA's (BCE 2.0, Dice 0.5, masks averaged): the paper names the two
  terms only.
* ``[SEG]`` is an ordinary added token (atomic, like ``<tool_call>``), not a *special* one:
  the collator refuses special tokens in dataset text and ``skip_special_tokens`` would
  hide it from decoded answers.
* The hidden state is read *at* the ``[SEG]`` position (after the model has read the
  token), the paper's wording; LISA reads the position that emits it.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn import functional as F

from earthvlm.errors import EarthVLMError
from earthvlm.models.fusion import IGNORE_INDEX, EarthFusion, image_runs
from earthvlm.models.pixels import installed_packed_pixels

#: The segmentation token.
SEG_TOKEN = "[SEG]"
#: Prefix of every trainable mask-decoder parameter.
PREFIX = "seg_"
#: Decoder kinds: ``light`` is :class:`LightMaskDecoder`; ``sam`` is the class named by
#: ``MaskDecoderConfig.sam_class`` (a SAM-style decoder whose weights are on disk).
DECODER_KINDS: tuple[str, ...] = ("light", "sam")

Grid = tuple[int, int]


class SegError(EarthVLMError, ValueError):
    """A segmentation config, decoder or batch does not fit."""


# -- the token --------------------------------------------------------------------------


def add_seg_token(model: nn.Module, tokenizer: Any, token: str = SEG_TOKEN) -> int:
    """Add ``token`` to ``tokenizer`` and an embedding row for it to ``model``; its id.

    The embeddings are resized only when the id falls outside them (real Qwen checkpoints
    have spare rows). The new row (and the output head's, when not tied) starts at the
    mean of the existing rows, so that ``[SEG]`` begins as an average token. Calling it
    again changes nothing (a trained row is kept).
    """
    from tokenizers import AddedToken

    fresh = token not in tokenizer.get_vocab()
    if fresh:
        tokenizer.add_tokens([AddedToken(token, special=False, normalized=False)])
    seg_id = int(tokenizer.convert_tokens_to_ids(token))
    n_rows = model.get_input_embeddings().weight.shape[0]
    if seg_id >= n_rows:
        model.resize_token_embeddings(seg_id + 1, mean_resizing=False)
        fresh = True
    if fresh:
        layers = [model.get_input_embeddings()]
        head = model.get_output_embeddings()
        if head is not None and head.weight is not layers[0].weight:
            layers.append(head)
        with torch.no_grad():
            for layer in layers:
                layer.weight[seg_id] = layer.weight[: min(seg_id, n_rows)].mean(0)
    return seg_id


# -- decoders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskDecoderConfig:
    """Which mask decoder, its sizes, and the loss weights.

    Attributes:
        hidden_size: Width of the language model's hidden states (the ``[SEG]`` state).
        vision_dim: Width of the vision tokens the decoder reads; default
            ``hidden_size`` (Qwen's merger output, or fused tokens).
        dim: The light decoder's internal width.
        heads: Attention heads of the light decoder's query-to-image attention.
        merge: Patches merged per side into one vision token (2 for Qwen-VL): the
            light decoder upsamples the token grid by this to reach the patch grid.
        kind: ``light`` (:class:`LightMaskDecoder`) or ``sam`` (a SAM-style decoder,
            ``sam_class``, loading ``weights_path``).
        weights_path: Local folder of a ``sam`` decoder's weights (never downloaded).
        sam_class: ``"module:Class"`` of a ``sam`` decoder: built as ``Class(config)``,
            it implements :class:`MaskDecoder` and reads ``weights_path``.
        bce_weight: Weight of the pixel binary cross-entropy (sec. 3.3; LISA's 2.0).
        dice_weight: Weight of the Dice loss (sec. 3.3; LISA's 0.5).
    """

    hidden_size: int
    vision_dim: int | None = None
    dim: int = 64
    heads: int = 4
    merge: int = 2
    kind: str = "light"
    weights_path: str | None = None
    sam_class: str | None = None
    bce_weight: float = 2.0
    dice_weight: float = 0.5

    def __post_init__(self) -> None:
        for name in ("hidden_size", "dim", "heads", "merge"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.vision_dim is not None and self.vision_dim < 1:
            raise ValueError(f"vision_dim must be a positive int or None, got {self.vision_dim}")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if self.kind not in DECODER_KINDS:
            raise ValueError(f"kind must be one of {DECODER_KINDS}, got {self.kind!r}")
        if self.kind == "sam" and not self.weights_path:
            raise ValueError("kind='sam' needs weights_path: the local folder of its weights")
        for name in ("bce_weight", "dice_weight"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")

    @property
    def in_vision(self) -> int:
        return self.vision_dim or self.hidden_size


@dataclass(eq=False)
class SegQuery:
    """What a mask decoder gets for one image: the ``[SEG]`` states and the image.

    Attributes:
        embeds: ``(K, hidden)`` final hidden states at the sample's ``[SEG]`` tokens.
        vision: ``(h * w, vision_dim)`` the image's vision tokens, row-major on ``grid``.
        grid: ``(h, w)`` of the vision tokens (the merged grid).
        out_size: ``(H, W)`` pixels of the masks to return.
        pixels: ``(3, H', W')`` the image as the vision tower saw it (normalised with the
            backbone's ``image_mean`` / ``image_std``), for decoders with their own image
            encoder; ``None`` unless the decoder sets ``needs_pixels``.
    """

    embeds: torch.Tensor
    vision: torch.Tensor
    grid: Grid
    out_size: tuple[int, int]
    pixels: torch.Tensor | None = None


@runtime_checkable
class MaskDecoder(Protocol):
    """The interface of a mask decoder: ``SegQuery`` in, ``(K, H, W)`` mask logits out.

    A SAM-style decoder (``kind="sam"``) sets ``needs_pixels = True`` to receive
    :attr:`SegQuery.pixels`, projects ``embeds`` to its prompt width as sparse prompt
    embeddings, and runs its own image encoder and mask decoder.
    """

    needs_pixels: bool

    def __call__(self, query: SegQuery) -> torch.Tensor: ...


class LightMaskDecoder(nn.Module):
    """A compact promptable mask decoder on the vision tokens.

    1. ``[SEG]`` state -> query (two-layer MLP, as LISA's projection of the hidden state);
    2. the query attends to the image's vision tokens (one cross-attention, residual);
    3. the tokens are projected, upsampled from the merged grid to the patch grid
       (bilinear, x ``merge``) and refined by a residual 3x3 convolution;
    4. mask logits on the patch grid = query embedding . patch feature / sqrt(dim) + bias,
       upsampled (bilinear) to ``out_size``.
    """

    needs_pixels = False

    def __init__(self, config: MaskDecoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config.dim
        self.seg_query = nn.Sequential(nn.Linear(config.hidden_size, c), nn.GELU(), nn.Linear(c, c))
        self.seg_vision = nn.Linear(config.in_vision, c)
        self.seg_attn = nn.MultiheadAttention(c, config.heads, batch_first=True)
        self.seg_norm = nn.LayerNorm(c)
        self.seg_refine = nn.Conv2d(c, c, kernel_size=3, padding=1)
        self.seg_mask_embed = nn.Linear(c, c)
        self.seg_bias = nn.Parameter(torch.zeros(()))

    def patch_logits(self, query: SegQuery) -> torch.Tensor:
        """``(K, h * merge, w * merge)`` mask logits on the patch grid."""
        (h, w), c = query.grid, self.config.dim
        if query.vision.dim() != 2 or query.vision.shape[0] != h * w:
            raise SegError(
                f"vision tokens of shape {tuple(query.vision.shape)} do not fill the grid "
                f"{query.grid}: give (h * w, {self.config.in_vision}) tokens in row-major order"
            )
        if query.embeds.dim() != 2 or query.embeds.shape[1] != self.config.hidden_size:
            raise SegError(
                f"[SEG] states of shape {tuple(query.embeds.shape)}: expected "
                f"(K, {self.config.hidden_size})"
            )
        dtype = self.seg_vision.weight.dtype
        v = self.seg_vision(query.vision.to(dtype))  # (h*w, C)
        q = self.seg_query(query.embeds.to(dtype))  # (K, C)
        attended, _ = self.seg_attn(q[None], v[None], v[None], need_weights=False)
        q = self.seg_norm(q + attended[0])
        f = v.t().reshape(1, c, h, w)
        f = F.interpolate(f, scale_factor=self.config.merge, mode="bilinear", align_corners=False)
        f = f + F.gelu(self.seg_refine(f))
        m = self.seg_mask_embed(q)
        return torch.einsum("kc,chw->khw", m, f[0]) / math.sqrt(c) + self.seg_bias

    def forward(self, query: SegQuery) -> torch.Tensor:
        """``(K, H, W)`` mask logits at ``query.out_size``."""
        logits = self.patch_logits(query)
        return F.interpolate(
            logits[None], size=tuple(query.out_size), mode="bilinear", align_corners=False
        )[0]


def build_mask_decoder(config: MaskDecoderConfig) -> nn.Module:
    """The mask decoder of ``config.kind``.

    Raises:
        SegError: For ``sam``: the weights folder is missing, or no ``sam_class`` is set,
            or the class does not implement :class:`MaskDecoder`.
    """
    if config.kind == "light":
        return LightMaskDecoder(config)
    path = Path(str(config.weights_path)).expanduser()
    if not path.exists():
        raise SegError(
            f"mask decoder 'sam': no weights at {path}. Put a SAM-style checkpoint in that "
            "folder (nothing is downloaded), point MaskDecoderConfig.weights_path at it, or "
            "use kind='light'"
        )
    if not config.sam_class or ":" not in config.sam_class:
        raise SegError(
            f"mask decoder 'sam' with weights at {path} needs sam_class='module:Class': a "
            "class built as Class(config) that implements earthvlm.models.seg.MaskDecoder"
        )
    module, _, attr = config.sam_class.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise SegError(f"sam_class {config.sam_class!r} cannot be imported: {e}") from None
    decoder = cls(config)
    if not isinstance(decoder, nn.Module) or not isinstance(decoder, MaskDecoder):
        raise SegError(
            f"sam_class {config.sam_class!r} built a {type(decoder).__name__}, which is not an "
            "nn.Module with needs_pixels and __call__(SegQuery) -> (K, H, W) logits"
        )
    return decoder


# -- the loss ---------------------------------------------------------------------------


def dice_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """``(K,)``: ``1 - (2 |P.T| + eps) / (|P| + |T| + eps)`` per mask, ``eps`` in pixels.

    0 for a perfect mask (an empty mask predicted empty included).
    """
    p = probs.flatten(1).float()
    t = target.flatten(1).float()
    return 1.0 - (2.0 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)


@dataclass
class MaskLoss:
    """The segmentation loss of a batch and its two terms (each averaged over masks)."""

    total: torch.Tensor
    bce: torch.Tensor
    dice: torch.Tensor


def mask_loss(
    logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 2.0, dice_weight: float = 0.5
) -> MaskLoss:
    """Pixel BCE + Dice of ``(K, H, W)`` logits against ``(K, H, W)`` binary masks (sec. 3.3)."""
    if logits.shape != target.shape:
        raise SegError(
            f"mask logits {tuple(logits.shape)} and target masks {tuple(target.shape)} differ"
        )
    t = target.float()
    bce = F.binary_cross_entropy_with_logits(logits.float(), t, reduction="none")
    bce = bce.flatten(1).mean(1).mean()
    dice = dice_loss(logits.float().sigmoid(), t).mean()
    return MaskLoss(bce_weight * bce + dice_weight * dice, bce, dice)


# -- one forward pass -------------------------------------------------------------------


@dataclass
class SegOutput:
    """What :class:`EarthSeg` returns.

    Attributes:
        lm: The model's output (``logits``, ``loss`` when labels were given, ...).
        masks: Per sample, ``(K, H, W)`` mask logits for its K ``[SEG]`` tokens, or
            ``None`` when it has none (the object is not present).
        mask_images: Per sample, the image (index over the batch) its masks belong to.
        seg: The segmentation loss over samples with target masks, or ``None``.
    """

    lm: Any
    masks: list[torch.Tensor | None]
    mask_images: list[int | None]
    seg: MaskLoss | None = None

    @property
    def loss(self) -> torch.Tensor | None:
        """Language loss + segmentation loss (whichever exist)."""
        lm = getattr(self.lm, "loss", None)
        seg = self.seg.total if self.seg is not None else None
        if lm is None or seg is None:
            return seg if lm is None else lm
        return lm + seg


class EarthSeg(nn.Module):
    """A Qwen-VL model (or :class:`EarthFusion`) with a ``[SEG]``-prompted mask decoder.

    Args:
        net: ``Qwen3VLForConditionalGeneration`` / ``Qwen2_5_VLForConditionalGeneration``
            with ``[SEG]`` added (:func:`add_seg_token`), or an :class:`EarthFusion` around
            one (fused pairs then feed the decoder their fused tokens on the SAR grid).
        decoder: A mask decoder (:func:`build_mask_decoder`).
        seg_token_id: The id :func:`add_seg_token` returned.
    """

    def __init__(self, net: nn.Module, decoder: nn.Module, seg_token_id: int) -> None:
        super().__init__()
        self.net = net
        self.seg_decoder = decoder
        self.seg_token_id = int(seg_token_id)
        model = net.model if isinstance(net, EarthFusion) else net
        object.__setattr__(self, "_hf", model)
        cfg = model.config
        self.image_token_id = int(cfg.image_token_id)
        self.patch = int(cfg.vision_config.patch_size)
        self.merge = int(cfg.vision_config.spatial_merge_size)
        self.temporal = int(getattr(cfg.vision_config, "temporal_patch_size", 1))
        n_rows = model.get_input_embeddings().weight.shape[0]
        if self.seg_token_id >= n_rows:
            raise SegError(
                f"[SEG] id {self.seg_token_id} has no embedding row ({n_rows} rows): add it "
                "with add_seg_token(model, tokenizer)"
            )
        self._capture: dict[str, Any] | None = None
        model.model.visual.register_forward_hook(self._vision_hook, with_kwargs=True)
        model.model.language_model.register_forward_hook(self._lm_hook)

    # -- hooks ----------------------------------------------------------------------------

    def _vision_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self._capture is None:
            return
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        merged = output.pooler_output if hasattr(output, "pooler_output") else output[1]
        sizes = (grid.prod(-1) // self.merge**2).tolist()
        self._capture["tokens"] = list(torch.split(merged, sizes))
        self._capture["grid"] = grid

    def _lm_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self._capture is not None:
            self._capture["hidden"] = (
                output[0] if isinstance(output, tuple) else output.last_hidden_state
            )

    # -- calls ----------------------------------------------------------------------------

    def forward(
        self,
        *,
        masks: Sequence[torch.Tensor | None] | None = None,
        mask_images: Sequence[int | None] | None = None,
        **inputs: Any,
    ) -> SegOutput:
        """Run the model; decode a mask for every ``[SEG]`` token; add the mask loss.

        Args:
            masks: Per sample, ``(K, H, W)`` (or ``(H, W)``) binary targets for its K
                ``[SEG]`` tokens, or ``None``; masks are predicted at their size.
            mask_images: Per sample, the image (index over the batch) its masks belong to;
                default the sample's last image.
            **inputs: The batch, as the wrapped ``net`` takes it (``pairs`` /
                ``modalities`` for :class:`EarthFusion`).
        """
        ids = inputs.get("input_ids")
        if ids is None:
            raise SegError("EarthSeg needs input_ids to find the [SEG] tokens")
        if masks is not None and len(masks) != ids.shape[0]:
            raise SegError(f"masks has {len(masks)} entries for {ids.shape[0]} samples")
        self._capture = {}
        try:
            lm = self.net(**inputs)
            cap = self._capture
        finally:
            self._capture = None
        if "hidden" not in cap:
            raise SegError("the language model did not run (no hidden states to read [SEG] from)")
        return self._decode(lm, cap, inputs, masks, mask_images)

    @torch.no_grad()
    def generate(
        self,
        inputs: Mapping[str, Any],
        *,
        mask_images: Sequence[int | None] | None = None,
        **generate_kwargs: Any,
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """Generate answers; decode a mask where an answer contains ``[SEG]``.

        A sample whose answer has no ``[SEG]`` gets ``None`` (not present, App. D). When
        some answer has one, the prompt and answers run once more (teacher-forced, answers
        marked as labels so that a fusion module reads the same prompt as in generation)
        to read the final hidden state at each ``[SEG]``.

        Returns:
            The generated sequences and, per sample, ``(K, H, W)`` mask logits or ``None``.
        """
        route = {k: generate_kwargs[k] for k in ("pairs", "modalities") if k in generate_kwargs}
        seq = self.net.generate(**inputs, **generate_kwargs)
        ids = inputs["input_ids"]
        n_prompt = ids.shape[1]
        new = seq[:, n_prompt:]
        alive = self._alive(new)
        if not bool(((new == self.seg_token_id) & alive).any()):
            return seq, [None] * ids.shape[0]
        full = dict(inputs)
        full["input_ids"] = seq
        mask = inputs.get("attention_mask", torch.ones_like(ids))
        full["attention_mask"] = torch.cat([mask, alive.to(mask.dtype)], dim=1)
        if (types := inputs.get("mm_token_type_ids")) is not None:
            full["mm_token_type_ids"] = torch.cat(
                [types, torch.zeros_like(new, dtype=types.dtype)], 1
            )
        labels = torch.where(alive, new, torch.full_like(new, IGNORE_INDEX))
        full["labels"] = torch.cat([torch.full_like(ids, IGNORE_INDEX), labels], dim=1)
        out = self(mask_images=mask_images, **full, **route)
        return seq, out.masks

    def _alive(self, new: torch.Tensor) -> torch.Tensor:
        """Generated tokens up to and including each row's first end-of-sequence token."""
        gen = getattr(self._hf, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None)
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        is_eos = torch.isin(new, torch.tensor(eos, device=new.device, dtype=new.dtype))
        before = is_eos.long().cumsum(1) - is_eos.long()
        return before == 0

    # -- decoding -------------------------------------------------------------------------

    def _decode(
        self,
        lm: Any,
        cap: dict[str, Any],
        inputs: Mapping[str, Any],
        targets: Sequence[torch.Tensor | None] | None,
        mask_images: Sequence[int | None] | None,
    ) -> SegOutput:
        ids = inputs["input_ids"]
        attn = inputs.get("attention_mask")
        seg_at = ids == self.seg_token_id
        if attn is not None:
            seg_at &= attn.bool()
        grid = inputs.get("image_grid_thw")
        images = self._images_per_sample(ids)
        masks: list[torch.Tensor | None] = []
        chosen: list[int | None] = []
        losses: list[tuple[torch.Tensor, torch.Tensor]] = []
        for b in range(ids.shape[0]):
            pos = seg_at[b].nonzero().flatten()
            target = targets[b] if targets is not None else None
            if target is not None and target.dim() == 2:
                target = target[None]
            if pos.numel() == 0:
                if target is not None and target.shape[0] > 0:
                    raise SegError(
                        f"sample {b} has a target mask but no [SEG] token: write [SEG] in its "
                        "answer (one per mask)"
                    )
                masks.append(None)
                chosen.append(None)
                continue
            k = mask_images[b] if mask_images is not None else None
            if k is None:
                if not images[b]:
                    raise SegError(f"sample {b} has a [SEG] token but no image to segment")
                k = images[b][-1]
            if grid is None or not 0 <= k < grid.shape[0]:
                raise SegError(f"sample {b}: mask image {k} is not an image of the batch")
            vision, vgrid = self._features(cap, k)
            h, w = int(grid[k][1]) * self.patch, int(grid[k][2]) * self.patch
            if target is not None:
                if target.shape[0] != pos.numel():
                    raise SegError(
                        f"sample {b}: {pos.numel()} [SEG] token(s) but {target.shape[0]} mask(s)"
                    )
                h, w = int(target.shape[-2]), int(target.shape[-1])
            pixels = (
                self._pixels(inputs, k)
                if getattr(self.seg_decoder, "needs_pixels", False)
                else None
            )
            query = SegQuery(cap["hidden"][b, pos], vision, vgrid, (h, w), pixels)
            logits = self.seg_decoder(query)
            masks.append(logits)
            chosen.append(k)
            if target is not None:
                losses.append((logits, target.to(logits.device)))
        seg = None
        if losses:
            cfg = getattr(self.seg_decoder, "config", None)
            bw = getattr(cfg, "bce_weight", 2.0)
            dw = getattr(cfg, "dice_weight", 0.5)
            # average over masks (not samples): one term per [SEG], as LISA
            parts = [mask_loss(lg, t, bw, dw) for lg, t in losses]
            n = [lg.shape[0] for lg, _ in losses]
            tot = sum(n)
            seg = MaskLoss(
                sum(p.total * k for p, k in zip(parts, n, strict=True)) / tot,
                sum(p.bce * k for p, k in zip(parts, n, strict=True)) / tot,
                sum(p.dice * k for p, k in zip(parts, n, strict=True)) / tot,
            )
        return SegOutput(lm, masks, chosen, seg)

    def _images_per_sample(self, ids: torch.Tensor) -> list[list[int]]:
        """Per sample, its images' indexes over the batch (fused layout understood)."""
        out: list[list[int]] = [[] for _ in range(ids.shape[0])]
        if isinstance(self.net, EarthFusion) and self.net.last.groups:
            for g in self.net.last.groups:
                out[g.sample].extend(g.images)
            return out
        k = 0
        for b, runs in enumerate(image_runs(ids, self.image_token_id)):
            out[b] = list(range(k, k + len(runs)))
            k += len(runs)
        return out

    def _features(self, cap: dict[str, Any], k: int) -> tuple[torch.Tensor, Grid]:
        """Image ``k``'s vision tokens and grid: the fused tokens when it is in a fused pair."""
        if isinstance(self.net, EarthFusion):
            fusion = self.net
            for g, f in zip(fusion.last.groups, fusion.last.fused, strict=True):
                if k in g.images and g.is_pair and not fusion.two_slots and f.grid is not None:
                    return f.tokens, f.grid
        tokens = cap.get("tokens")
        if tokens is None:
            raise SegError("the vision tower did not run: no vision tokens for the mask decoder")
        thw = cap["grid"][k]
        return tokens[k], (int(thw[1]) // self.merge, int(thw[2]) // self.merge)

    def _pixels(self, inputs: Mapping[str, Any], k: int) -> torch.Tensor:
        """Image ``k`` as ``(3, H, W)`` normalised values, from float32 or packed rows."""
        grid = inputs["image_grid_thw"]
        sizes = grid.prod(-1).tolist()
        rows = inputs["pixel_values"][sum(sizes[:k]) : sum(sizes[: k + 1])]
        if rows.shape[-1] == 3 * self.patch**2 and self.temporal > 1:  # packed uint8 rows
            packed = installed_packed_pixels(self._hf)
            if packed is None:
                raise SegError(
                    "pixel_values are packed uint8 rows but the model does not expand them: "
                    "install_packed_pixels(model, processor) (earthvlm.models.pixels) or "
                    "collate with pixel_format='float32'"
                )
            rows = packed.expand(rows, torch.float32)  # the float32 rows, bit for bit
        return pixels_from_patches(rows, grid[k], self.patch, self.merge, self.temporal)

    # -- checkpoints ----------------------------------------------------------------------

    def seg_state_dict(self) -> dict[str, torch.Tensor]:
        """The decoder's tensors (``seg_*``) and the ``[SEG]`` embedding row(s).

        With a frozen or adapter-trained language model, the ``[SEG]`` rows are the only
        trained part of the embeddings: a checkpoint must keep them.
        """
        out = {k: v.detach().clone() for k, v in self.seg_decoder.state_dict().items()}
        out["seg_token.embedding"] = (
            self._hf.get_input_embeddings().weight[self.seg_token_id].detach().clone()
        )
        head = self._hf.get_output_embeddings()
        if head is not None and head.weight is not self._hf.get_input_embeddings().weight:
            out["seg_token.lm_head"] = head.weight[self.seg_token_id].detach().clone()
        return out

    def load_seg_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load :meth:`seg_state_dict` output (strict for the decoder)."""
        state = dict(state)
        emb = state.pop("seg_token.embedding", None)
        head = state.pop("seg_token.lm_head", None)
        self.seg_decoder.load_state_dict(state, strict=True)
        with torch.no_grad():
            if emb is not None:
                self._hf.get_input_embeddings().weight[self.seg_token_id] = emb
            if head is not None:
                self._hf.get_output_embeddings().weight[self.seg_token_id] = head


def pixels_from_patches(
    patches: torch.Tensor, grid_thw: torch.Tensor, patch: int, merge: int, temporal: int
) -> torch.Tensor:
    """One image's Qwen-VL ``pixel_values`` rows back to ``(3, H, W)`` (its first frame).

    Inverts the processor's layout: rows ordered (t, h / merge, w / merge, merge, merge),
    columns (channel, temporal, patch, patch). Values stay normalised.
    """
    t, h, w = (int(v) for v in grid_thw)
    x = patches.reshape(t, h // merge, w // merge, merge, merge, 3, temporal, patch, patch)
    x = x.permute(0, 6, 5, 1, 3, 7, 2, 4, 8).reshape(t * temporal, 3, h * patch, w * patch)
    return x[0]


__all__ = [
    "DECODER_KINDS",
    "PREFIX",
    "SEG_TOKEN",
    "EarthSeg",
    "LightMaskDecoder",
    "MaskDecoder",
    "MaskDecoderConfig",
    "MaskLoss",
    "SegError",
    "SegOutput",
    "SegQuery",
    "add_seg_token",
    "build_mask_decoder",
    "dice_loss",
    "mask_loss",
    "pixels_from_patches",
]
