"""The zoom arm's summary: how the model zoomed, what it cost, and where it looked.

:func:`zoom_summary` reads the traces the zoom arm cached (:mod:`earthvlm.eval.zoom`) and
the benchmark's records and returns the ``zoom`` section of ``scores.json`` (the fields
are listed in ``docs/zoom-eval.md``):

* **Behaviour.** ``zoom_rate`` (share of looped examples with at least one crop),
  ``mean_zoom_depth`` (crops per looped example; ``depth`` counts examples by depth),
  ``stop`` (why the loop ended), ``tool_calls`` (executed zooms, invalid calls by
  reason: the tool's reason codes, ``budget_spent`` for a call past the budget).
* **Cost.** Visual tokens per question (:func:`visual_token_stats`: the final context's
  views; ``processed`` sums every turn's context, since each turn re-encodes it).
* **Where it looked.** Per ROI type, the first executed crop against the example's
  ground-truth region of interest (in source pixels): ``apo_iou`` (ZoomEarth's APO IoU:
  the IoU of the box the model asked for, an example without a crop scoring 0),
  ``acc@0.5`` (share with IoU > 0.5), ``window_iou`` (the window actually read, grown to
  the smallest crop and the token grid) and ``coverage`` (the share of the ROI inside any
  crop's window, the best crop). ``global`` rows (no ROI) are scored on the answer alone
  and counted apart, with how often they zoomed anyway.

The ROI of a record: the benchmark's ``roi_xyxy_px(record, source_hw)`` when it has one
(LRS-GRO: its 1024-grid box scaled to the image), else ``meta["roi_xyxy_px"]`` with
``meta["roi_type"]`` (the synthetic world's ROI questions; ``global`` when empty),
else ``meta["cell_xyxy_px"]`` (type ``cell``); records with none are counted as
``none``.

:func:`with_crop_apo` puts the crops' APO IoU in place of a benchmark's text ``apo_iou``
in the zoom arm (the text holds no box there); :func:`arms_report` tabulates the arms of
the same checkpoint found side by side in one output folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from earthvlm.data.record import Record
from earthvlm.eval.benchmarks import Benchmark, BenchmarkResult
from earthvlm.eval.diagnostics.report import markdown_table
from earthvlm.eval.metrics import score_grounding
from earthvlm.geo.iou import xyxy_iou_pairs

#: The ROI type of records whose ROI is the whole scene (no box).
GLOBAL = "global"
#: Records without any region of interest.
NO_ROI = "none"

Box = list[float]


def _mean(values: Sequence[float]) -> float | None:
    return round(math.fsum(values) / len(values), 6) if values else None


def visual_token_stats(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Visual tokens per answered question (rows that count them), in either arm."""
    shown = [int(r["visual_tokens"]) for r in rows if r.get("visual_tokens") is not None]
    processed = [
        int(r.get("visual_tokens_processed", r["visual_tokens"]))
        for r in rows
        if r.get("visual_tokens") is not None
    ]
    return {
        "n": len(shown),
        "per_question": _mean(shown),
        "processed_per_question": _mean(processed),
        "total": sum(shown),
    }


def reference_roi(
    bench: Benchmark, record: Record, source_hw: tuple[int, int]
) -> tuple[str, Box | None]:
    """``(ROI type, ROI in source pixels)`` of a record (``(global, None)`` for a
    whole-scene question, ``(none, None)`` for a record without a ROI)."""
    hook = getattr(bench, "roi_xyxy_px", None)
    if callable(hook):
        kind, box = hook(record, source_hw)
        return str(kind), box
    meta = record.meta
    roi, kind = meta.get("roi_xyxy_px"), meta.get("roi_type")
    if isinstance(roi, list | tuple) and len(roi) == 4:
        return str(kind or "roi"), [float(v) for v in roi]
    if kind == GLOBAL:
        return GLOBAL, None
    cell = meta.get("cell_xyxy_px")
    if isinstance(cell, list | tuple) and len(cell) == 4:
        return "cell", [float(v) for v in cell]
    return NO_ROI, None


def _coverage(roi: Box, windows: list[Box]) -> float:
    """The largest share of ``roi`` inside one of ``windows`` (0 without windows).

    From :func:`~earthvlm.geo.iou.xyxy_iou_pairs`: ``inter = iou * (A + B) / (1 + iou)``.
    """
    if not windows:
        return 0.0
    w = np.asarray(windows, dtype=np.float64)
    r = np.repeat(np.asarray([roi], dtype=np.float64), len(w), axis=0)
    iou = xyxy_iou_pairs(r, w)
    inter = iou * (_areas(r) + _areas(w)) / (1.0 + iou)
    a = float(_areas(r)[0])
    return float(inter.max() / a) if a > 0 else 0.0


def _areas(xyxy: np.ndarray) -> np.ndarray:
    return (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])


