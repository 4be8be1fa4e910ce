"""EarthMind's optical + SAR fusion inside one Qwen-VL forward pass (sec. 3.1-3.2).

:class:`EarthFusion` wraps a ``Qwen3VLForConditionalGeneration`` (or Qwen2.5-VL) and a
fusion module from :func:`earthvlm.fusion.build_fusion` (HCA or a Table 4 baseline).
One call:

1. runs the vision tower **once** over every image of the batch (``get_image_features``:
   the projector, Qwen's merger, is part of it), optical and SAR alike;
2. groups the images: a single image, or an optical + SAR pair of one sample;
3. fuses each pair between the projector and the language model: the optical tokens
   ``(P, D)`` are pooled onto the SAR grid and mixed with the SAR tokens ``(N, D)`` into
   ``N`` tokens (Eq. 2-7); single images pass through untouched;
4. feeds the language model these tokens as pre-encoded vision outputs
   (``mm_encoder_outputs``) with one grid per placeholder run, so that MRoPE positions
   of a fused run come from the SAR grid and the model's own ``get_rope_index`` places
   every token (training, evaluation and ``generate()`` alike).

**Placeholders.** A fused pair occupies *one* image slot of ``N`` placeholders (the SAR
image's count), not the processor's two slots of ``P`` and ``N``: the sequence does not
grow (sec. 3.2). :meth:`EarthFusion.collapse_pairs` turns a processor batch into that
layout (it drops the optical slot, ``<|vision_start|>`` and ``<|vision_end|>``
included); ``pixel_values`` and ``image_grid_thw`` keep both images. Concatenation
(``method="concat"``) keeps both slots: its output is the two blocks, in image order.

**Pairs.** Either explicit ``pairs=[(optical_index, sar_index), ...]`` over the batch's
images (in ``image_grid_thw`` order; the two images of a pair are adjacent), or
``modalities=[[...], ...]``: per sample, its images' modalities in order, where an
optical image next to a SAR image (either order) forms a pair (:func:`pairs_from_modalities`).

**Text guidance** (Eq. 4-5) uses the prompt's input embeddings, taken from the embedded
``input_ids`` of the pair's sample: attended tokens that are not vision tokens and, when
``labels`` are given, not supervised (the answer must not steer the fusion that precedes
it: in generation it does not exist yet). ``text_mask`` overrides the choice.

Why not hooks, as :class:`~earthvlm.models.scaleearth.ScaleEarth` uses: a hook on the
vision tower cannot change the token count (``get_image_features`` splits the output by
``image_grid_thw``), and the placeholder check runs before the language model's
pre-hook. Handing the model its vision outputs is the documented transformers 5 path
(``generate()`` itself does it) and keeps the vision tower to one run.

Where this departs from the paper:

* **DeepStack** (Qwen3-VL only; EarthMind builds on InternVL, which has none): the
  deepstack features of a pair are fused with the same per-token weights as Eq. 7 (the
  optical ones pooled onto the SAR grid first), so every level that reaches the language
  model at a fused position is the same mixture.
* The text embeddings are the language model's input embeddings of the prompt tokens
  ("aligned with visual features through the projector", sec. 3.2): Qwen's merger maps
  vision features into that space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from earthvlm.fusion.base import SensorFusion
from earthvlm.fusion.tokens import (
    OPTICAL,
    SAR,
    FusedTokens,
    FusionInputError,
    Grid,
)

#: Methods whose pair output is both blocks unchanged (two image slots in the sequence).
TWO_SLOT_METHODS: frozenset[str] = frozenset({"concat"})
#: Label value the loss ignores (the collator's ``IGNORE_INDEX``).
IGNORE_INDEX = -100
#: Record modalities that form a pair (``earthvlm.data.record.ImageRef.modality``).
PAIR_MODALITIES = ("optical", "sar")
#: Config fields of the tokens that belong to images, not to the prompt's text.
_VISION_TOKEN_FIELDS = (
    "image_token_id",
    "video_token_id",
    "vision_start_token_id",
    "vision_end_token_id",
)

Run = tuple[int, int]


def image_runs(input_ids: torch.Tensor, image_token_id: int) -> list[list[Run]]:
    """Per sample, the ``(start, end)`` positions of each run of image placeholders."""
    is_img = (input_ids == image_token_id).cpu().to(torch.int8)
    zero = torch.zeros_like(is_img[:, :1])
    edges = torch.diff(is_img, dim=1, prepend=zero, append=zero)
    out: list[list[Run]] = []
    for row in edges:
        starts = (row == 1).nonzero().flatten().tolist()
        ends = (row == -1).nonzero().flatten().tolist()
        out.append(list(zip(starts, ends, strict=True)))
    return out


def pairs_from_modalities(modalities: Sequence[Sequence[str]]) -> list[tuple[int, int]]:
    """``(optical, sar)`` image indexes over the batch from each sample's modality order.

    In each sample, left to right, an ``optical`` image next to a ``sar`` image (either
    order) forms a pair; every other image stays single. Indexes count the images of all
    samples in order (the order of ``image_grid_thw``).

    Raises:
        FusionInputError: If ``modalities`` is not one list per sample.
    """
    if isinstance(modalities, str) or any(isinstance(m, str) for m in modalities):
        raise FusionInputError(
            "modalities must be one list per sample (e.g. [['optical', 'sar'], ['optical']]); "
            "a flat list cannot tell where one sample's images end"
        )
    pairs: list[tuple[int, int]] = []
    base = 0
    for sample in modalities:
        mods = list(sample)
        i = 0
        while i < len(mods):
            two = mods[i : i + 2]
            if len(two) == 2 and sorted(two) == sorted(PAIR_MODALITIES):
                o = base + i + (0 if two[0] == "optical" else 1)
                pairs.append((o, o + 1 if two[0] == "optical" else o - 1))
                i += 2
            else:
                i += 1
        base += len(mods)
    return pairs


@dataclass(frozen=True)
class ImageGroup:
    """One image slot group of a sample: a single image or an optical + SAR pair.

    Attributes:
        sample: The sample (row) it belongs to.
        images: Its image indexes over the batch, in batch order.
        optical: The optical image of a pair (``None`` for a single image).
        sar: The SAR image of a pair (``None`` for a single image).
        runs: The placeholder runs ``(start, end)`` it fills, in sequence order.
    """

    sample: int
    images: tuple[int, ...]
    optical: int | None = None
    sar: int | None = None
    runs: tuple[Run, ...] = ()

    @property
    def is_pair(self) -> bool:
        return self.optical is not None and self.sar is not None

    @property
    def pair(self) -> tuple[int, int]:
        """``(optical, sar)`` image indexes of a pair."""
        if self.optical is None or self.sar is None:
            raise FusionInputError(f"image group {self.images} is a single image, not a pair")
        return self.optical, self.sar


@dataclass
class FusionOutputs:
    """What the last call fused (for diagnostics such as the modality attention score).

    Attributes:
        groups: Every image group of the batch, in sequence order.
        fused: Per group, the tokens that filled its slots (in sequence order).
        run_grid_thw: ``(runs, 3)``: the grid the language model placed each run on.
    """

    groups: list[ImageGroup] = field(default_factory=list)
    fused: list[FusedTokens] = field(default_factory=list)
    run_grid_thw: torch.Tensor | None = None

    def per_sample(self, batch_size: int) -> list[list[FusedTokens]]:
        """Per sample, its groups' :class:`FusedTokens` (what ``composition_from_fused`` takes)."""
        out: list[list[FusedTokens]] = [[] for _ in range(batch_size)]
        for g, f in zip(self.groups, self.fused, strict=True):
            out[g.sample].append(f)
        return out


