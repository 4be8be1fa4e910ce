"""Processor batches for the model tests: images and a question per sample, through the
backbone's own chat template and processor (the reference path the wrappers must accept)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image


def processor_batch(
    bb: Any,
    images: Sequence[Sequence[Image.Image]],
    question: str,
    answers: Sequence[str | None] | None = None,
) -> Any:
    """``bb.processor``'s padded batch (``return_tensors="pt"``): per sample its images, then
    ``question``; with an answer, the assistant turn, else a generation prompt."""
    answers = answers if answers is not None else [None] * len(images)
    texts = []
    for ims, answer in zip(images, answers, strict=True):
        content = [{"type": "image"} for _ in ims] + [{"type": "text", "text": question}]
        conv: list[dict[str, Any]] = [{"role": "user", "content": content}]
        if answer is not None:
            conv.append({"role": "assistant", "content": answer})
        texts.append(
            bb.processor.apply_chat_template(
                conv, tokenize=False, add_generation_prompt=answer is None
            )
        )
    return bb.processor(images=list(images), text=texts, return_tensors="pt", padding=True)
