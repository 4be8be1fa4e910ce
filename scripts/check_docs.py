"""Check the numbers the docs quote against the code and the committed results.

Each check builds, from its source of truth (a committed report, a preset, a constant in
the code), the phrase a document must contain (line breaks aside); a phrase that is
missing is a number that drifted from its source (or a sentence reworded: then update the
check with it). Timings
are not checked: they belong to the machine they were measured on.

    python scripts/check_docs.py        # exit 1 and one line per mismatch

The test suite runs it (``tests/test_docs.py``).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MICRO_DOC = ROOT / "docs" / "micro-scaleearth.md"
MICRO = ROOT / "docs" / "micro-scaleearth"
FUSION_DOC = ROOT / "docs" / "fusion-experiment.md"
FUSION = ROOT / "docs" / "fusion-experiment"
README = ROOT / "README.md"

#: (document, phrase it must contain, where the number comes from)
Check = tuple[Path, str, str]


def markdown_tables(text: str, section: str) -> list[list[list[str]]]:
    """The tables under ``## section`` (rows of stripped cells, header first)."""
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    tables, rows = [], []
    for line in [*body.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                rows.append(cells)
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def p_short(p: float) -> str:
    """A p-value as the prose writes it: ``0.80``, ``5e-6``."""
    if p >= 0.01:
        return f"{p:.2f}"
    mantissa, exponent = f"{p:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def micro_checks() -> Iterator[Check]:
    """docs/micro-scaleearth.md against the committed full run and the presets."""
    from earthvlm.adapters.cshlora.config import PAPER_TIERS
    from earthvlm.adapters.moelora import MoELoRAConfig
    from earthvlm.experiments.micro import preset

    report = (MICRO / "report.md").read_text(encoding="utf-8")
    twin = json.loads((MICRO / "report.json").read_text(encoding="utf-8"))
    src = "docs/micro-scaleearth/report.md"
    full = twin["config"]["experiment"]
    doc = MICRO_DOC

    # the results table: the summary rows, model by model
    summary = {row[0]: row for row in markdown_tables(report, "Summary")[0][1:]}
    for label, row in summary.items():
        amb, ci = row[3].split(" ", 1)
        cs = label.startswith("CS-HLoRA")  # the doc sets the best value in bold
        cells = [label, f"{'**' + amb + '**' if cs else amb} {ci}", row[4], row[5]]
        yield doc, "| " + " | ".join(cells) + " |", f"{src} Summary"
    params = {label.split(" ")[0]: row[1] for label, row in summary.items()}
    yield (
        doc,
        f"Trained parameters: {params['B2']} (B2, B3), {params['B4']} (B4), "
        f"{params['CS-HLoRA']} (CS-HLoRA",
        f"{src} Summary",
    )
    stage1 = int(summary["stage 1 (no GSD)"][1].replace(",", ""))
    yield doc, f"random init, {stage1 / 1e6:.2f} M parameters", f"{src} Summary"

    # the full preset's sizes
    yield (
        doc,
        f"{full['n_train']:,} training chips, {full['n_test']} held-out chips",
        "report.json config",
    )
    yield doc, f"{full['stage1_steps']:,} steps of batch {full['batch_size']}", "config"
    yield doc, f"steps ({full['stage2_steps']}), schedule and rank ({full['rank']})", "config"
    yield doc, f"{full['spoof_per_class']} per class", "report.json config"
    edges = MoELoRAConfig().boundaries_m
    yield (
        doc,
        f"({', '.join(f'{e:g} m' for e in edges)} edges; 3 x {full['rank'] // 3} ranks)",
        "MoELoRAConfig.boundaries_m",
    )

    # the CS-HLoRA spoof curve, its tests, the controls
    claims = {row[0]: row[2] for row in markdown_tables(report, "Claims")[0][1:]}
    peak = next(v for k, v in claims.items() if "peaks within" in k)
    acc = re.search(r"accuracy ([0-9.]+)", peak).group(1)
    drops = next(v for k, v in claims.items() if "falls >=" in k)
    below, above = (round(float(x)) for x in re.findall(r"-([0-9.]+) points", drops))
    yield (
        doc,
        f"peaks at the true GSD ({acc} on the class-balanced subset) and falls by {below} "
        f"points at 0.1x and {above} points at 10x",
        f"{src} Claims",
    )
    cs_row = summary["CS-HLoRA + SSE-U"]
    yield doc, f"drops to {cs_row[4]} on ambiguous pairs", f"{src} Summary"
    tests = {(r[0], r[1]): r for r in markdown_tables(report, "Statistical tests")[0][1:]}
    q_cs = tests[("CS-HLoRA + SSE-U", "all GSDs (Cochran's Q)")]
    p_cs = "p < 1e-300" if q_cs[4] in ("0", "< 1e-300") else f"p = {q_cs[4]}"
    yield (
        doc,
        f"Cochran's Q over the {len(full['deltas'])} claimed GSDs: "
        f"{round(float(q_cs[2])):,} ({p_cs})",
        f"{src} Statistical tests",
    )
    q_b2 = tests[("B2 LoRA", "all GSDs (Cochran's Q)")]
    yield doc, f"(Q = {float(q_b2[2]):g}, p = {q_b2[4]})", f"{src} Statistical tests"
    steps = next(v for k, v in claims.items() if k.startswith("B4"))
    changed = re.search(r"changed (\d+) times", steps).group(1)
    yield doc, f"changed {changed}", f"{src} Claims"
    q_b3 = tests[("B3 LoRA + GSD text", "all GSDs (Cochran's Q)")]
    b3_row = summary["B3 LoRA + GSD text"]
    yield (
        doc,
        f"{b3_row[3].split()[0]} with the true GSD vs {b3_row[4]} shuffled (CS-HLoRA: "
        f"{cs_row[3].split()[0]} vs {cs_row[4]}), Cochran's Q p = "
        f"{p_short(float(q_b3[4]))}",
        f"{src} Statistical tests",
    )

    # gates (their initialisation is the code's; where they went, the report's)
    tau = {
        name: t
        for name, (_, _, t) in zip(("object", "structure", "semantic"), PAPER_TIERS, strict=True)
    }
    gates = twin["sections"]["Gate curves"]["groups"]
    yield (
        doc,
        f"from their {10 ** tau['object']:g} m initialisation (tau = {tau['object']:g}) to a "
        f"gate midpoint of {gates['object']['half_open_gsd_m']:.2f} m",
        "PAPER_TIERS; report.json Gate curves",
    )
    yield doc, f"(tau initialised at 10^{tau['semantic']:g} m)", "PAPER_TIERS"
    probe = {r[0]: r for r in markdown_tables(report, "Rank probe")[0][1:]}
    r2 = float(probe[next(k for k in probe if k.startswith("object"))][4])
    yield doc, f"held-out probe R^2 {r2:.2f}", f"{src} Rank probe"

    # SSE-U
    cal = markdown_tables(report, "SSE-U calibration")
    ratio = cal[0][1][3]
    yield doc, f"(E|err| / mean sigma {ratio} vs 0.798 for a Gaussian)", f"{src} calibration"
    cues = {r[0]: r for r in cal[-1][1:]}
    yield (
        doc,
        f"(mean sigma {float(cues['without cues'][2]):.3f} ambiguous vs "
        f"{float(cues['with cues'][2]):.3f} plane / ship)",
        f"{src} calibration",
    )
    neutral = next(r for r in cal[2][1:] if r[0] == "neutral")
    yield doc, f"falls back to 1 m for {round(100 * float(neutral[2]))} % of", f"{src}"

    # the quick preset, as the code defines it
    q = preset("quick")
    yield (
        doc,
        f"The quick preset ({q.stage1_steps:,} stage-1 steps, {q.stage2_steps} per variant, "
        f"{q.n_train:,} training and {q.n_test} held-out chips, {q.spoof_per_class} per class "
        "in the sweeps)",
        "experiments/micro/config.py",
    )


def fusion_checks() -> Iterator[Check]:
    """docs/fusion-experiment.md and the README's fusion line against the fusion report."""
    twin = json.loads((FUSION / "report.json").read_text(encoding="utf-8"))
    src = "docs/fusion-experiment/report.json claims"
    claims = {c["claim"]: c["measured"] for c in twin["claims"]}

    def seg(method: str) -> tuple[str, str, float, str, str]:
        m = claims[f"{method}: fusing SAR segments cloud-hidden objects better than optical"]
        fused, optical = re.findall(r"(?:fused|optical) ([0-9.]+)", m)
        better, worse = re.findall(r"(\d+) (?:better|worse)", m)
        return fused, optical, float(re.search(r"p=([0-9.e-]+)", m).group(1)), better, worse

    f, o, p, better, worse = seg("hca")
    yield (
        FUSION_DOC,
        f"HCA {f} vs {o} mIoU ({better} items better, {worse} worse, sign test p = {p_short(p)})",
        src,
    )
    yield README, f"(HCA {f} vs {o} mIoU, p = {p_short(p)})", src
    for method, words in (("fixed", "the release's fixed lambda"), ("average", "average")):
        f, o, p, _, _ = seg(method)
        yield FUSION_DOC, f"{words} {f} vs {o} (p = ", src
        yield FUSION_DOC, f"{p_short(p)})", src
    f, o, p, _, _ = seg("concat")
    yield FUSION_DOC, f"({f} vs {o}, p = {p_short(p)})", src
    mas = claims[next(k for k in claims if "MAS gap" in k)]
    hca, concat = (float(x) for x in re.findall(r"(?:HCA|concat) ([0-9.]+)", mas))
    yield FUSION_DOC, f"HCA {hca:.3f} vs concatenation {concat:.2f}", src
    vs_concat = claims["HCA beats concat on fused referring segmentation"]
    a, b = (float(x) for x in re.findall(r"([0-9.]+) (?:vs|on)", vs_concat)[:2])
    better, worse = re.findall(r"(\d+) (?:better|worse)", vs_concat)
    p = float(re.search(r"p=([0-9.e-]+)", vs_concat).group(1))
    yield (
        FUSION_DOC,
        f"above concatenation by {a - b:.1f} mIoU ({better} items better, {worse} worse, "
        f"p = {p_short(p)})",
        src,
    )
    if not math.isfinite(p):  # pragma: no cover - a malformed report
        raise ValueError(vs_concat)


def checks() -> Iterator[Check]:
    yield from micro_checks()
    yield from fusion_checks()


def mismatches() -> list[str]:
    """One line per phrase a document lacks: the document, the phrase, its source."""
    texts: dict[Path, str] = {}
    out = []
    for doc, phrase, source in checks():
        text = texts.setdefault(doc, _flat(doc.read_text(encoding="utf-8")))
        if _flat(phrase) not in text:
            name = doc.relative_to(ROOT) if doc.is_relative_to(ROOT) else doc
            out.append(f"{name}: missing {_flat(phrase)!r} (from {source})")
    return out


def _flat(text: str) -> str:
    """Line breaks and runs of spaces as one space: prose wraps anywhere."""
    return " ".join(text.split())


def main() -> int:
    bad = mismatches()
    for line in bad:
        print(line)
    n = sum(1 for _ in checks())
    print(f"{n - len(bad)}/{n} quoted numbers match their source")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
