"""Visual tokens per question on synthetic UHR scenes: the zoom loop vs direct dynamic resolution.

Generates a few synthetic UHR scenes (``earthvlm.synth``, tiled GeoTIFFs with overviews)
and asks every question their records hold, two ways, with one tiny random Qwen-VL
backbone (``build_tiny_backbone``; its processor: patch 16, merge 2 for Qwen3-VL, so one
language token is 32 x 32 px, with ``max_pixels`` = 12,845,056):

* baseline, "direct 12.8 MP": the whole image at dynamic resolution, as a Qwen-VL
  processor with ``max_pixels=12845056`` sees it. Tokens are ``smart_resize``'s grid over
  ``merge**2`` (``(h / factor) * (w / factor)``), computed; the answer (with ``--answer
  tiny``) comes from the tiny model given that view (``run_zoom_loop`` with no tool);
* ours, "zoom loop": ``run_zoom_loop`` with a 512 x 512 px global view and at most one
  zoom. The policy is *scripted*: on its first turn it calls ``zoom_in`` on the
  question's ROI (``meta.roi_xyxy_px`` of region and object ROI questions, drawn on the
  global view in the backbone's box frame); questions without a local ROI are answered
  from the global view. The answer turn is the tiny model's. Tokens are those of the
  views the loop actually showed (global view + the native crop the tool read).

The token ratio is the figure. Accuracy (normalised exact match of the answer) is a smoke
signal only: the model is random, so both arms are near 0; it shows that both paths run
end to end on the same questions. Prompt text tokens are not counted (the same question
in both arms; the loop's tool schema and observation add a few hundred).

Usage::

    .venv/bin/python benchmarks/bench_uhr_tokens.py [--quick] [--scenes 3] [--size 6144]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

#: The direct baseline's pixel budget (Qwen2.5-VL's default ``max_pixels``: 16384 x 28^2).
DIRECT_MAX_PIXELS = 12_845_056
#: Side of the zoom loop's global view.
GLOBAL_PX = 512


def _fold(text: str) -> str:
    return " ".join(text.lower().strip().rstrip(".").split())


def _questions(root: Path, limit: int | None) -> list[dict[str, Any]]:
    """The UHR questions of a synthetic dataset (source, question, answer, local ROI),
    those with a local ROI first."""
    rows = []
    for line in (root / "records.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("meta", {}).get("mode") != "uhr":
            continue
        user = next(m for m in rec["messages"] if m["role"] == "user")
        question = " ".join(p["text"] for p in user["content"] if p.get("type") == "text")
        answer = next(m for m in rec["messages"] if m["role"] == "assistant")["content"]
        if not isinstance(answer, str):
            answer = " ".join(p.get("text", "") for p in answer)
        roi = rec["meta"].get("roi_xyxy_px") or None
        local = roi if roi and rec["meta"].get("roi_type") in ("region", "object") else None
        rows.append({"id": rec["id"], "source": str(root / rec["images"][0]["path"]),
                     "question": question, "answer": answer, "roi_xyxy_px": local,
                     "task": rec["task"]})  # fmt: skip
    rows.sort(key=lambda r: r["roi_xyxy_px"] is None)  # a --limit keeps the zooms first
    return rows[:limit] if limit else rows


def _view_tokens(views: list[Any], factor: int) -> int:
    return sum((v.hw[0] // factor) * (v.hw[1] // factor) for v in views)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="1 scene of 2048 px, 4 questions, tokens only (CI)"
    )
    parser.add_argument("--scenes", type=int, default=3, help="UHR scenes to generate")
    parser.add_argument("--size", type=int, default=6144, help="UHR scene side in pixels")
    parser.add_argument("--limit", type=int, default=None, help="most questions asked")
    parser.add_argument("--family", default="qwen3_vl", choices=("qwen3_vl", "qwen2_5_vl"))
    parser.add_argument(
        "--answer", default="tiny", choices=("tiny", "none"),
        help="tiny: the tiny model answers in both arms (accuracy; the direct arm's vision "
        "tower sees ~50k patches, ~19 s a question on 2 CPU cores); none: tokens only",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.quick:
        args.scenes, args.size, args.limit, args.answer = 1, 2048, args.limit or 4, "none"

    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    from earthvlm.data.resolution import Resolution, smart_resize
    from earthvlm.models import EarthVLM, build_tiny_backbone
    from earthvlm.synth.dataset import SynthConfig, generate_dataset
    from earthvlm.uhr.loop import LoopConfig, greedy_ids, run_zoom_loop
    from earthvlm.uhr.reader import UHRReader
    from earthvlm.uhr.tool import format_tool_call

    bb = build_tiny_backbone(args.family, max_pixels=DIRECT_MAX_PIXELS, seed=args.seed)
    res = Resolution.from_processor(bb.processor.image_processor)
    f = res.factor
    model = EarthVLM.from_backbone(bb, name="tiny")
    answer_ids = partial(greedy_ids, model) if args.answer == "tiny" else None

    with tempfile.TemporaryDirectory(prefix="bench_uhr_tokens-") as tmp:
        t0 = time.perf_counter()
        cfg = SynthConfig(n_scenes=0, n_chips=0, n_uhr=args.scenes, uhr_size_px=args.size,
                          seed=args.seed)  # fmt: skip
        generate_dataset(Path(tmp), cfg)
        t_gen = time.perf_counter() - t0
        rows = _questions(Path(tmp), args.limit)
        print(f"{args.scenes} UHR scene(s) of {args.size} px generated in {t_gen:.1f} s; "
              f"{len(rows)} question(s); {args.family} factor {f} px/token; "
              f"answers: {'tiny random model' if answer_ids else 'none'}")  # fmt: skip
        if not rows:
            print("no UHR questions were generated; try more scenes or another --seed")
            return 1

        global_cfg = LoopConfig(max_zooms=1, global_max_pixels=GLOBAL_PX * GLOBAL_PX,
                                max_new_tokens=16)  # fmt: skip
        direct_cfg = LoopConfig(max_zooms=0, global_max_pixels=DIRECT_MAX_PIXELS,
                                max_new_tokens=16)  # fmt: skip
        out, readers = [], {}
        t_zoom = t_direct = 0.0
        for row in rows:
            if row["source"] not in readers:
                readers[row["source"]] = UHRReader(row["source"], res)
            reader = readers[row["source"]]
            h, w = reader.source_hw
            rh, rw = smart_resize(h, w, f, res.min_pixels, DIRECT_MAX_PIXELS)
            direct_tokens = (rh // f) * (rw // f)

            overview = reader.global_view(max_pixels=GLOBAL_PX * GLOBAL_PX)
            script: list[str] = []
            if row["roi_xyxy_px"] is not None:
                box = overview.from_source_px(list(row["roi_xyxy_px"]), bb.box_frame)
                script.append(format_tool_call([round(float(v)) for v in box]))

            def policy(inputs: Any, gsds: list, n: int, script: list[str] = script) -> list[int]:
                if script:  # the scripted decision: zoom to the ROI
                    return bb.tokenizer.encode(script.pop(0))
                if answer_ids is not None:
                    return answer_ids(inputs, gsds, n)
                return bb.tokenizer.encode("-")

            t1 = time.perf_counter()
            trace = run_zoom_loop(model, reader, row["question"], global_cfg, generate=policy)
            t_zoom += time.perf_counter() - t1
            zoom_tokens = _view_tokens(trace.views, f)
            direct_answer = None
            if answer_ids is not None:
                t1 = time.perf_counter()
                d = run_zoom_loop(model, reader, row["question"], direct_cfg)
                t_direct += time.perf_counter() - t1
                if _view_tokens(d.views, f) != direct_tokens:
                    raise RuntimeError(
                        f"{row['id']}: direct view tokens disagree with smart_resize"
                    )
                direct_answer = d.answer
            out.append({
                "id": row["id"], "task": row["task"], "roi": row["roi_xyxy_px"] is not None,
                "zooms": trace.n_zooms, "zoom_tokens": zoom_tokens,
                "direct_tokens": direct_tokens,
                "zoom_ok": _fold(trace.answer) == _fold(row["answer"]),
                "direct_ok": None if direct_answer is None
                else _fold(direct_answer) == _fold(row["answer"]),
            })  # fmt: skip
        for r in readers.values():
            r.close()

    def summary(sel: list[dict[str, Any]], label: str) -> None:
        if not sel:
            return
        z = statistics.mean(r["zoom_tokens"] for r in sel)
        d = statistics.mean(r["direct_tokens"] for r in sel)
        acc = "-"
        if sel[0]["direct_ok"] is not None:
            za = sum(r["zoom_ok"] for r in sel) / len(sel)
            da = sum(r["direct_ok"] for r in sel) / len(sel)
            acc = f"{za:.3f} / {da:.3f}"
        print(f"{label:<28} {len(sel):>4} {z:>12.0f} {d:>14.0f} {d / z:>9.1f}x "
              f"{z / d:>10.4f}   {acc}")  # fmt: skip

    print(f"\n{'questions':<28} {'n':>4} {'zoom tok/q':>12} {'direct tok/q':>14} "
          f"{'direct/zoom':>10} {'zoom/direct':>10}   accuracy zoom / direct (smoke)")  # fmt: skip
    summary(out, "all")
    summary([r for r in out if r["roi"]], "with a local ROI (1 zoom)")
    summary([r for r in out if not r["roi"]], "global only (0 zooms)")
    crops = [r["zoom_tokens"] for r in out if r["zooms"]]
    g = (GLOBAL_PX // f) ** 2 if GLOBAL_PX % f == 0 else None
    print(f"\nglobal view {GLOBAL_PX} px = {g} tokens; crop tokens: "
          + (f"median {statistics.median(crops) - (g or 0):.0f}, max {max(crops) - (g or 0)}"
             if crops else "no zooms"))  # fmt: skip
    if answer_ids is not None:
        print(
            f"model time: zoom loop {t_zoom:.1f} s, direct {t_direct:.1f} s "
            f"(direct / zoom {t_direct / max(t_zoom, 1e-9):.1f}x; tiny model, CPU)"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
