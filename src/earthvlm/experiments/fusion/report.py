"""The fusion experiment's report: tables, checks of EarthMind's claims, MAS figure, JSON.

Claims are checked on the measured numbers, not asserted. Each check says what was
compared, on how many items, the difference and (for paired 0/1 outcomes) an exact
McNemar p-value; it reads ``yes`` only when the difference has the claimed sign *and*
p < 0.05, ``no`` when the sign is the opposite or zero, and ``not shown`` otherwise (a
difference of the claimed sign that the data cannot tell from chance, the usual case for
tiny models on a few dozen items).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from earthvlm.eval.diagnostics.report import markdown_table, new_figure, save_figure
from earthvlm.eval.diagnostics.stats import fmt_p, mcnemar_exact
from earthvlm.eval.metrics.segmentation import mask_iou
from earthvlm.experiments.fusion.evaluate import SPLITS, SettingScores
from earthvlm.experiments.fusion.results import FusionExpResult
from earthvlm.io import atomic_write_text
from earthvlm.provenance import provenance
from earthvlm.synth.fusion_world import SETTINGS

ALPHA = 0.05


def _pct(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _ious(s: SettingScores, split: str) -> dict[str, float]:
    """Per present-class item of ``split``: its IoU (0 when no mask was predicted)."""
    out = {}
    for k, t in s.seg_target.items():
        if split in s.splits[k]:
            p = s.seg_pred[k]
            out[k] = mask_iou(p, t) if p is not None else 0.0
    return out


def paired_mcq(a: SettingScores, b: SettingScores, split: str) -> dict[str, Any]:
    """MCQ accuracy of setting ``a`` vs ``b`` on the same items of ``split``."""
    items = sorted(k for k in a.mcq if k in b.mcq and split in a.splits[k])
    x = np.array([a.mcq[k] for k in items], dtype=bool)
    y = np.array([b.mcq[k] for k in items], dtype=bool)
    test = mcnemar_exact(x, y) if items else None
    return {
        "n": len(items),
        "a": float(x.mean()) if items else math.nan,
        "b": float(y.mean()) if items else math.nan,
        "diff": float(x.mean() - y.mean()) if items else math.nan,
        "p_value": test.p_value if test else math.nan,
    }


def _sign_test(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Means of paired per-item scores ``x`` vs ``y`` and a sign test on the items where
    they differ (McNemar's exact test on "x better" vs "y better" is the binomial one)."""
    n = len(x)
    sign = mcnemar_exact(x > y, x < y) if n else None
    return {
        "n": n,
        "a": float(x.mean()) if n else math.nan,
        "b": float(y.mean()) if n else math.nan,
        "diff": float((x - y).mean()) if n else math.nan,
        "better": int((x > y).sum()),
        "worse": int((x < y).sum()),
        "p_value": sign.p_value if sign else math.nan,
    }


def paired_iou(a: SettingScores, b: SettingScores, split: str) -> dict[str, Any]:
    """Mean per-item IoU of setting ``a`` vs ``b`` on the same items of ``split``."""
    ia, ib = _ious(a, split), _ious(b, split)
    items = sorted(set(ia) & set(ib))
    return _sign_test(np.array([ia[k] for k in items]), np.array([ib[k] for k in items]))


def paired_judge(a: SettingScores, b: SettingScores, split: str) -> dict[str, Any]:
    """Mean judge score of setting ``a`` vs ``b`` on the open items of ``split`` both
    have a score for; a sign test on the items where they differ."""
    items = sorted(k for k in a.open_score if k in b.open_score and split in a.splits[k])
    x = np.array([a.open_score[k] for k in items], dtype=float)
    return _sign_test(x, np.array([b.open_score[k] for k in items], dtype=float))


