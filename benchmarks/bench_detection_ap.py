"""Rotated-box AP: earthvlm vs a port of DOTA_devkit's ``voc_eval``, in the same run.

Baseline: :func:`devkit_voc_eval`, a line-by-line port of DOTA_devkit's
``dota_evaluation_task1.voc_eval`` (per prediction: an axis-aligned box prefilter over
the image's objects of the class, then polygon IoU pair by pair, greedy matching, VOC
all-point AP), with shapely (GEOS) computing each pair's polygon IoU in place of the
devkit's compiled ``polyiou`` extension. Ours: ``Objects.from_records`` and
``evaluate_detections`` with the predictions' scores (candidate pairs by a sorted sweep,
a bound from the areas, a numpy clipping kernel in batches, vectorised matching), timed
from the same in-memory records.

Data: a DOTA-scale synthetic set (1,000 images of 800-4,000 px, 15 DOTA classes, ~30k
objects in single-class clusters, ~90k rotated predictions: jittered copies of objects,
offset false positives, 5 % wrong labels; 5 % of objects difficult; distinct scores).
The run asserts that both give the same AP per class (to 1e-9) and the same TP vectors,
then prints the times and their ratio: the median of paired, interleaved runs with the
min-max (``_paired.py``). Usage::

    .venv/bin/python benchmarks/bench_detection_ap.py [--small] [--pairs 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import numpy as np
from _paired import paired
from shapely.geometry import Polygon

from earthvlm.eval.metrics.detection import TP, Objects, evaluate_detections

CLASSES = (
    "plane", "ship", "storage-tank", "baseball-diamond", "tennis-court", "basketball-court",
    "ground-track-field", "harbor", "bridge", "large-vehicle", "small-vehicle", "helicopter",
    "roundabout", "soccer-ball-field", "swimming-pool",
)  # fmt: skip
#: Typical object length in pixels per class (DOTA-like scales).
SIZES = (60, 40, 30, 70, 50, 60, 180, 120, 100, 35, 16, 45, 90, 150, 25)
#: Relative frequency of each class (small vehicles dominate, as in DOTA).
FREQ = np.array([6, 10, 6, 1, 3, 1, 1, 4, 2, 12, 40, 1, 1, 1, 3], dtype=float)


def _corners(cx, cy, w, h, angle) -> np.ndarray:
    """(N, 8) corners of oriented boxes, clockwise on screen from the -w/2, -h/2 corner."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    lx = np.array([-0.5, 0.5, 0.5, -0.5])[None] * w[:, None]
    ly = np.array([-0.5, -0.5, 0.5, 0.5])[None] * h[:, None]
    xs, ys = cx[:, None] + lx * c - ly * s, cy[:, None] + lx * s + ly * c
    return np.stack([xs, ys], axis=2).reshape(-1, 8)


