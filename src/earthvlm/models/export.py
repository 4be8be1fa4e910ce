"""Export a model as a plain Hugging Face checkpoint that any Qwen-VL engine serves.

A CS-HLoRA or MoE-LoRA adapter is a function of the GSD; at one fixed GSD it is a fixed
low-rank update, which :func:`earthvlm.adapters.merge.merge_at_gsd` folds into the base
weights (ScaleEarth Eq. 1 with the gate evaluated at ``s = log10 g``). A peft LoRA merges
as peft merges it. The result is the stock transformers model and processor: the folder
loads with ``AutoModelForImageTextToText`` and ``AutoProcessor`` without earthvlm (the
processor config names the stock class; where torchvision is absent, which the stock
Qwen-VL processors need, ``trust_remote_code=True`` loads the image-only class saved
beside it: :mod:`earthvlm.models.processor`).

What a merged export loses, and why it is refused or recorded:

* the GSD input: every image is treated as being at the export GSD (serve earthvlm
  itself, ``earthvlm serve``, to keep a GSD per image);
* the SSE-U head: not needed when the GSD is fixed, so it is dropped;
* fusion and ``[SEG]`` modules: a plain Qwen-VL checkpoint has no place for them, so
  such models are refused;
* a GSD-as-text model (B3) still expects the GSD sentence in its prompts: recorded in
  ``earthvlm_export.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from earthvlm import __version__
from earthvlm.errors import EarthVLMError
from earthvlm.io import atomic_dir
from earthvlm.models.earthvlm import EarthVLM
from earthvlm.provenance import git_commit

#: Written last into an export folder: what was merged, at which GSD, from where.
EXPORT_FILE = "earthvlm_export.json"


def export_merged(
    model: EarthVLM, out: str | Path, *, gsd_m: float | None = None, overwrite: bool = False
) -> Path:
    """Merge ``model``'s adapter (at ``gsd_m`` for a GSD-gated one) and save a plain
    Hugging Face checkpoint with a standard processor into ``out``, atomically.

    The model is changed in place (its adapter layers are replaced by merged linears):
    load it again to use it unmerged.

    Args:
        model: The model to export.
        out: The folder to write.
        gsd_m: The GSD in metres per pixel the gated adapter is fixed at.
        overwrite: Replace an existing ``out``.

    Returns:
        ``out``.

    Raises:
        EarthVLMError: A gated adapter without ``gsd_m``, a model with fusion or ``[SEG]``
            modules, a quantised base, or an existing ``out`` without ``overwrite``.
    """
    from earthvlm.adapters.merge import merge_at_gsd

    target = Path(out)
    if target.exists() and not overwrite:
        raise EarthVLMError(f"{target} already exists; choose another --out or pass --overwrite")
    if model.fusion is not None or model.seg is not None:
        part = "optical + SAR fusion" if model.fusion is not None else "a [SEG] mask decoder"
        raise EarthVLMError(
            f"{model.name} has {part}, which a plain Qwen-VL checkpoint cannot hold; "
            "evaluate or serve it with earthvlm instead of exporting it"
        )
    if getattr(model.hf_model, "is_loaded_in_4bit", False):
        raise EarthVLMError(
            f"{model.name} was loaded in NF4: merging into 4-bit weights loses precision; "
            "load it without --load-in-4bit to export"
        )
    merged: dict[str, Any] = {"adapter": model.variant, "gsd_m": None, "layers": 0}
    hf = model.hf_model
    if model.gated is not None:
        if gsd_m is None:
            raise EarthVLMError(
                f"{model.name} has a GSD-gated adapter ({model.variant}): its update depends "
                "on the GSD, so an export fixes one; pass --gsd METRES (the GSD the served "
                "images have), or serve it with `earthvlm serve` to keep a GSD per image"
            )
        merged["layers"] = merge_at_gsd(hf, float(gsd_m))
        merged["gsd_m"] = float(gsd_m)
        merged["log10_gsd"] = math.log10(float(gsd_m))
    elif model.peft_model is not None:
        hf = model.peft_model.merge_and_unload()
        merged["layers"] = "peft merge_and_unload"
    elif gsd_m is not None:
        merged["note"] = f"--gsd {gsd_m} ignored: {model.variant} has no GSD-gated adapter"
    with atomic_dir(target) as tmp:
        hf.save_pretrained(tmp)
        model.backbone.processor.save_pretrained(tmp)
        record = {
            "earthvlm_version": __version__,
            "git_commit": git_commit(),
            "source": str(model.source) if model.source is not None else model.name,
            "origin": model.origin,
            "merged": merged,
            "dropped": ["sseu"] if model.sseu is not None else [],
            "prompt_states_gsd": model.gsd_as_text,
            "family": model.backbone.family,
        }
        (tmp / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return target


__all__ = ["EXPORT_FILE", "export_merged"]
