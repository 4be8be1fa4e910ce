"""Detection metrics: AP by hand, DOTA_devkit's matching rules, AP_nc modes, mF1, ledgers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import shapely

from earthvlm.eval.metrics.detection import (
    FP,
    IGNORED,
    NOT_SCORED,
    TP,
    Objects,
    choose_score_threshold,
    evaluate_detections,
    voc_ap,
)
from earthvlm.geo.boxes import obb_to_quad


def box(i: int, w: float = 10) -> list[float]:
    """A 10 px box in column ``i`` (boxes of different columns do not overlap)."""
    return [20.0 * i, 0.0, 20.0 * i + w, 10.0]


def gt_of(*rows) -> Objects:
    """Ground truth from ``(image, label, geometry[, difficult])`` tuples."""
    return Objects.from_records(
        {"image_id": r[0], "label": r[1], "geometry": r[2], "difficult": len(r) > 3 and r[3]}
        for r in rows
    )


def pred_of(*rows) -> Objects:
    """Predictions from ``(image, label, geometry[, score])`` tuples."""
    return Objects.from_records(
        {
            "image_id": r[0],
            "label": r[1],
            "geometry": r[2],
            **({"score": r[3]} if len(r) > 3 else {}),
        }
        for r in rows
    )


def test_ap_by_hand() -> None:
    # 3 objects; ranked outcomes TP, FP (duplicate), TP, FP (nothing there), TP
    # precision 1, 1/2, 2/3, 2/4, 3/5 at recall 1/3, 1/3, 2/3, 2/3, 1
    # envelope (max to the right): recall 1/3 -> 1, 2/3 -> 2/3, 1 -> 3/5
    # AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5 = (15 + 10 + 9) / 45 = 34/45
    gt = gt_of(("a", "car", box(0)), ("a", "car", box(1)), ("b", "car", box(0)))
    pred = pred_of(
        ("a", "car", box(0)), ("a", "car", box(0)), ("a", "car", box(1)),
        ("a", "car", box(5)), ("b", "car", box(0)),
    )  # fmt: skip
    r = evaluate_detections(pred, gt)
    assert r.ap[0, 0] == pytest.approx(34 / 45, abs=1e-12)
    assert r.outcomes[:, 0].tolist() == [TP, FP, TP, FP, TP]
    assert r.map50 == r.map75 == r.map50_95 == pytest.approx(34 / 45)
    # the same through voc_ap directly
    assert voc_ap(np.array([1, 1, 2, 2, 3]) / 3, np.array([1, 1 / 2, 2 / 3, 2 / 4, 3 / 5])) == (
        pytest.approx(34 / 45)
    )


def test_ap_over_iou_thresholds() -> None:
    # IoU of [0,0,10,10] and [0,0,10,7.8] is 0.78: TP at 0.50..0.75, FP at 0.80..0.95
    r = evaluate_detections(pred_of(("a", "car", [0, 0, 10, 7.8])), gt_of(("a", "car", box(0))))
    assert r.ap[0].tolist() == [1.0] * 6 + [0.0] * 4
    assert r.map50_95 == pytest.approx(0.6)


def test_iou_exactly_at_the_threshold() -> None:
    # IoU([0,0,10,5], [0,0,10,10]) = 0.5 exactly: DOTA_devkit needs > 0.5, MMRotate >= 0.5
    pred, gt = pred_of(("a", "car", [0, 0, 10, 5])), gt_of(("a", "car", box(0)))
    assert evaluate_detections(pred, gt, iou_thresholds=[0.5]).map50 == 0.0
    assert evaluate_detections(pred, gt, iou_thresholds=[0.5], iou_rule="mmrotate").map50 == 1.0
    assert evaluate_detections(pred, gt).tp[0] == 1  # F1 uses IoU >= 0.5 (LMMRotate)


def test_constant_confidence_ranks_by_row_order() -> None:
    gt = gt_of(("a", "car", box(0)))
    hit, miss = ("a", "car", box(0)), ("a", "car", box(3))
    first = evaluate_detections(pred_of(hit, miss), gt)
    last = evaluate_detections(pred_of(miss, hit), gt)
    assert first.map50 == 1.0  # TP then FP: precision 1 at recall 1
    assert last.map50 == 0.5  # FP then TP: precision 1/2 at recall 1
    again = evaluate_detections(pred_of(miss, hit), gt)
    assert np.array_equal(again.order, last.order) and again.map50 == last.map50


def test_given_scores_rank_first_and_break_ties_by_row() -> None:
    gt = gt_of(("a", "car", box(0)))
    pred = pred_of(("a", "car", box(3), 0.9), ("a", "car", box(0), 0.9), ("a", "car", box(0), 0.1))
    r = evaluate_detections(pred, gt, confidence="given")
    assert r.order.tolist() == [0, 1, 2]  # equal scores keep their row order
    assert r.outcomes[:, 0].tolist() == [FP, TP, FP]
    assert r.map50 == 0.5
    with pytest.raises(ValueError, match="needs predictions with scores"):
        evaluate_detections(pred_of(("a", "car", box(0))), gt, confidence="given")


def test_random_confidences_are_seeded_and_averaged() -> None:
    gt = gt_of(*[("a", "car", box(i)) for i in range(5)])
    pred = pred_of(
        *[("a", "car", box(i)) for i in range(5)], *[("a", "car", box(i + 9)) for i in range(5)]
    )
    a = evaluate_detections(pred, gt, confidence="random", seeds=range(10))
    b = evaluate_detections(pred, gt, confidence="random", seeds=range(10))
    assert a.map50 == b.map50 and a.seeds == tuple(range(10))
    one = [evaluate_detections(pred, gt, confidence="random", seeds=[s]).map50 for s in range(10)]
    assert a.map50 == pytest.approx(np.mean(one)) and a.map_std[0] == pytest.approx(np.std(one))
    assert a.map_std[0] > 0 and len(set(one)) > 1


def test_a_match_to_a_difficult_object_is_ignored() -> None:
    gt = gt_of(("a", "car", box(0)), ("a", "car", box(1), True))
    plain = evaluate_detections(pred_of(("a", "car", box(0))), gt)
    both = evaluate_detections(pred_of(("a", "car", box(1)), ("a", "car", box(0))), gt)
    assert plain.n_pos.tolist() == [1] and plain.map50 == 1.0
    assert both.outcomes[:, 0].tolist() == [IGNORED, TP]  # neither TP nor FP
    assert both.map50 == 1.0 and both.fp[0] == 0
    counted = evaluate_detections(pred_of(("a", "car", box(0))), gt, ignore_difficult=False)
    assert counted.n_pos.tolist() == [2] and counted.map50 == 0.5


def test_a_duplicate_is_false_even_when_another_object_is_free() -> None:
    # VOC rule: each prediction looks only at its best object. p2's best is g0 (IoU
    # 95/105), taken by p1; p2 also overlaps g1 (IoU 90/110 > 0.5) but is a false positive.
    gt = gt_of(("a", "car", [0, 0, 10, 10]), ("a", "car", [1.5, 0, 11.5, 10]))
    pred = pred_of(("a", "car", [0, 0, 10, 10]), ("a", "car", [0.5, 0, 10.5, 10]))
    r = evaluate_detections(pred, gt)
    assert r.outcomes[:, 0].tolist() == [TP, FP]


def test_the_best_object_tie_goes_to_the_earlier_row() -> None:
    gt = gt_of(("a", "car", box(0)), ("a", "car", box(0)))  # a duplicated object
    r = evaluate_detections(pred_of(("a", "car", box(0)), ("a", "car", box(0))), gt)
    assert r.outcomes[:, 0].tolist() == [TP, FP]  # both pick row 0; the second is late


def test_malformed_predictions_are_counted_and_scored_as_false_positives() -> None:
    gt = gt_of(("a", "car", box(0)), ("a", "ship", box(2)))
    rows = [
        ("a", "car", [np.nan] * 8),
        ("a", "car", [1, 2, 3]),
        ("a", "car", [5, 5, 5, 9]),  # zero width
        ("a", "car", None),
        ("a", "car", "12,4,20,30"),
        ("a", "plane", box(0)),  # no such class
        ("a", "car", box(0)),
    ]
    r = evaluate_detections(pred_of(*rows), gt)
    assert r.predictions.failed == {
        "box_not_finite": 1, "box_wrong_length": 1, "box_degenerate": 1, "box_missing": 1,
        "box_not_numeric": 1, "unknown_class": 1,
    }  # fmt: skip
    assert r.predictions.ok == 1 and r.predictions.balanced
    assert r.outcomes[:, 0].tolist() == [FP] * 5 + [NOT_SCORED, TP]
    # five false positives ranked before the hit: precision 1/6 at recall 1
    assert r.ap[r.classes.index("car"), 0] == pytest.approx(1 / 6)
    assert r.n_pred.tolist() == [6, 0]


def test_malformed_ground_truth_is_a_miss() -> None:
    gt = gt_of(("a", "car", box(0)), ("a", "car", [0, 0, 0, 0]))
    r = evaluate_detections(pred_of(("a", "car", box(0))), gt)
    assert r.ground_truth.failed == {"box_degenerate": 1} and r.n_pos.tolist() == [2]
    assert r.recall.tolist() == [0.5] and r.map50 == 0.5


def test_classes_outside_the_list_are_skipped() -> None:
    gt = gt_of(("a", "car", box(0)), ("a", "ship", box(1)))
    pred = pred_of(("a", "car", box(0)), ("a", "ship", box(1)))
    r = evaluate_detections(pred, gt, classes=["car"])
    assert r.classes == ("car",) and r.map50 == 1.0
    assert r.predictions.skipped == {"class_not_evaluated": 1}
    assert r.ground_truth.skipped == {"class_not_evaluated": 1}


def test_a_listed_class_without_ground_truth_is_scored_not_failed() -> None:
    gt = gt_of(("a", "car", box(0)))
    pred = pred_of(("a", "car", box(0)), ("a", "plane", box(3)))
    r = evaluate_detections(pred, gt, classes=["car", "plane"])
    assert r.predictions.ok == 2 and not r.predictions.failed
    assert r.n_pred.tolist() == [1, 1] and math.isnan(r.ap[1, 0]) and r.map50 == 1.0


def test_mf1_by_hand() -> None:
    # car: 2 objects, 1 TP + 1 FP -> P 1/2, R 1/2; ship: 2 objects, 1 TP -> P 1, R 1/2
    # mP = 3/4, mR = 1/2, mF1 = 2 * 3/4 * 1/2 / (5/4) = 3/5; mean per-class F1 = (1/2 + 2/3) / 2
    gt = gt_of(
        ("a", "car", box(0)), ("a", "car", box(1)), ("a", "ship", box(2)), ("a", "ship", box(3))
    )
    pred = pred_of(("a", "car", box(0)), ("a", "car", box(6)), ("a", "ship", box(2)))
    r = evaluate_detections(pred, gt)
    assert r.precision.tolist() == [0.5, 1.0] and r.recall.tolist() == [0.5, 0.5]
    assert r.mp == 0.75 and r.mr == 0.5
    assert r.mf1 == pytest.approx(0.6) and r.mean_class_f1 == pytest.approx(7 / 12)


def test_a_class_without_predictions_has_precision_zero() -> None:
    gt = gt_of(("a", "car", box(0)), ("a", "ship", box(1)))
    r = evaluate_detections(pred_of(("a", "car", box(0))), gt)
    assert r.precision.tolist() == [1.0, 0.0] and r.mf1 == pytest.approx(2 * 0.5 * 0.5 / 1.0)


def test_score_threshold_chosen_on_validation() -> None:
    # hits score >= 0.6, misses <= 0.3: thresholds 0.35 .. 0.60 drop every miss and keep
    # every hit; the lowest of them is chosen
    gt = gt_of(*[("a", "car", box(i)) for i in range(4)])
    hits = [("a", "car", box(i), 0.6 + 0.1 * i) for i in range(4)]
    misses = [("a", "car", box(i + 10), 0.3 - 0.05 * i) for i in range(4)]
    pred = pred_of(*misses, *hits)  # misses first: with constant confidences they rank first
    choice = choose_score_threshold(pred, gt)
    assert choice.threshold == 0.35 and choice.criterion == "map_nc50"
    values = dict(choice.values)
    assert values[0.0] < 1.0 and values[0.35] == values[0.6] == 1.0 and values[0.65] < 1.0
    assert choose_score_threshold(pred, gt, criterion="mf1").threshold == 0.35
    r = evaluate_detections(pred, gt, score_threshold=choice.threshold)
    assert r.map50 == 1.0 and r.predictions.skipped == {"below_score_threshold": 4}


def test_to_dict_is_json() -> None:
    gt = gt_of(("a", "car", box(0)), ("a", "ship", box(1), True))
    r = evaluate_detections(pred_of(("a", "car", box(0)), ("a", "x", box(0))), gt)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["map50"] == 1.0 and d["classes"]["ship"]["ap"]["0.50"] is None
    assert d["predictions"]["failed"] == {"unknown_class": 1}


def devkit_reference(pred: Objects, gt: Objects, cls: str, thr: float) -> tuple[float, list]:
    """DOTA_devkit voc_eval, written plainly (shapely IoU, per prediction loop)."""
    objs: dict[str, list[int]] = {}
    for k in np.flatnonzero(gt.labels == cls):
        objs.setdefault(gt.image_ids[k], []).append(k)
    npos = int(np.sum((gt.labels == cls) & ~gt.difficult))
    rows = np.flatnonzero(pred.labels == cls)
    rows = rows[np.argsort(-pred.scores[rows], kind="stable")]
    taken: set[int] = set()
    tp, fp = [], []
    for i in rows:
        p = shapely.Polygon(pred.quads_px[i])
        best, jbest = -np.inf, -1
        for j in objs.get(pred.image_ids[i], []):
            g = shapely.Polygon(gt.quads_px[j])
            inter = p.intersection(g).area
            iou = inter / (p.area + g.area - inter)
            if iou > best:
                best, jbest = iou, j
        hit = best > thr
        tp.append(hit and not gt.difficult[jbest] and jbest not in taken)
        fp.append(not hit or (not gt.difficult[jbest] and jbest in taken))
        if tp[-1]:
            taken.add(jbest)
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return voc_ap(ctp / npos, prec), tp


def test_agrees_with_a_plain_devkit_loop_on_random_scenes() -> None:
    rng = np.random.default_rng(3)
    gts, preds = [], []
    for img in "abcd":
        for _ in range(12):
            cls = ["car", "ship"][rng.integers(2)]
            obb = np.r_[rng.uniform(0, 120, 2), rng.uniform(8, 30, 2), rng.uniform(0, 180)]
            q = obb_to_quad(*obb)
            gts.append({"image_id": img, "label": cls, "geometry": q.reshape(-1).tolist(),
                        "difficult": bool(rng.random() < 0.15)})  # fmt: skip
            for _ in range(rng.integers(0, 4)):
                jit = obb_to_quad(*(obb + rng.normal(0, [2, 2, 2, 2, 8])))
                preds.append({"image_id": img, "label": cls, "geometry": jit.reshape(-1).tolist(),
                              "score": float(rng.random())})  # fmt: skip
    pred, gt = Objects.from_records(preds), Objects.from_records(gts)
    r = evaluate_detections(pred, gt, confidence="given", iou_thresholds=[0.5, 0.75])
    for k, cls in enumerate(r.classes):
        for t, thr in enumerate([0.5, 0.75]):
            ap, tp = devkit_reference(pred, gt, cls, thr)
            assert r.ap[k, t] == pytest.approx(ap, abs=1e-12)
            mine = r.outcomes[r.order[pred.labels[r.order] == cls], t] == TP
            assert mine.tolist() == tp


def test_bad_arguments_raise() -> None:
    gt = gt_of(("a", "car", box(0)))
    pred = pred_of(("a", "car", box(0)))
    with pytest.raises(ValueError, match="confidence must be"):
        evaluate_detections(pred, gt, confidence="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="IoU thresholds"):
        evaluate_detections(pred, gt, iou_thresholds=[1.5])
    with pytest.raises(ValueError, match="iou_rule"):
        evaluate_detections(pred, gt, iou_rule="coco")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score_threshold needs"):
        evaluate_detections(pred, gt, score_threshold=0.5)
    with pytest.raises(ValueError, match="give all or none"):
        Objects.from_records([{"image_id": "a", "label": "car", "geometry": box(0), "score": 1},
                              {"image_id": "a", "label": "car", "geometry": box(0)}])  # fmt: skip
    with pytest.raises(ValueError, match="not finite"):
        Objects.from_arrays(["a"], ["car"], [box(0)], scores=[math.nan])
