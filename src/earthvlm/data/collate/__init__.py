"""Records -> one model batch for a Qwen-VL backbone, for training or for generation.

:class:`Collator` composes the parts, one concept a file: ``images`` (safe reads, the
decode budget, reduced reads, the cache), ``frames`` (SAR and multispectral pixels as
RGB frames), ``text`` (chat template, tokens, labels), ``masks`` (masks for ``[SEG]``),
``batch`` (padding, the batch's one ``pixel_values``, :class:`CollatedBatch`) and
``sample`` (what one record becomes). The package stays torch-free (the ``data`` layer's
rule). What it does and refuses, and why: ``docs/collation.md``.
"""

from earthvlm.data.collate.batch import PIXEL_FORMATS, CollatedBatch
from earthvlm.data.collate.collator import BackboneLike, Collator
from earthvlm.data.collate.frames import (
    MS_FILL_KEY,
    MS_GROUPING_KEY,
    MS_ORDER_KEY,
    MS_SCALE_KEY,
    SAR_SCALING_KEY,
    SAR_UNITS_KEY,
)
from earthvlm.data.collate.images import LARGE_IMAGES, READ_MODALITIES
from earthvlm.data.collate.sample import EncodedSample, SampleError
from earthvlm.data.collate.text import IGNORE_INDEX

__all__ = [
    "IGNORE_INDEX",
    "LARGE_IMAGES",
    "MS_FILL_KEY",
    "MS_GROUPING_KEY",
    "MS_ORDER_KEY",
    "MS_SCALE_KEY",
    "PIXEL_FORMATS",
    "READ_MODALITIES",
    "SAR_SCALING_KEY",
    "SAR_UNITS_KEY",
    "BackboneLike",
    "CollatedBatch",
    "Collator",
    "EncodedSample",
    "SampleError",
]