class EarthFusion(nn.Module):
    """A Qwen-VL model whose optical + SAR pairs are fused before the language model.

    Args:
        model: ``Qwen3VLForConditionalGeneration`` or ``Qwen2_5_VLForConditionalGeneration``.
        fusion: The fusion module (:func:`earthvlm.fusion.build_fusion`); its ``dim`` must
            be the language model's hidden size. Its parameters carry the ``fusion_``
            prefix (:meth:`fusion_state_dict` saves them).

    Raises:
        FusionInputError: If the fusion width is not the model's hidden size.
    """

    def __init__(self, model: nn.Module, fusion: SensorFusion) -> None:
        super().__init__()
        self.model = model
        self.fusion = fusion
        cfg = model.config
        hidden = int(cfg.text_config.hidden_size)
        if fusion.config.dim != hidden:
            raise FusionInputError(
                f"the fusion module works on {fusion.config.dim}-wide tokens but the language "
                f"model's hidden size is {hidden}: build it with FusionConfig(dim={hidden})"
            )
        self.image_token_id = int(cfg.image_token_id)
        self.vision_ids = {
            int(i) for name in _VISION_TOKEN_FIELDS if (i := getattr(cfg, name, None)) is not None
        }
        self.merge = int(model.model.visual.spatial_merge_size)
        self.two_slots = fusion.config.method in TWO_SLOT_METHODS
        self.last = FusionOutputs()

    # -- calls ----------------------------------------------------------------------------

    def forward(
        self,
        *,
        pairs: Sequence[tuple[int, int]] | None = None,
        modalities: Sequence[Sequence[str]] | None = None,
        text_mask: torch.Tensor | None = None,
        **inputs: Any,
    ) -> Any:
        """Run the model with each pair fused; inputs in the fused-slot layout.

        Args:
            pairs: ``(optical, sar)`` image indexes over the batch.
            modalities: Per sample, its images' modalities (instead of ``pairs``).
            text_mask: ``(B, L)`` bool: the prompt tokens that guide the fusion (default:
                see the module docstring).
            **inputs: The batch (``input_ids``, ``attention_mask``, ``mm_token_type_ids``,
                ``pixel_values``, ``image_grid_thw``, ``labels``, ...).
        """
        return self.model(**self.prepare(inputs, pairs, modalities, text_mask))

    @torch.no_grad()
    def generate(
        self,
        *,
        pairs: Sequence[tuple[int, int]] | None = None,
        modalities: Sequence[Sequence[str]] | None = None,
        text_mask: torch.Tensor | None = None,
        **inputs: Any,
    ) -> Any:
        """``model.generate`` on fused inputs (the fusion runs once, before prefill)."""
        return self.model.generate(**self.prepare(inputs, pairs, modalities, text_mask))

    # -- the fusion path ------------------------------------------------------------------

    def prepare(
        self,
        inputs: Mapping[str, Any],
        pairs: Sequence[tuple[int, int]] | None = None,
        modalities: Sequence[Sequence[str]] | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """The model's keyword arguments: vision run once, pairs fused, grids per slot.

        ``pixel_values`` is replaced by ``mm_encoder_outputs`` and ``image_grid_thw`` by one
        grid per placeholder run; everything else is passed on. A batch without pixels
        (text only, or a decoding step) is returned as is.
        """
        out = dict(inputs)
        pixels = out.pop("pixel_values", None)
        if pixels is None:
            self.last = FusionOutputs()
            return out
        if out.get("mm_encoder_outputs"):
            raise FusionInputError("pass pixel_values or mm_encoder_outputs, not both")
        ids, grid = out.get("input_ids"), out.get("image_grid_thw")
        if ids is None or grid is None:
            raise FusionInputError(
                "EarthFusion needs input_ids (to find the image slots) and image_grid_thw"
            )
        partner = self._partners(pairs, modalities, int(grid.shape[0]))
        groups = self._groups(image_runs(ids, self.image_token_id), partner, grid, modalities)
        vision = self.model.model.get_image_features(pixels, grid)  # the one vision pass
        tokens = list(vision.pooler_output)
        deep = getattr(vision, "deepstack_features", None)
        deep = [list(level) for level in deep] if deep is not None else None
        texts = self._texts(out, text_mask) if any(g.is_pair for g in groups) else []
        run_tokens: list[torch.Tensor] = []
        run_deep: list[list[torch.Tensor]] = [[] for _ in deep or []]
        run_grids: list[torch.Tensor] = []
        fused: list[FusedTokens] = []
        for g in groups:
            if not g.is_pair:
                (k,) = g.images
                sar = modalities is not None and _modality(modalities, k) == "sar"
                fused.append(_single(tokens[k], SAR if sar else OPTICAL, self._grid(grid[k])))
                blocks = [(k, tokens[k], [level[k] for level in deep or []])]
            else:
                f, blocks = self._fuse_pair(g, tokens, deep, grid, texts[g.sample])
                fused.append(f)
            for (k, block, levels), run in zip(blocks, g.runs, strict=True):
                if block.shape[0] != run[1] - run[0]:  # a method that changes counts
                    raise FusionInputError(
                        f"fusion method {self.fusion.config.method!r} gave {block.shape[0]} "
                        f"tokens for a slot of {run[1] - run[0]} (sample {g.sample})"
                    )
                run_tokens.append(block)
                for lst, level in zip(run_deep, levels, strict=True):
                    lst.append(level)
                run_grids.append(grid[k])
        extra = {"deepstack_features": [tuple(r) for r in run_deep]} if deep is not None else {}
        out["mm_encoder_outputs"] = {
            "image": type(vision)(pooler_output=tuple(run_tokens), **extra)
        }
        out["image_grid_thw"] = torch.stack(run_grids) if run_grids else grid[:0]
        self.last = FusionOutputs(groups, fused, out["image_grid_thw"])
        return out

    def _fuse_pair(
        self,
        g: ImageGroup,
        tokens: list[torch.Tensor],
        deep: list[list[torch.Tensor]] | None,
        grid: torch.Tensor,
        text: torch.Tensor,
    ) -> tuple[FusedTokens, list[tuple[int, torch.Tensor, list[torch.Tensor]]]]:
        o, s = g.pair
        og, sg = self._grid(grid[o], o), self._grid(grid[s], s)
        f = self.fusion.fuse(tokens[o], tokens[s], (og, sg), text)
        if self.two_slots:  # both blocks unchanged, each in its own slot, in image order
            p = tokens[o].shape[0]
            parts = {o: (f.tokens[:p], f.source[:p]), s: (f.tokens[p:], f.source[p:])}
            order = sorted((o, s))
            f = FusedTokens(
                torch.cat([parts[k][0] for k in order]), torch.cat([parts[k][1] for k in order])
            )
            return f, [(k, parts[k][0], [lvl[k] for lvl in deep or []]) for k in order]
        if f.weights is None:
            raise FusionInputError(
                f"fusion method {self.fusion.config.method!r} returned fused tokens without "
                "weights: EarthFusion needs them to fuse the deepstack features alike"
            )
        w = f.weights
        levels = []
        for lvl in deep or []:  # departure: Eq. 7's weights applied to every deepstack level
            xo = self.fusion.align(lvl[o], lvl[s], og, sg)
            wd = w.to(lvl[s].dtype)
            levels.append(wd[:, :1] * xo + wd[:, 1:] * lvl[s])
        return f, [(s, f.tokens, levels)]

    def _grid(self, thw: torch.Tensor, image: int | None = None) -> Grid:
        """The merged token grid ``(rows, cols)`` of one still image."""
        t, h, w = (int(v) for v in thw)
        if t != 1 and image is not None:
            raise FusionInputError(
                f"image {image} has {t} temporal patches; a fused pair must be two still images"
            )
        return h // self.merge, w // self.merge

    def _partners(
        self,
        pairs: Sequence[tuple[int, int]] | None,
        modalities: Sequence[Sequence[str]] | None,
        n_images: int,
    ) -> dict[int, tuple[int, int]]:
        """First image of each pair -> ``(optical, sar)``, validated."""
        if pairs is not None and modalities is not None:
            raise FusionInputError("give pairs or modalities, not both")
        if modalities is not None:
            pairs = pairs_from_modalities(modalities)
            n_mod = sum(len(m) for m in modalities)
            if n_mod != n_images:
                raise FusionInputError(
                    f"modalities describe {n_mod} images but the batch holds {n_images}"
                )
        out: dict[int, tuple[int, int]] = {}
        seen: set[int] = set()
        for pair in pairs or []:
            o, s = (int(v) for v in pair)
            if abs(o - s) != 1 or not (min(o, s) >= 0 and max(o, s) < n_images):
                raise FusionInputError(
                    f"pair (optical={o}, sar={s}): the two images must be adjacent indexes "
                    f"in 0..{n_images - 1} (the order of image_grid_thw)"
                )
            if {o, s} & seen:
                raise FusionInputError(f"pair ({o}, {s}): an image is in two pairs")
            seen |= {o, s}
            out[min(o, s)] = (o, s)
        return out

    def _groups(
        self,
        runs: list[list[Run]],
        partner: dict[int, tuple[int, int]],
        grid: torch.Tensor,
        modalities: Sequence[Sequence[str]] | None,
    ) -> list[ImageGroup]:
        sizes = (grid.prod(-1) // self.merge**2).tolist()
        groups: list[ImageGroup] = []
        k = 0
        for b, sample_runs in enumerate(runs):
            r, first = 0, k
            while r < len(sample_runs):
                if k >= grid.shape[0]:
                    raise FusionInputError(
                        f"the prompts have more image slots than the {grid.shape[0]} images "
                        "of image_grid_thw (a fused pair has one slot: see "
                        "EarthFusion.collapse_pairs)"
                    )
                if k in partner:
                    o, s = partner[k]
                    n = 2 if self.two_slots else 1
                    if r + n > len(sample_runs):
                        raise FusionInputError(
                            f"pair ({o}, {s}) needs {n} image slot(s) in sample {b}, which has "
                            f"{len(sample_runs) - r} left: a pair's images belong to one sample"
                        )
                    g = ImageGroup(b, (k, k + 1), o, s, tuple(sample_runs[r : r + n]))
                    k, r = k + 2, r + n
                else:
                    g = ImageGroup(b, (k,), runs=(sample_runs[r],))
                    k, r = k + 1, r + 1
                fused_slot = g.is_pair and not self.two_slots
                want = [sizes[g.pair[1]]] if fused_slot else [sizes[i] for i in g.images]
                for (start, end), n_tok in zip(g.runs, want, strict=True):
                    if end - start != n_tok:
                        what = "fused pair (the SAR image's tokens)" if fused_slot else "image"
                        raise FusionInputError(
                            f"sample {b}: an image slot has {end - start} placeholders but its "
                            f"{what} {g.images} gives {n_tok} tokens; build batches with "
                            "EarthFusion.collapse_pairs (one slot per fused pair)"
                        )
                groups.append(g)
            if modalities is not None and k - first != len(modalities[b]):
                raise FusionInputError(
                    f"sample {b} has {len(modalities[b])} image(s) in modalities but its "
                    f"prompt's slots take {k - first}: collapse each pair to one slot "
                    "(EarthFusion.collapse_pairs) and list every image"
                )
        if k != grid.shape[0]:
            raise FusionInputError(
                f"the prompts' image slots take {k} image(s) but image_grid_thw holds "
                f"{grid.shape[0]}"
            )
        return groups

    def _texts(
        self, inputs: Mapping[str, Any], text_mask: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """Per sample, the prompt's input embeddings ``(L_b, D)`` (Eq. 4's X^T)."""
        ids = inputs["input_ids"]
        if text_mask is None:
            keep = torch.ones_like(ids, dtype=torch.bool)
            if (mask := inputs.get("attention_mask")) is not None:
                keep &= mask.bool()
            for i in self.vision_ids:
                keep &= ids != i
            if (labels := inputs.get("labels")) is not None:
                keep &= labels == IGNORE_INDEX
        else:
            if text_mask.shape != ids.shape:
                raise FusionInputError(
                    f"text_mask {tuple(text_mask.shape)} must match input_ids {tuple(ids.shape)}"
                )
            keep = text_mask.bool()
        embeds = self.model.get_input_embeddings()(ids)
        return [embeds[b][keep[b]] for b in range(ids.shape[0])]

    # -- layout and checkpoints -----------------------------------------------------------

    def collapse_pairs(
        self,
        inputs: Mapping[str, Any],
        pairs: Sequence[tuple[int, int]] | None = None,
        modalities: Sequence[Sequence[str]] | None = None,
        pad_token_id: int | None = None,
    ) -> dict[str, Any]:
        """A processor batch (one slot per image) in the fused layout (one slot per pair).

        Each pair's optical slot (its placeholders and the ``<|vision_start|>`` /
        ``<|vision_end|>`` around them) is removed from every per-token tensor
        (``input_ids``, ``attention_mask``, ``mm_token_type_ids``, ``labels``), rows are
        re-padded on the batch's side; ``pixel_values`` and ``image_grid_thw`` keep both
        images. Concatenation keeps both slots: the batch is returned as is.

        This is the change a collator makes to build fused batches (per sample, before
        padding).
        """
        out = dict(inputs)
        ids, grid = out["input_ids"], out["image_grid_thw"]
        partner = self._partners(pairs, modalities, int(grid.shape[0]))
        if self.two_slots or not partner:
            return out
        drop_images = {o for o, _ in partner.values()}
        cfg = self.model.config
        v_start = getattr(cfg, "vision_start_token_id", None)
        v_end = getattr(cfg, "vision_end_token_id", None)
        mask = out.get("attention_mask")
        valid = mask.bool() if mask is not None else torch.ones_like(ids, dtype=torch.bool)
        keep = valid.clone()
        k = 0
        for b, sample_runs in enumerate(image_runs(ids, self.image_token_id)):
            for start, end in sample_runs:
                if k in drop_images:
                    lo = start - 1 if start > 0 and int(ids[b, start - 1]) == v_start else start
                    hi = end + 1 if end < ids.shape[1] and int(ids[b, end]) == v_end else end
                    keep[b, lo:hi] = False
                k += 1
        if k != grid.shape[0]:
            raise FusionInputError(
                f"collapse_pairs expects one slot per image (the processor's layout): found "
                f"{k} slots for {grid.shape[0]} images"
            )
        left = mask is not None and bool((mask[:, 0] == 0).any())
        width = int(keep.sum(1).max())
        if pad_token_id is None:
            generation = getattr(self.model, "generation_config", None)
            pad_token_id = getattr(generation, "pad_token_id", None)
        pads = {"input_ids": pad_token_id or 0, "labels": IGNORE_INDEX}
        for key, value in inputs.items():
            if not (isinstance(value, torch.Tensor) and value.shape == ids.shape):
                continue
            rows = value.new_full((ids.shape[0], width), pads.get(key, 0))
            for b in range(ids.shape[0]):
                row = value[b][keep[b]]
                if left:
                    rows[b, width - row.shape[0] :] = row
                else:
                    rows[b, : row.shape[0]] = row
            out[key] = rows
        return out

    def fusion_state_dict(self) -> dict[str, torch.Tensor]:
        """The fusion module's tensors (``fusion_*``), what a checkpoint adds to the model."""
        return {k: v.detach().clone() for k, v in self.fusion.state_dict().items()}

    def load_fusion_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load :meth:`fusion_state_dict` output (strict: missing or unknown keys raise)."""
        self.fusion.load_state_dict(dict(state), strict=True)


def _single(tokens: torch.Tensor, source: int, grid: Grid) -> FusedTokens:
    code = torch.full((tokens.shape[0],), source, dtype=torch.long, device=tokens.device)
    return FusedTokens(tokens, code, grid if grid[0] * grid[1] == tokens.shape[0] else None)


def _modality(modalities: Sequence[Sequence[str]], image: int) -> str:
    for sample in modalities:
        if image < len(sample):
            return sample[image]
        image -= len(sample)
    raise IndexError(image)


__all__ = [
    "IGNORE_INDEX",
    "TWO_SLOT_METHODS",
    "EarthFusion",
    "FusionOutputs",
    "ImageGroup",
    "image_runs",
    "pairs_from_modalities",
]
