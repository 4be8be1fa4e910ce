"""What the server tests share: a tiny scale-conditioned model, images as data URLs, and
the in-process answer a served answer must equal."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from earthvlm.models import EarthVLM, ModelRecipe
from earthvlm.models.recipe import AdapterConfig, ModelConfig
from earthvlm.scale.gsd import GSD

#: The name the test server serves the model under.
NAME = "tiny-cs"


def tiny_cshlora(*, family: str = "qwen3_vl", confident_sseu: bool = True) -> EarthVLM:
    """A tiny Qwen3-VL with CS-HLoRA (non-zero B, so the GSD changes the answer) and an
    SSE-U head; ``confident_sseu`` makes the head sure of itself (sigma ~ 0.14 < 0.3), so
    an image without a GSD takes the ``estimate`` branch."""
    recipe = ModelRecipe(
        stage=2,
        model=ModelConfig(family=family),
        adapter=AdapterConfig(kind="cshlora", r=4, sseu=True),
    )
    model = EarthVLM.build(recipe, name=NAME)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "cshlora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        if confident_sseu and model.sseu is not None:
            model.sseu.logvar.bias.fill_(-4.0)
            model.sseu.logvar.weight.zero_()
    return model.inference()


def rgb(seed: int, h: int = 64, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def data_url(array: np.ndarray, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    mime = "jpeg" if fmt == "JPEG" else fmt.lower()
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode()


def image_part(url: str, gsd_m: Any = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "image_url", "image_url": {"url": url}}
    if gsd_m is not None:
        part["gsd_m"] = gsd_m
    return part


def ask(images: Sequence[dict[str, Any]], question: str) -> list[dict[str, Any]]:
    """One user message: the image parts, then the question."""
    return [{"role": "user", "content": [*images, {"type": "text", "text": question}]}]


def local_answer(
    model: EarthVLM,
    images: Sequence[np.ndarray],
    question: str,
    gsds: Sequence[GSD | None],
    max_new_tokens: int,
) -> str:
    """The greedy answer of ``model.generate`` in this process, for the prompt the server
    builds from :func:`ask` (the backbone's chat template and processor)."""
    bb = model.backbone
    content = [{"type": "image", "image": Image.fromarray(a)} for a in images]
    conv = [{"role": "user", "content": [*content, {"type": "text", "text": question}]}]
    inputs = bb.processor.apply_chat_template(
        conv,
        chat_template=bb.chat_template(),
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        add_generation_prompt=True,
    )
    out, _ = model.generate(
        inputs,
        list(gsds),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=bb.tokenizer.pad_token_id,
    )
    eos = model.hf_model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    new: list[int] = []
    for t in out[0, inputs["input_ids"].shape[1] :].tolist():
        if t in eos:
            break
        new.append(t)
    return bb.tokenizer.decode(new, skip_special_tokens=True)
