"""The batch: encoded samples padded into one set of arrays, every image's patches written
straight into one ``pixel_values``, and what became of each record (:class:`CollatedBatch`).

Sequences are padded right for training and left for generation; ``pixel_values`` is
float32 rows as the transformers processor gives them, or packed uint8 patches
(``pixel_format="uint8"``), which a backbone built by ``earthvlm.models`` expands in its
vision tower. Writing each patch once into the batch's array saves the copy of the whole
float32 batch that concatenating per-sample arrays costs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from earthvlm.data.collate.sample import EncodedSample
from earthvlm.data.collate.text import IGNORE_INDEX, IMAGE_KEYS, SEQ_KEYS
from earthvlm.data.ledger import Ledger
from earthvlm.data.pixels import PixelPlan, PixelProcessor
from earthvlm.scale.gsd import GSD

#: ``pixel_values`` formats: the processor's float32 rows, or packed uint8 patches.
PIXEL_FORMATS = ("float32", "uint8")


@dataclass
class CollatedBatch:
    """A padded batch and what became of each record.

    Attributes:
        inputs: The processor's ``BatchFeature`` (``input_ids``, ``attention_mask``,
            ``mm_token_type_ids``, ``pixel_values``, ``image_grid_thw``, and ``labels``
            in training mode); ``None`` when every record failed.
        gsds: One GSD per image, in the order the images appear in the batch (the
            order ScaleEarth's ``gsd=`` argument expects).
        ids: The ids of the records in the batch, in order.
        modalities: Per sample, its images' modalities in the order they appear (what
            ``EarthFusion``'s ``modalities=`` argument takes).
        masks: Per sample, its masks as ``(K, H, W)`` bool at the size the model sees
            their image (the image processor's resized size), or ``None`` (no masks, or
            ``read_masks=False``).
        mask_images: Per sample, the image its masks belong to, as an index over the
            batch's images (``EarthSeg``'s ``mask_images=``), or ``None``.
        layouts: Per sample, the :class:`~earthvlm.data.sensors.FrameLayout` (as a dict)
            of each multispectral image it shows, in order (empty when it has none).
        reduced_images: Per sample, how many of the images it shows were read at reduced
            size (over the decode budget: ``docs/collation.md``); what a report counts.
        targets: Generation mode: each record's reference answer (its last assistant
            turn); training mode: ``None``.
        ledger: This batch's counts (merge it into the run's ledger).
        failures: ``(record id, reason, message)`` for each record left out.
    """

    inputs: Any
    gsds: list[GSD]
    ids: list[str]
    targets: list[str] | None
    ledger: Ledger
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    modalities: list[list[str]] = field(default_factory=list)
    masks: list[np.ndarray | None] = field(default_factory=list)
    mask_images: list[int | None] = field(default_factory=list)
    layouts: list[list[dict[str, Any]]] = field(default_factory=list)
    reduced_images: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_reduced(self) -> int:
        """Images of this batch read at reduced size."""
        return sum(self.reduced_images)

    @classmethod
    def from_samples(
        cls,
        samples: list[EncodedSample],
        *,
        inputs: Any,
        ids: list[str],
        ledger: Ledger,
        failures: list[tuple[str, str, str]],
        generate: bool,
    ) -> CollatedBatch:
        """The batch of ``samples`` (padded into ``inputs``), their per-sample lists
        gathered and each sample's mask image made an index over the batch's images."""
        mask_images: list[int | None] = []
        base = 0
        for s in samples:
            mask_images.append(None if s.mask_image is None else base + s.mask_image)
            base += len(s.modalities)
        return cls(
            inputs=inputs,
            gsds=[g for s in samples for g in s.gsds],
            ids=ids,
            targets=[s.target or "" for s in samples] if generate else None,
            ledger=ledger,
            failures=failures,
            modalities=[s.modalities for s in samples],
            masks=[s.masks for s in samples],
            mask_images=mask_images,
            layouts=[s.layouts for s in samples],
            reduced_images=[s.reduced for s in samples],
        )


@dataclass(frozen=True)
class BatchFormat:
    """How samples become one batch: the pad token, the side padded, the pixel format."""

    pad_id: int
    padding_side: str  # "right" or "left"
    pixel_format: str  # one of PIXEL_FORMATS

    def pad(self, samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The samples' arrays as one batch: sequences padded to the longest, image keys
        concatenated (planned pixels written once, by :meth:`write_pixels`)."""
        width = max(len(s["input_ids"]) for s in samples)
        fill = {
            "input_ids": self.pad_id,
            "attention_mask": 0,
            "mm_token_type_ids": 0,
            "labels": IGNORE_INDEX,
        }
        out: dict[str, np.ndarray] = {}
        for key in SEQ_KEYS:
            if not any(key in s for s in samples):
                continue
            rows = np.full((len(samples), width), fill[key], dtype=np.int64)
            for i, s in enumerate(samples):
                if key not in s:  # e.g. no mm_token_type_ids for a text-only sample: all 0
                    s = {key: np.full(len(s["input_ids"]), fill[key])}
                n = len(s[key])
                if self.padding_side == "right":
                    rows[i, :n] = s[key]
                else:
                    rows[i, width - n :] = s[key]
            out[key] = rows
        for key in IMAGE_KEYS:
            parts = [s[key] for s in samples if key in s]
            if parts and isinstance(parts[0], PixelPlan):
                out[key] = self.write_pixels(cast(list[PixelPlan], parts))
            elif parts:
                out[key] = np.concatenate(parts, axis=0)
        return out

    def write_pixels(self, plans: list[PixelPlan]) -> np.ndarray:
        """The plans' patches in one ``pixel_values`` array, in :attr:`pixel_format`."""
        pp = plans[0].processor
        packed = self.pixel_format == "uint8"
        width = pp.packed_dim if packed else pp.patch_dim
        total = sum(p.num_patches for p in plans)
        pixels = np.empty((total, width), dtype=np.uint8 if packed else np.float32)
        start = 0
        for plan in plans:
            plan.write(pixels[start : start + plan.num_patches])
            start += plan.num_patches
        return pixels


class PlannedPixels:
    """A :class:`~earthvlm.data.pixels.PixelProcessor` that plans instead of writing:
    its ``pixel_values`` is a :class:`~earthvlm.data.pixels.PixelPlan`, written later
    into the batch's array by :meth:`BatchFormat.write_pixels`."""

    def __init__(self, pixels: PixelProcessor) -> None:
        self.pixels = pixels

    def __getattr__(self, name: str) -> Any:  # merge_size, fetch_images, ...
        if name == "pixels":  # not set yet: while unpickling (DataLoader workers)
            raise AttributeError(name)
        return getattr(self.pixels, name)

    def __call__(self, images: Any, **kwargs: Any) -> dict[str, Any]:
        plan = self.pixels.plan(images, **kwargs)
        return {"pixel_values": plan, "image_grid_thw": plan.grids}