def _score(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def _verdict(diff: float, p: float | None) -> str:
    if diff is None or math.isnan(diff):
        return "no data"
    if diff <= 0:
        return "no"
    if p is not None and not math.isnan(p) and p < ALPHA:
        return "yes"
    return "not shown"


def _sign_claim(claim: str, t: dict[str, Any], compared: str, empty: str) -> dict[str, Any]:
    """A claim checked by a paired sign test (``t`` from :func:`paired_iou` or
    :func:`paired_judge`); ``compared`` names the two means, ``empty`` says why there is
    nothing to compare."""
    if not t["n"]:
        return {"claim": claim, "holds": "no data", "measured": empty}
    return {
        "claim": claim,
        "holds": _verdict(t["diff"], t["p_value"]),
        "measured": f"{compared} on {t['n']} items ({t['better']} better, {t['worse']} "
        f"worse; sign test p {fmt_p(t['p_value'], eq=True)})",
    }


def check_claims(res: FusionExpResult) -> list[dict[str, Any]]:
    """EarthMind's claims, checked on this run's numbers."""
    claims = []
    m = res.methods
    for method, r in m.items():
        fused, optical = r.scores["fused"], r.scores["optical"]
        t = paired_mcq(fused, optical, "cloud_hidden")
        claims.append({
            "claim": f"{method}: fusing SAR answers cloud-hidden MCQs better than optical alone",
            "holds": _verdict(t["diff"], t["p_value"]),
            "measured": f"fused {_pct(t['a'])}% vs optical {_pct(t['b'])}% on {t['n']} items "
                        f"(McNemar p {fmt_p(t['p_value'], eq=True)})"
                        if t["n"] else "no cloud-hidden MCQ",
        })  # fmt: skip
        s = paired_iou(fused, optical, "cloud_hidden")
        claims.append(_sign_claim(
            f"{method}: fusing SAR segments cloud-hidden objects better than optical", s,
            f"mean IoU fused {_pct(s['a'])} vs optical {_pct(s['b'])}",
            "no cloud-hidden segmentation item",
        ))  # fmt: skip
        j = paired_judge(fused, optical, "cloud_hidden")
        claims.append(_sign_claim(
            f"{method}: fusing SAR answers open questions about cloud-hidden objects better "
            "than optical alone", j,
            f"judge score fused {_score(j['a'])} vs optical {_score(j['b'])}",
            "no judged cloud-hidden open item",
        ))  # fmt: skip
    if res.prior and m:
        splits = next(iter(m.values())).scores["fused"].splits
        # the stronger of the non-visual baselines on these items (favours the baseline)
        name, best = max(res.prior.items(), key=lambda kv: np.mean(list(kv[1].values())))
        prior = SettingScores(mcq=dict(best), splits=splits)
        for method, r in m.items():
            t = paired_mcq(r.scores["fused"], prior, "all")
            claims.append({
                "claim": f"{method}: reads the images (fused MCQ above a no-image baseline)",
                "holds": _verdict(t["diff"], t["p_value"]),
                "measured": f"{_pct(t['a'])}% vs {name} {_pct(t['b'])}% on {t['n']} items "
                            f"(McNemar p {fmt_p(t['p_value'], eq=True)})",
            })  # fmt: skip
    if "hca" in m:
        hca = m["hca"].scores["fused"]
        for base in (k for k in m if k != "hca"):
            t = paired_mcq(hca, m[base].scores["fused"], "all")
            claims.append({
                "claim": f"HCA beats {base} on fused MCQ (Table 4)",
                "holds": _verdict(t["diff"], t["p_value"]),
                "measured": f"{_pct(t['a'])}% vs {_pct(t['b'])}% on {t['n']} items "
                            f"(McNemar p {fmt_p(t['p_value'], eq=True)})",
            })  # fmt: skip
            s = paired_iou(hca, m[base].scores["fused"], "all")
            claims.append(_sign_claim(
                f"HCA beats {base} on fused referring segmentation", s,
                f"mean IoU {_pct(s['a'])} vs {_pct(s['b'])}", "no segmentation item",
            ))  # fmt: skip
    if "hca" in m and "concat" in m:
        gh = float(np.abs(m["hca"].mas.gap).mean())
        gc = float(np.abs(m["concat"].mas.gap).mean())
        claims.append({
            "claim": "HCA balances the modalities better than concatenation (smaller |MAS gap|, "
                     "Table 4 right)",
            # HCA's weights average 0.5 by construction (Eq. 3, 5): see the MAS section
            "holds": "yes, by construction" if gh < gc else "no",
            "measured": f"mean |optical - SAR| share over layers: HCA {gh:.3f}, concat {gc:.3f}",
        })  # fmt: skip
    return claims


def plot_mas(res: FusionExpResult) -> Any:
    """MAS per layer: the optical share and the optical - SAR gap, per method."""
    fig = new_figure((10.0, 4.0))
    ax1, ax2 = fig.subplots(1, 2)
    for i, (method, r) in enumerate(res.methods.items()):
        layers = np.arange(1, r.mas.per_layer.shape[0] + 1)
        ax1.plot(layers, r.mas.per_layer[:, 0], marker="o", color=f"C{i}", label=method)
        ax2.plot(layers, r.mas.gap, marker="o", color=f"C{i}", label=method)
    ax1.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax2.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax1.set(xlabel="language-model layer", ylabel="optical share of visual attention",
            title="MAS, optical (Eq. 1)", ylim=(-0.02, 1.02))  # fmt: skip
    ax2.set(xlabel="language-model layer", ylabel="optical - SAR", title="modality gap")
    for ax in (ax1, ax2):
        ax.set_xticks(layers)
    ax2.legend(fontsize=8)
    return save_figure(fig, res.out / "figures" / "mas_per_layer.png")


def results_dict(res: FusionExpResult, claims: list[dict[str, Any]]) -> dict[str, Any]:
    """Every number of the report, JSON-ready."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    methods = {}
    for k, r in res.methods.items():
        methods[k] = {
            "label": r.label, "run_dir": str(r.run_dir), "seconds": round(r.seconds, 1),
            "lambda_final": r.lambda_final,
            "train_loss_first_last": [r.train_loss[0], r.train_loss[-1]] if r.train_loss else None,
            "seg_loss_first_last": [r.seg_loss[0], r.seg_loss[-1]] if r.seg_loss else None,
            "judge": r.judge,
            "scores": {s: r.scores[s].table() for s in SETTINGS},
            "mas": r.mas.to_dict(),
            "fused_vs_optical": {
                split: {"mcq": paired_mcq(r.scores["fused"], r.scores["optical"], split),
                        "iou": paired_iou(r.scores["fused"], r.scores["optical"], split),
                        "judge": paired_judge(r.scores["fused"], r.scores["optical"], split)}
                for split in SPLITS
            },
        }  # fmt: skip
    return clean({
        "config": res.config.to_dict(), "data": res.data, "methods": methods,
        "judge": res.judge,
        "no_image_baselines_mcq_acc": {
            k: float(np.mean(list(v.values()))) if v else None for k, v in res.prior.items()
        },
        "claims": claims, "seconds": round(res.seconds, 1), "provenance": provenance(),
        "figures": {k: str(v) for k, v in res.figures.items()},
    })  # fmt: skip


def open_answers(res: FusionExpResult) -> list[dict[str, Any]]:
    """Every open-ended answer with its reference and judge score (``open_answers.jsonl``)."""
    return [
        {"method": k, "setting": s, "item": item, "reference": r.scores[s].open_ref[item],
         "prediction": r.scores[s].open_pred.get(item), "score": r.scores[s].open_score.get(item)}
        for k, r in res.methods.items() for s in SETTINGS for item in sorted(r.scores[s].open_ref)
    ]  # fmt: skip


def _scores_md(res: FusionExpResult) -> str:
    rows = []
    for k, r in res.methods.items():
        for s in SETTINGS:
            t = r.scores[s].table()
            rows.append([
                k, s, *(f"{_pct(t[sp]['mcq_acc'])} ({t[sp]['n_mcq']})" for sp in SPLITS),
                _pct(t["all"]["miou"]), _pct(t["all"]["ciou"]), _pct(t["all"]["giou"]),
                f"{_pct(t['cloud_hidden']['miou'])} ({t['cloud_hidden']['n_seg']})",
                f"{_pct(t['all']['no_object_acc'])} ({t['all']['n_absent']})",
                f"{_score(t['all']['open_score'])} ({t['all']['n_open_scored']})",
                f"{_score(t['cloud_hidden']['open_score'])} "
                f"({t['cloud_hidden']['n_open_scored']})",
            ])  # fmt: skip
    head = ["method", "setting", *(f"MCQ {sp} (n)" for sp in SPLITS), "mIoU", "cIoU", "gIoU",
            "mIoU cloud-hidden (n)", "no-object acc (n)", "judge (n)",
            "judge cloud-hidden (n)"]  # fmt: skip
    return markdown_table(head, rows)


def _runs_md(res: FusionExpResult) -> str:
    def first_last(v: list[float]) -> str:
        return f"{v[0]:.3f} -> {v[-1]:.3f}" if v else "-"

    rows = [
        [k, r.label, first_last(r.train_loss), first_last(r.seg_loss),
         "-" if r.lambda_final is None else f"{r.lambda_final:.4f}", f"{r.seconds:.0f}"]
        for k, r in res.methods.items()
    ]  # fmt: skip
    head = ["method", "fusion", "train loss (first -> last step)", "mask loss", "lambda",
            "seconds (this call: train if not yet done, eval)"]  # fmt: skip
    return markdown_table(head, rows)


def _prior_md(res: FusionExpResult) -> str:
    if not res.prior or not res.methods:
        return ""
    splits = next(iter(res.methods.values())).scores["fused"].splits
    rows = []
    for name, correct in res.prior.items():
        cells = []
        for sp in SPLITS:
            v = [c for k, c in correct.items() if sp in splits.get(k, {"all"})]
            cells.append(f"{_pct(float(np.mean(v)) if v else math.nan)} ({len(v)})")
        rows.append([f"{name} (no image)", *cells])
    return markdown_table(["baseline", *(f"MCQ {sp} (n)" for sp in SPLITS)], rows)


def _mas_md(res: FusionExpResult) -> str:
    n_layers = max(r.mas.per_layer.shape[0] for r in res.methods.values())
    rows = []
    for k, r in res.methods.items():
        gap = [f"{g:+.3f}" for g in r.mas.gap] + ["-"] * (n_layers - len(r.mas.gap))
        wg = "-" if r.mas.weight_gap is None else f"{r.mas.weight_gap:+.3f}"
        rows.append([k, *gap, wg, r.mas.n])
    head = ["method", *(f"gap L{i + 1}" for i in range(n_layers)), "fusion-weight gap", "n"]
    return markdown_table(head, rows)


def write_report(res: FusionExpResult) -> Any:
    """Write ``report.md``, ``report.json``, ``open_answers.jsonl`` and
    ``figures/mas_per_layer.png`` under ``res.out``; the Markdown path."""
    res.figures["MAS per layer"] = plot_mas(res)
    claims = check_claims(res)
    data = results_dict(res, claims)
    atomic_write_text(res.out / "report.json", json.dumps(data, indent=2) + "\n")
    rows = [json.dumps(row, ensure_ascii=False) for row in open_answers(res)]
    atomic_write_text(res.out / "open_answers.jsonl", "".join(f"{r}\n" for r in rows))
    c = res.config
    d = res.data
    lines = [
        "# Optical + SAR fusion on the synthetic world (EarthMind sec. 3.2, Table 4)",
        "",
        f"Preset `{c.preset}`: a tiny random {c.family} backbone trained from scratch "
        f"(stage 1) for {c.steps} steps of {c.batch_size} samples per fusion method, on "
        f"{d['train']['records']} training records ({d['train']['scenes']} scenes x 3 "
        f"settings); evaluated on {d['test']['records']} held-out records "
        f"({d['test']['scenes']} scenes). {c.size_px} px views, {100 * c.cloud_prob:.0f}% of "
        f"scenes partly under cloud. This call: {res.seconds / 60:.1f} min (finished runs are "
        "reused, so a rerun only evaluates).",
        "",
        "MCQ: the likelier of the two options (yes / no), strict match. Open-ended "
        "(\"Which kinds of object are in the scene?\"): greedy answers scored 1-5 by "
        f"{res.judge or 'the judge'}. Segmentation: "
        "`[SEG]` vs \"There is no <class>.\" by the first token's probability (greedy "
        "decoding's choice), then the mask at `[SEG]`; "
        "mIoU / cIoU / gIoU over present-class items (no `[SEG]`: IoU 0). Percentages; "
        "counts in brackets. *cloud_hidden*: clouds cover most of the object asked about.",
        "",
        "## Runs",
        "",
        _runs_md(res),
        "",
        "## Scores",
        "",
        _scores_md(res),
        "",
        "Chance on the yes / no MCQ is 50%; baselines that never look at the images (the "
        "answer most common in training; per class, the answer most common for it) score:",
        "",
        _prior_md(res),
        "",
        "## Claims, checked",
        "",
        markdown_table(["claim", "holds", "measured"],
                       [[x["claim"], x["holds"], x["measured"]] for x in claims]),
        "",
        "A `not shown` means the numbers cannot tell the effect from chance, not that it is "
        "absent; a `yes` is for this synthetic world and these tiny models only. The tests "
        "are paired over held-out items: within one model (fused vs optical) they measure "
        "that model; between methods they compare one training run (one seed) of each, so "
        "a small gap between methods mixes the method with run-to-run variation.",
        "",
        "## Modality attention score (Eq. 1), optical - SAR share per layer, fused items",
        "",
        _mas_md(res),
        "",
        "Fused tokens count towards each modality by their fusion weights (Eq. 7), so for "
        "the token-wise methods the gap follows the weights as much as the attention: "
        "weights near 0.5 give a gap near 0 whatever the language model attends to. HCA's "
        "alpha and beta are each normalised over the tokens (Eq. 3, 5), so its weights "
        "average 0.5 by construction; per-token weights vary. Only concatenation keeps "
        "one-hot tokens, where the gap is the attention alone.",
        "",
        "![MAS per layer](figures/mas_per_layer.png)",
        "",
    ]  # fmt: skip
    for note in c.notes:
        lines.append(f"> {note}")
    path = res.out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


__all__ = [
    "check_claims",
    "open_answers",
    "paired_iou",
    "paired_judge",
    "paired_mcq",
    "plot_mas",
    "results_dict",
    "write_report",
]