def make_dataset(n_images: int, seed: int = 0) -> tuple[list[dict], list[dict], list[str]]:
    """Ground-truth and prediction records (``image_id``, ``label``, ``geometry``, ...)."""
    rng = np.random.default_rng(seed)
    gt_rows: list[tuple] = []
    pred_rows: list[tuple] = []
    images = [f"P{i:04d}" for i in range(n_images)]
    for name in images:
        width, height = rng.integers(800, 4001, 2)
        n_obj = int(np.clip(rng.lognormal(3.1, 0.8), 1, 400))
        # objects in clusters of one class (parking lots, harbours, tank farms)
        n_clusters = max(1, n_obj // 20)
        centres = rng.uniform([0, 0], [width, height], (n_clusters, 2))
        cluster_cls = rng.choice(len(CLASSES), size=n_clusters, p=FREQ / FREQ.sum())
        member = rng.integers(n_clusters, size=n_obj)
        cls = cluster_cls[member]
        stray = rng.random(n_obj) < 0.1
        cls[stray] = rng.choice(len(CLASSES), size=int(stray.sum()), p=FREQ / FREQ.sum())
        size = np.array(SIZES)[cls] * rng.uniform(0.7, 1.3, n_obj)
        # neighbours about 1.5 object lengths apart near a cluster's centre
        spread = 0.9 * size * np.sqrt(n_obj / n_clusters)
        cx = np.clip(centres[member, 0] + rng.normal(0, 1, n_obj) * spread, 0, width)
        cy = np.clip(centres[member, 1] + rng.normal(0, 1, n_obj) * spread, 0, height)
        w, h = size, size * rng.uniform(0.35, 1.0, n_obj)
        angle = rng.uniform(0, np.pi, n_obj)
        quads = _corners(cx, cy, w, h, angle)
        difficult = rng.random(n_obj) < 0.05
        gt_rows += [(name, CLASSES[c], q, d) for c, q, d in zip(cls, quads, difficult, strict=True)]
        # predictions: 1 + Poisson(1.3) jittered copies per object, jitter growing per copy
        copies = 1 + rng.poisson(1.3, n_obj)
        src = np.repeat(np.arange(n_obj), copies)
        k = np.concatenate([np.arange(c) for c in copies]) + 1
        jit = 0.06 * k
        m = len(src)
        pcx = cx[src] + rng.normal(0, 1, m) * jit * w[src]
        pcy = cy[src] + rng.normal(0, 1, m) * jit * h[src]
        pw = w[src] * rng.normal(1, jit)
        ph = h[src] * rng.normal(1, jit)
        pa = angle[src] + rng.normal(0, 0.15, m) * k
        # false positives near objects, partly overlapping them
        n_fp = int(0.7 * n_obj)
        fsrc = rng.integers(n_obj, size=n_fp)
        pcx = np.r_[pcx, cx[fsrc] + rng.normal(0, 0.8, n_fp) * w[fsrc]]
        pcy = np.r_[pcy, cy[fsrc] + rng.normal(0, 0.8, n_fp) * h[fsrc]]
        pw = np.r_[pw, w[fsrc] * rng.uniform(0.6, 1.4, n_fp)]
        ph = np.r_[ph, h[fsrc] * rng.uniform(0.6, 1.4, n_fp)]
        pa = np.r_[pa, rng.uniform(0, np.pi, n_fp)]
        pcls = np.r_[cls[src], cls[fsrc]]
        wrong = rng.random(len(pcls)) < 0.05
        pcls[wrong] = rng.integers(len(CLASSES), size=int(wrong.sum()))
        score = np.r_[rng.beta(5, 2 * k), rng.beta(2, 5, n_fp)]
        pquads = _corners(pcx, pcy, np.abs(pw) + 1, np.abs(ph) + 1, pa)
        pred_rows += list(zip([name] * len(pcls), [CLASSES[c] for c in pcls], pquads, score,
                              strict=True))  # fmt: skip
    # make every score distinct (DOTA_devkit's unstable sort breaks ties arbitrarily)
    scores = np.array([r[3] for r in pred_rows]) + rng.random(len(pred_rows)) * 1e-7
    gt = [
        {"image_id": i, "label": c, "geometry": q.tolist(), "difficult": bool(d)}
        for i, c, q, d in gt_rows
    ]
    pred = [
        {"image_id": i, "label": c, "geometry": q.tolist(), "score": float(s)}
        for (i, c, q, _), s in zip(pred_rows, scores, strict=True)
    ]
    return gt, pred, images


# -- the baseline: DOTA_devkit voc_eval, ported line by line ---------------------------


def iou_poly(p: np.ndarray, q: np.ndarray) -> float:
    """polyiou.iou_poly: intersection area over union of two quads (here by shapely)."""
    a, b = Polygon(np.reshape(p, (4, 2))), Polygon(np.reshape(q, (4, 2)))
    inter_area = a.intersection(b).area
    union_area = abs(a.area) + abs(b.area) - inter_area
    return inter_area / union_area


def voc_ap_devkit(rec, prec, use_07_metric=False):
    """DOTA_devkit voc_ap (the use_07_metric=False branch)."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap


def devkit_voc_eval(detlines, recs, imagenames, classname, ovthresh=0.5, use_07_metric=False):
    """DOTA_devkit dota_evaluation_task1.voc_eval on in-memory inputs.

    ``detlines``: the class's detection lines split as ``[image_id, score, poly]``;
    ``recs``: image -> objects ``{"name", "bbox" (8 values), "difficult"}``. Returns
    ``rec, prec, ap`` as the devkit does, plus the raw ``tp`` vector for the check.
    """
    class_recs = {}
    npos = 0
    for imagename in imagenames:
        R = [obj for obj in recs[imagename] if obj["name"] == classname]
        bbox = np.array([x["bbox"] for x in R])
        difficult = np.array([x["difficult"] for x in R]).astype(bool)
        det = [False] * len(R)
        npos = npos + sum(~difficult)
        class_recs[imagename] = {"bbox": bbox, "difficult": difficult, "det": det}

    splitlines = detlines
    image_ids = [x[0] for x in splitlines]
    confidence = np.array([float(x[1]) for x in splitlines])
    BB = np.array([[float(z) for z in x[2]] for x in splitlines])

    # sort by confidence
    sorted_ind = np.argsort(-confidence)
    sorted_scores = np.sort(-confidence)  # noqa: F841 (unused, as in the devkit)

    # note the usage only in numpy not for list
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]

    # go down dets and mark TPs and FPs
    nd = len(image_ids)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)

        if BBGT.size > 0:
            # 1. the overlaps of the horizontal boxes: zero there means zero for the quads
            BBGT_xmin = np.min(BBGT[:, 0::2], axis=1)
            BBGT_ymin = np.min(BBGT[:, 1::2], axis=1)
            BBGT_xmax = np.max(BBGT[:, 0::2], axis=1)
            BBGT_ymax = np.max(BBGT[:, 1::2], axis=1)
            bb_xmin = np.min(bb[0::2])
            bb_ymin = np.min(bb[1::2])
            bb_xmax = np.max(bb[0::2])
            bb_ymax = np.max(bb[1::2])

            ixmin = np.maximum(BBGT_xmin, bb_xmin)
            iymin = np.maximum(BBGT_ymin, bb_ymin)
            ixmax = np.minimum(BBGT_xmax, bb_xmax)
            iymax = np.minimum(BBGT_ymax, bb_ymax)
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih

            # union
            uni = (
                (bb_xmax - bb_xmin + 1.0) * (bb_ymax - bb_ymin + 1.0)
                + (BBGT_xmax - BBGT_xmin + 1.0) * (BBGT_ymax - BBGT_ymin + 1.0)
                - inters
            )

            overlaps = inters / uni

            BBGT_keep_mask = overlaps > 0
            BBGT_keep = BBGT[BBGT_keep_mask, :]
            BBGT_keep_index = np.where(overlaps > 0)[0]

            def calcoverlaps(BBGT_keep, bb):
                overlaps = []
                for index, _GT in enumerate(BBGT_keep):
                    overlap = iou_poly(BBGT_keep[index], bb)
                    overlaps.append(overlap)
                return overlaps

            if len(BBGT_keep) > 0:
                overlaps = calcoverlaps(BBGT_keep, bb)

                ovmax = np.max(overlaps)
                jmax = np.argmax(overlaps)
                jmax = BBGT_keep_index[jmax]

        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0

    # compute precision recall
    tp_raw = tp.copy()
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    rec = tp / float(npos)
    # avoid divide by zero in case the first detection matches a difficult ground truth
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = voc_ap_devkit(rec, prec, use_07_metric)
    return rec, prec, ap, tp_raw


def run_baseline(gt: list[dict], pred: list[dict], images: list[str]) -> dict:
    recs: dict[str, list[dict]] = {name: [] for name in images}
    for g in gt:
        recs[g["image_id"]].append(
            {"name": g["label"], "bbox": g["geometry"], "difficult": int(g["difficult"])}
        )
    lines: dict[str, list] = defaultdict(list)
    for p in pred:
        lines[p["label"]].append([p["image_id"], p["score"], p["geometry"]])
    return {c: devkit_voc_eval(lines[c], recs, images, c, 0.5) for c in CLASSES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="100 images instead of 1,000")
    ap.add_argument("--pairs", type=int, default=5, help="paired, interleaved runs")
    ap.add_argument("--quick", action="store_true", help="20 images, 2 pairs (CI smoke run)")
    args = ap.parse_args()
    n_images = 20 if args.quick else 100 if args.small else 1000
    pairs = 2 if args.quick else args.pairs
    gt, pred, images = make_dataset(n_images)
    print(f"images {n_images}, objects {len(gt)}, predictions {len(pred)}, classes {len(CLASSES)}")

    base: dict = {}
    reads: list[float] = []
    out: dict = {}

    def baseline() -> None:
        base.update(run_baseline(gt, pred, images))

    def ours(thresholds=(0.5,)):
        t = time.perf_counter()
        p, g = Objects.from_records(pred), Objects.from_records(gt)
        reads.append(time.perf_counter() - t)
        out["result"] = evaluate_detections(p, g, confidence="given", iou_thresholds=thresholds)

    runs = paired(baseline, ours, pairs)
    result = out["result"]
    t0 = time.perf_counter()
    ours(tuple(round(0.5 + 0.05 * i, 2) for i in range(10)))
    t_full = time.perf_counter() - t0

    # identical AP per class and identical TP vectors
    cls_of = result.classes
    labels = np.array([p["label"] for p in pred])
    ranked = result.order
    worst = 0.0
    for k, c in enumerate(cls_of):
        _, _, ap_base, tp_base = base[c]
        worst = max(worst, abs(float(ap_base) - result.ap[k, 0]))
        mine = result.outcomes[ranked[labels[ranked] == c], 0] == TP
        if not np.array_equal(mine, tp_base.astype(bool)):
            raise SystemExit(f"TP vectors differ for class {c}")
    if worst > 1e-9:
        raise SystemExit(f"AP differs by {worst:.3g}")
    map_base = float(np.mean([base[c][2] for c in cls_of]))
    print(f"mAP50 baseline {map_base:.6f}  ours {result.map50:.6f}  max |AP diff| {worst:.1e}")
    print("TP vectors identical for all classes")
    t_base, t_ours = statistics.median(runs.baseline_s), statistics.median(runs.ours_s)
    print(f"baseline DOTA_devkit voc_eval port (shapely IoU)  : {t_base:8.2f} s (median)")
    t_read = statistics.median(reads)
    print(f"earthvlm AP50 (read {t_read:.2f} s + evaluate)      : {t_ours:8.2f} s (median)")
    print(f"earthvlm AP50:95 + mF1, 10 thresholds             : {t_full:8.2f} s")
    print(f"speed-up baseline / ours (AP50)                   : {runs.summary()}")


if __name__ == "__main__":
    main()
