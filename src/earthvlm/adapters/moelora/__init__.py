"""Bucketed MoE-LoRA: the B4 baseline of ScaleEarth (App. A.3).

K LoRA experts hard-routed by the GSD bucket (high / mid / low by default), with the
per-expert rank chosen so the trainable parameters match CS-HLoRA's. It conditions on
the GSD like CS-HLoRA but discretely: its response is piecewise constant within
buckets and jumps at their edges.
"""

from earthvlm.adapters.moelora.config import MoELoRAConfig
from earthvlm.adapters.moelora.layer import MoELoRALinear
from earthvlm.adapters.moelora.model import METHOD, inject_moelora

__all__ = ["METHOD", "MoELoRAConfig", "MoELoRALinear", "inject_moelora"]
