"""Which layers adapters wrap by default (no torch: configs import this)."""

from __future__ import annotations

#: Every linear projection of a Qwen language-model block: what the adapters wrap by
#: default (ScaleEarth: "all linear projections in the LLM").
QWEN_LINEARS: tuple[str, ...] = (
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
)  # fmt: skip

__all__ = ["QWEN_LINEARS"]
