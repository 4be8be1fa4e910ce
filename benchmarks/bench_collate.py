"""Records -> ready training batch throughput, on one core.

A batch of VQA records (one user turn: an image and a question; one assistant turn: the
answer) becomes what a training step takes: ``input_ids``, ``attention_mask``,
``labels`` (assistant tokens only), ``pixel_values`` and ``image_grid_thw``. Four paths
over the same records and JPEG files, measured in the same run, round-robin (median of
the repeats):

* floor, ``decode``: PIL decoding of the batch's images alone (``Image.open`` + ``load``);
* baseline, ``transformers``: what a user writes with the processor: the record's turns
  as chat messages, ``processor.apply_chat_template(messages, tokenize=False)``, then
  ``processor(text=..., images=[Image.open(path), ...], return_tensors="pt",
  padding=True)``, then labels: the input ids after the last ``<|im_start|>assistant\\n``
  header, up to the padding (the answer is the last turn);
* ours, ``Collator``: ``earthvlm.data.collate.Collator(backbone, root)(records)`` in
  training mode (safe path resolution and raster reading, the training chat template's
  assistant mask, ``PixelProcessor``, per-record failure accounting);
* ours packed, ``Collator(..., pixel_format="uint8")``: the same batch with
  ``pixel_values`` as packed uint8 patches, which the model expands on its device
  (``earthvlm.models.pixels``). That expansion is timed apart on this CPU
  (``expand ms/img``: the tower's cast to float32, then the hook's
  ``PackedPixels.expand``, per image), the cost the packed path moves off the loader.
  Fresh float32 memory from torch's CPU allocator is slow to fault in on Linux unless
  ``THP_MEM_ALLOC_ENABLE=1`` (transparent huge pages, as NumPy uses for large arrays):
  the header says which was measured.

Both on the tiny offline backbones (``build_tiny_backbone``: the real Qwen3-VL and
Qwen2.5-VL processors and chat templates around a small tokenizer), with ``max_pixels``
large enough for the native size (Qwen2.5-VL resizes 512 and 1024 px to 504 and 1036).
Image sets as in ``bench_processor.py`` (``_images.py``): synthetic scenes and Landsat
crops, 512 and 1024 px, quality-90 JPEG.

Before timing, the batches are compared: ``input_ids``, ``attention_mask``, ``labels``
and ``image_grid_thw`` must be equal (else the run stops), ``pixel_values`` within
``--max-diff`` (default 1e-6, the data-engine target; the printed ``max |diff|`` says by
how much they differ; the packed batch after expansion on the CPU by the same hook code
the model runs). Threads are pinned to 1 (OpenMP, BLAS, torch), so samples/s are
per core. Targets from the data-engine issue: >= 4x the transformers path, within 2x of
decoding. Usage::

    .venv/bin/python benchmarks/bench_collate.py [--quick] [--repeat 7] [--batch 8]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from functools import cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from _images import (  # noqa: E402
    FAMILIES,
    SIZES,
    bits_per_pixel,
    decode,
    image_sets,
    round_robin,
)
from PIL import Image  # noqa: E402

from earthvlm.data.collate import IGNORE_INDEX, Collator  # noqa: E402
from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart  # noqa: E402
from earthvlm.models import build_tiny_backbone  # noqa: E402
from earthvlm.models.pixels import PackedPixels  # noqa: E402
from earthvlm.scale.gsd import GSD  # noqa: E402

TARGET_VS_TRANSFORMERS, TARGET_VS_DECODE = 4.0, 2.0
#: (question, answer) pairs of different lengths, so that the batch is padded.
QA = (
    ("How many ships are in the harbour?", "Three."),
    ("Is there a road crossing the river?", "No."),
    ("Describe the land cover in one sentence.", "Mostly farmland, with a small village "
     "in the north-east and a road along the southern edge."),
    ("What is the main building type?", "Detached houses with gardens."),
    ("Are there any aircraft visible?", "Yes, two small aircraft near the hangar."),
)  # fmt: skip


def records(paths: list[Path], root: Path, batch: int) -> list[Record]:
    """``batch`` VQA records cycling over the images and the question-answer pairs."""
    out = []
    for i in range(batch):
        question, answer = QA[i % len(QA)]
        path = paths[i % len(paths)]
        out.append(
            Record(
                id=f"r{i}",
                task="vqa",
                source="bench",
                images=[ImageRef(path=str(path.relative_to(root)), gsd=GSD.exact(0.5))],
                messages=[
                    Message(role="user", content=[ImagePart(index=0), TextPart(text=question)]),
                    Message(role="assistant", content=answer),
                ],
            )
        )
    return out


def chat_messages(rec: Record) -> tuple[list[dict[str, Any]], list[int]]:
    """A record's turns as transformers chat messages, and its images' indexes in order."""
    messages, shown = [], []
    for m in rec.messages:
        if isinstance(m.content, str):
            messages.append({"role": m.role, "content": [{"type": "text", "text": m.content}]})
            continue
        parts: list[dict[str, Any]] = []
        for p in m.content:
            if isinstance(p, ImagePart):
                parts.append({"type": "image"})
                shown.append(p.index)
            else:
                parts.append({"type": "text", "text": p.text})
        messages.append({"role": m.role, "content": parts})
    return messages, shown


class TransformersPath:
    """The plain transformers path: chat template, processor call, simple label mask."""

    def __init__(self, processor: Any, root: Path) -> None:
        self.processor, self.root = processor, root
        tok = processor.tokenizer
        self.header = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]

    def __call__(self, recs: list[Record]) -> dict[str, torch.Tensor]:
        conversations, images = [], []
        for rec in recs:
            messages, shown = chat_messages(rec)
            conversations.append(messages)
            images += [Image.open(self.root / rec.images[i].path) for i in shown]
        texts = self.processor.apply_chat_template(conversations, tokenize=False)
        batch = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        labels = torch.full_like(ids, IGNORE_INDEX)
        n = len(self.header)
        for i in range(len(ids)):
            # the answer starts after the last assistant header and ends at the padding
            start = int((ids[i] == self.header[0]).nonzero()[-1]) + n
            if ids[i, start - n : start].tolist() != self.header:
                raise SystemExit(f"sample {i}: no assistant header before the answer")
            labels[i, start:] = torch.where(mask[i, start:].bool(), ids[i, start:], IGNORE_INDEX)
        batch["labels"] = labels
        return batch


@cache
def backbone(family: str) -> Any:
    return build_tiny_backbone(family, "tiny", seed=0, min_pixels=64 * 64, max_pixels=2048**2)


def compare(ref: Any, got: Any) -> float:
    """Stop unless the token and grid tensors are equal; return max |pixel diff|."""
    for key in ("input_ids", "attention_mask", "labels", "image_grid_thw", "mm_token_type_ids"):
        if key in ref and not torch.equal(ref[key], got[key]):
            raise SystemExit(f"{key} differs between transformers and the collator")
    return float((ref["pixel_values"] - got["pixel_values"]).abs().max())


def measure(family: str, paths: list[Path], root: Path, batch: int, repeat: int, max_diff: float):
    """Check the batches against transformers, then time the four paths and the expansion."""
    bb = backbone(family)
    recs = records(paths, root, batch)
    hf = TransformersPath(bb.processor, root)
    ours = Collator(bb, root)
    packed = Collator(bb, root, pixel_format="uint8")
    expander = PackedPixels.from_processor(bb)  # what the model's pre-hook runs
    image_paths = [root / r.images[0].path for r in recs]
    ref = hf(recs)
    diff = compare(ref, ours(recs).inputs)
    u8 = packed(recs).inputs
    pixels_u8 = u8["pixel_values"]
    if pixels_u8.dtype != torch.uint8 or pixels_u8.shape[1] != expander.packed_dim:
        raise SystemExit(
            f"{family}: the packed batch is {pixels_u8.dtype} {tuple(pixels_u8.shape)}"
        )
    diff_u8 = compare(ref, {**u8, "pixel_values": expander.expand(pixels_u8)})
    if max(diff, diff_u8) > max_diff:
        raise SystemExit(
            f"{family}: pixel_values differ from transformers by {max(diff, diff_u8):g} > "
            f"{max_diff:g} (pass --max-diff to time it anyway)"
        )

    def expand() -> None:
        # as in the model: transformers casts to the tower's dtype (float32 on this CPU),
        # then the patch embedding's pre-hook expands
        expander.expand(pixels_u8.to(torch.float32))

    t = round_robin(
        {
            "decode": lambda: [decode(p) for p in image_paths],
            "hf": lambda: hf(recs),
            "ours": lambda: ours(recs),
            "uint8": lambda: packed(recs),
            "expand": expand,
        },
        repeat,
    )
    missed = []
    for name, label in (("ours", "float32"), ("uint8", "uint8")):
        speedup, vs_floor = t["hf"] / t[name], t[name] / t["decode"]
        if speedup < TARGET_VS_TRANSFORMERS:
            missed.append(f"{label} {speedup:.2f}x transformers")
        if vs_floor > TARGET_VS_DECODE:
            missed.append(f"{label} {vs_floor:.2f}x decoding time")
    if max(diff, diff_u8) > 1e-6:
        missed.append(f"pixel_values differ by {max(diff, diff_u8):.2g}")
    line = (
        f"{batch / t['decode']:>9.1f} {batch / t['hf']:>8.1f} {batch / t['ours']:>8.1f} "
        f"{batch / t['uint8']:>8.1f} {t['hf'] / t['ours']:>8.2f}x {t['hf'] / t['uint8']:>8.2f}x "
        f"{t['ours'] / t['decode']:>8.2f}x {t['uint8'] / t['decode']:>8.2f}x "
        f"{1e3 * t['expand'] / len(image_paths):>8.2f} {diff:>8.1e} {diff_u8:>8.1e}"
    )
    return line, missed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="1 image of 512 px per set, 1 run (CI smoke run)"
    )
    ap.add_argument("--repeat", type=int, default=7, help="round-robin repeats (median)")
    ap.add_argument("--batch", type=int, default=8, help="records per batch")
    ap.add_argument(
        "--max-diff", type=float, default=1e-6,
        help="largest max |pixel_values diff| to go on timing (counted as a missed target "
             "above 1e-6)",
    )  # fmt: skip
    args = ap.parse_args()
    n, repeat = (1, 1) if args.quick else (4, args.repeat)
    sizes = SIZES[:1] if args.quick else SIZES
    batch = 2 if args.quick else args.batch
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", module="rasterio")
    print(
        f"one thread; batches of {batch} records over {n} JPEG(s) per set and size, "
        f"median of {repeat} round-robin repeats; rates in samples/s; f32: Collator(), "
        "u8: Collator(pixel_format='uint8'); hf: transformers; /dec: time over decoding "
        "time; expand: the packed batch's expansion on this CPU, ms per image (torch's CPU "
        f"allocator with THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')})"
    )
    print(
        f"{'set':<10} {'family':<11} {'size':>5} {'bpp':>5} {'decode/s':>9} {'hf/s':>8} "
        f"{'f32/s':>8} {'u8/s':>8} {'f32/hf':>9} {'u8/hf':>9} {'f32/dec':>9} {'u8/dec':>9} "
        f"{'expand':>8} {'f32 diff':>8} {'u8 diff':>8}"
    )
    failed = []
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for set_name, make in image_sets().items():
            for size in sizes:
                paths = make(root, size, n)
                bpp = bits_per_pixel(paths, size)
                for family in FAMILIES:
                    line, missed = measure(family, paths, root, batch, repeat, args.max_diff)
                    print(f"{set_name:<10} {family:<11} {size:>5} {bpp:>5.2f} {line}", flush=True)
                    failed += [f"{set_name} {family} {size}: {m}" for m in missed]
    print("targets: >= 4x the transformers path, <= 2x the decoding time, max |diff| <= 1e-6")
    print("missed: " + "; ".join(failed) if failed else "all targets met")


if __name__ == "__main__":
    main()
