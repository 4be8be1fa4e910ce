"""What one record becomes: an :class:`EncodedSample` (its arrays before padding), or a
:class:`SampleError` whose ``reason`` is the key the batch's ledger counts it under."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from earthvlm.data.record import ImageRef
from earthvlm.errors import EarthVLMError
from earthvlm.scale.gsd import GSD


class SampleError(EarthVLMError):
    """One record cannot become a training sample; ``reason`` is the ledger key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Shown:
    """An image of a sample, in the order shown: its record index, ref and sizes."""

    index: int
    ref: ImageRef
    source_hw: tuple[int, int]  # as read from the file
    resized_hw: tuple[int, int]  # after the record's resize instruction, if any
    reduced: bool = False  # read at reduced size (over the decode budget)


@dataclass
class EncodedSample:
    """One record encoded, before padding.

    Attributes:
        arrays: Unpadded arrays (sequence keys 1-D, image keys as the processor gives them).
        gsds: One GSD per image, in the order the images appear.
        modalities: One modality per image, in the same order.
        target: Generation mode: the reference answer (``None`` when there is none).
        masks: ``(K, H, W)`` bool at the size the model sees their image, or ``None``.
        mask_image: The masks' image as a position among this sample's images, or ``None``.
        layouts: The frame layout (dict) of each multispectral image, in order.
        reduced: How many of its images were read at reduced size.
    """

    arrays: dict[str, np.ndarray]
    gsds: list[GSD]
    target: str | None
    modalities: list[str]
    masks: np.ndarray | None = None
    mask_image: int | None = None
    layouts: list[dict[str, Any]] = field(default_factory=list)
    reduced: int = 0