def _roi_stats(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Scores of the first crops of examples with a ROI box."""
    refs = [it["roi"] for it in items]
    asked = score_grounding([it["asked"] for it in items], refs)
    read = score_grounding([it["window"] for it in items], refs)
    return {
        "n": len(items),
        "zoom_rate": _mean([float(it["zoomed"]) for it in items]),
        "accuracy": _mean([it["score"] for it in items if it["score"] is not None]),
        "apo_iou": _json(asked.mean_iou),
        "acc@0.5": _json(asked.accuracy_at(0.5)),
        "window_iou": _json(read.mean_iou),
        "coverage": _mean([_coverage(it["roi"], it["windows"]) for it in items]),
    }


def _json(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 6)


def zoom_summary(
    bench: Benchmark,
    records: Sequence[Record],
    rows: Sequence[dict[str, Any]],
    item_scores: Sequence[float | None],
) -> dict[str, Any]:
    """The zoom arm's ``zoom`` section (see the module docstring)."""
    depth: Counter[int] = Counter()
    stops: Counter[str] = Counter()
    invalid: Counter[str] = Counter()
    direct: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    zooms = turns = new_tokens = 0
    by_type: dict[str, list[dict[str, Any]]] = {}
    apart: dict[str, list[dict[str, Any]]] = {}
    for rec, row, score in zip(records, rows, item_scores, strict=True):
        trace = row.get("zoom")
        if not trace:
            if row.get("zoom_skipped"):
                direct[str(row["zoom_skipped"])] += 1
            elif row.get("failure"):
                failed[str(row["failure"])] += 1
            continue
        views = trace["views"]
        n = len(views) - 1
        depth[n] += 1
        stops[str(trace["stop"])] += 1
        turns += len(trace["turns"])
        new_tokens += sum(int(t["n_tokens"]) for t in trace["turns"])
        for t in trace["turns"]:
            if t["action"] == "zoom":
                zooms += 1
            elif t["action"] in ("invalid", "refused"):
                invalid[str(t["reason"])] += 1
        kind, roi = reference_roi(bench, rec, tuple(trace["source_hw"]))
        item = {"zoomed": n > 0, "score": score}
        if roi is None:
            apart.setdefault(kind, []).append(item)
            continue
        windows = [list(map(float, v["window_xyxy_px"])) for v in views[1:]]
        item.update(
            roi=roi,
            windows=windows,
            asked=views[1]["requested_xyxy_px"] if n else None,
            window=windows[0] if n else None,
        )
        by_type.setdefault(kind, []).append(item)
    looped = sum(depth.values())
    roi: dict[str, Any] = {k: _roi_stats(v) for k, v in sorted(by_type.items())}
    if len(by_type) > 1:
        roi["all"] = _roi_stats([it for v in by_type.values() for it in v])
    for kind, items in sorted(apart.items()):  # global rows: the answer alone
        roi[kind] = {
            "n": len(items),
            "zoom_rate": _mean([float(it["zoomed"]) for it in items]),
            "accuracy": _mean([it["score"] for it in items if it["score"] is not None]),
        }
    return {
        "n_looped": looped,
        "direct_fallback": dict(sorted(direct.items())),
        "failed": dict(sorted(failed.items())),
        "zoom_rate": _mean([float(d > 0) for d in depth.elements()]),
        "mean_zoom_depth": _mean([float(d) for d in depth.elements()]),
        "depth": {str(k): v for k, v in sorted(depth.items())},
        "stop": dict(sorted(stops.items())),
        "tool_calls": {
            "zooms": zooms,
            "invalid": sum(invalid.values()),
            "invalid_by_reason": dict(sorted(invalid.items())),
        },
        "turns_per_question": round(turns / looped, 6) if looped else None,
        "new_tokens_per_question": round(new_tokens / looped, 6) if looped else None,
        "roi": roi,
    }


def with_crop_apo(result: BenchmarkResult, zoom: dict[str, Any]) -> BenchmarkResult:
    """The result with a benchmark's text ``apo_iou`` (a box written in the answer) put
    aside as ``apo_iou_text`` and the executed crops' APO IoU in its place (all ROI types
    together); unchanged for benchmarks without ``apo_iou``."""
    if "apo_iou" not in result.metrics:
        return result
    boxed = {k: v for k, v in zoom["roi"].items() if "apo_iou" in v and k != "all"}
    crop = zoom["roi"]["all"] if "all" in zoom["roi"] else next(iter(boxed.values()), None)
    metrics = dict(result.metrics)
    metrics["apo_iou_text"] = metrics["apo_iou"]
    metrics["apo_iou"] = None if crop is None else crop["apo_iou"]
    for kind, stats in boxed.items():
        metrics[f"apo_iou_{kind}"] = stats["apo_iou"]
    return dataclasses.replace(result, metrics=metrics)


def summary_fields(report: dict[str, Any]) -> dict[str, Any]:
    """The columns ``summary.csv`` adds per benchmark: arm, visual tokens per question,
    zoom rate, mean zoom depth, invalid tool calls."""
    gen = report.get("generation", {})
    zoom = report.get("zoom") or {}
    return {
        "arm": gen.get("arm", "direct"),
        "visual_tokens_per_question": (gen.get("visual_tokens") or {}).get("per_question"),
        "zoom_rate": zoom.get("zoom_rate"),
        "mean_zoom_depth": zoom.get("mean_zoom_depth"),
        "invalid_calls": (zoom.get("tool_calls") or {}).get("invalid"),
    }


def _arm_folders(out: Path, name: str) -> list[Path]:
    """Complete reports of benchmark ``name`` under ``out``: the direct arm's folder,
    then the zoom arms' (``<name>-zoom<K>``)."""
    found = [out / name, *sorted(out.glob(f"{name}-zoom*"))]
    return [f for f in found if (f / "COMPLETE").is_file() and (f / "scores.json").is_file()]


def arms_report(out: str | Path, names: Sequence[str]) -> tuple[list[list[Any]], str] | None:
    """Rows (header first) and a Markdown table comparing the arms of each benchmark
    under ``out``, one column per arm: the headline, each category, visual tokens per
    question, zoom rate and depth. Only benchmarks with more than one complete arm of the
    same checkpoint are compared; None when there is none."""
    out = Path(out)
    table: list[tuple[str, str, dict[str, Any]]] = []
    arms: list[str] = []
    for name in names:
        reports = [json.loads((f / "scores.json").read_text()) for f in _arm_folders(out, name)]
        if reports:
            ckpt = reports[0]["model"]["checkpoint"]
            reports = [r for r in reports if r["model"]["checkpoint"] == ckpt]
        if len(reports) < 2:
            continue
        by_arm = {summary_fields(r)["arm"]: r for r in reports}
        arms += [a for a in by_arm if a not in arms]
        res = {a: r["result"] for a, r in by_arm.items()}
        metric = next(iter(res.values()))["metric"]
        table.append((name, metric, {a: r["headline"] for a, r in res.items()}))
        for c in sorted({c for r in res.values() for c in r["categories"]}):
            scores = {a: (r["categories"].get(c) or {}).get("score") for a, r in res.items()}
            table.append((name, f"{metric} / {c}", scores))
        for key in ("visual_tokens_per_question", "zoom_rate", "mean_zoom_depth"):
            table.append((name, key, {a: summary_fields(r)[key] for a, r in by_arm.items()}))
    if not table:
        return None
    header = ["benchmark", "row", *arms]
    rows = [[name, row, *[values.get(a) for a in arms]] for name, row, values in table]
    return [header, *rows], markdown_table(header, [[_cell(v) for v in r] for r in rows])


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def zoom_markdown(report: dict[str, Any]) -> list[str]:
    """Lines of ``report.md``: the arm, visual tokens and, for the zoom arm, its summary."""
    gen, zoom = report["generation"], report.get("zoom")
    tokens = gen.get("visual_tokens") or {}
    lines = [
        f"Arm: **{gen.get('arm', 'direct')}**; visual tokens per question "
        f"{_cell(tokens.get('per_question'))} (over every turn: "
        f"{_cell(tokens.get('processed_per_question'))}).",
        "",
    ]
    if zoom is None:
        return lines
    calls = zoom["tool_calls"]
    lines += [
        "## Zoom",
        "",
        f"{zoom['n_looped']} example(s) through the loop: zoom rate {_cell(zoom['zoom_rate'])}, "
        f"mean depth {_cell(zoom['mean_zoom_depth'])} (by depth {zoom['depth']}), stops "
        f"{zoom['stop']}; {calls['zooms']} zoom(s) run, {calls['invalid']} invalid call(s) "
        f"{calls['invalid_by_reason'] or ''}".rstrip()
        + f"; answered directly {zoom['direct_fallback'] or 0}, failed {zoom['failed'] or 0}.",
        "",
    ]
    if zoom["roi"]:
        keys = ("n", "zoom_rate", "accuracy", "apo_iou", "acc@0.5", "window_iou", "coverage")
        lines += [
            markdown_table(
                ["ROI type", *keys],
                [[k, *[_cell(v.get(c)) for c in keys]] for k, v in zoom["roi"].items()],
            ),
            "",
            "The first crop against the ROI in source pixels: `apo_iou` the box asked for, "
            "`window_iou` the window read, `coverage` the share of the ROI inside the best "
            "crop; rows without a ROI (`global`, `none`) are scored on the answer alone.",
            "",
        ]
    return lines


__all__ = [
    "GLOBAL",
    "NO_ROI",
    "arms_report",
    "reference_roi",
    "summary_fields",
    "visual_token_stats",
    "with_crop_apo",
    "zoom_markdown",
    "zoom_summary",
]
