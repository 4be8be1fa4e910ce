"""CS-HLoRA: LoRA whose rank dimensions are gated by the GSD (ScaleEarth Eq. 1).

A method is a folder: ``config`` says what to change, ``layer`` wraps one linear layer,
``model`` walks the network, swaps layers in, saves, loads and merges.
"""

from earthvlm.adapters.cshlora.config import CSHLoRAConfig
from earthvlm.adapters.cshlora.layer import CSHLoRALinear
from earthvlm.adapters.cshlora.model import (
    gated_layers,
    inject_cshlora,
    load_cshlora,
    merge_cshlora,
    save_cshlora,
)

__all__ = [
    "CSHLoRAConfig",
    "CSHLoRALinear",
    "gated_layers",
    "inject_cshlora",
    "load_cshlora",
    "merge_cshlora",
    "save_cshlora",
]
