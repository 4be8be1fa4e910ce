"""``earthvlm diagnose spoof|gates|calibration|probe``: the scale diagnostics on a saved model.

Each command loads a run folder (or one of its checkpoints), reads a JSONL of records,
runs one diagnostic, prints its table, and writes a Markdown report (with a JSON twin)
and a PNG under ``--out`` (default: ``<run>/diagnostics``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from earthvlm.cli._model import MODEL_HELP

console = Console()
err_console = Console(stderr=True)

diagnose_app = typer.Typer(
    help="Scale diagnostics (GSD spoofing, gate curves, SSE-U calibration, rank probe) "
    "on a trained model.",
    no_args_is_help=True,
)

ModelOpt = Annotated[Path, typer.Option("--model", help=MODEL_HELP)]
DataOpt = Annotated[Path, typer.Option("--data", help="JSONL records to diagnose on.")]
RootOpt = Annotated[
    Path | None, typer.Option(help="Dataset root of the images (default: the records' folder).")
]
OutOpt = Annotated[Path | None, typer.Option(help="Output folder (default: <run>/diagnostics).")]
LimitOpt = Annotated[int | None, typer.Option(help="Use at most this many records.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of subsets, bootstraps and probe folds.")]


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/] {message}")
    return typer.Exit(2)


def _load(model_dir: Path) -> Any:
    from earthvlm.cli._model import load_model_option
    from earthvlm.errors import EarthVLMError

    try:
        return load_model_option(model_dir)
    except EarthVLMError as e:
        raise _fail(str(e)) from None


def _read(data: Path, root: Path | None) -> tuple[list, Path]:
    """Every valid record of ``data`` (invalid rows are quarantined and counted)."""
    from earthvlm.data.jsonl import read_records
    from earthvlm.errors import EarthVLMError

    if not data.is_file():
        raise _fail(f"--data {data}: no such file")
    root = root or data.parent
    try:
        read = read_records(data, root=root)
    except EarthVLMError as e:
        raise _fail(str(e)) from None
    console.print(read.ledger.summary())
    return list(read.records), root


#: What each diagnostic needs of a record (for the message when none has it).
_NEEDS = {
    True: "a closed-set classification record (task 'classification', e.g. the synthetic "
    "world's object chips) with one image, an answer and an exact GSD, that fits the model",
    False: "a record with one image (at most 4096 x 4096 px), an answer and an exact GSD, "
    "that fits the model",
}
#: Images larger than this are left out of the image diagnostics (read whole, a UHR
#: scene would take minutes and GBs for one sample).
MAX_IMAGE_PIXELS = 4096 * 4096


def _select(
    records: list, root: Path, model: Any, data: Path, limit: int | None, *, closed: bool
) -> list:
    """The records this diagnostic can use (``closed``: closed-set classification; else
    one record per image, none larger than :data:`MAX_IMAGE_PIXELS`); says how many were
    left out and why, and exits 2 when none is left."""
    from earthvlm.eval.diagnose import closed_set, fitting, usable

    kept, ledger = usable(
        records,
        need_exact_gsd=True,
        closed_set_only=closed,
        one_per_image=not closed,
        max_image_pixels=None if closed else MAX_IMAGE_PIXELS,
    )
    longest = max(closed_set(kept)[0], key=len) if closed and kept else None
    kept = fitting(model, root, kept, ledger, answer=longest, limit=limit)
    if ledger.n_skipped:
        console.print(f"using {len(kept)} of {ledger.read} records; left out: {_reasons(ledger)}")
    if not kept:
        raise _fail(f"{data}: no usable record; this diagnostic needs {_NEEDS[closed]}")
    if closed and len(closed_set(kept)[0]) < 2:
        raise _fail(
            f"{data}: the usable records have one answer ({closed_set(kept)[0][0]!r}); a "
            "closed set needs at least two classes"
        )
    return kept


def _out(out: Path | None, model: Any) -> Path:
    from earthvlm.cli._model import default_out

    # a run's own folder (<run>/diagnostics), else ./diagnostics/<model name>
    folder = out or (
        Path(model.source).resolve().parent / "diagnostics"
        if model.origin == "run"
        else default_out(model, "diagnostics")
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _reasons(ledger: Any) -> str:
    """``60 not_closed_set_classification (vqa 28, counting 8, ...), 3 no_exact_gsd``."""
    from collections import Counter

    groups: dict[str, Counter[str]] = {}
    for reason, n in ledger.skipped.items():
        head, _, detail = reason.partition(":")
        groups.setdefault(head, Counter())[detail] += n
    parts = []
    for head, details in sorted(groups.items(), key=lambda kv: -sum(kv[1].values())):
        inner = ", ".join(f"{d} {n}" for d, n in details.most_common() if d)
        parts.append(f"{sum(details.values())} {head}" + (f" (tasks: {inner})" if inner else ""))
    return ", ".join(parts)


def _setup(
    model_dir: Path,
    data: Path,
    root: Path | None,
    out: Path | None,
    limit: int | None,
    *,
    closed: bool,
) -> tuple:
    """The usable records (``closed``: closed-set classification ones), their root, the
    model, a scorer over their answers, and the output folder."""
    from earthvlm.eval.choice import ChoiceScorer
    from earthvlm.eval.diagnose import closed_set

    records, root = _read(data, root)
    model = _load(model_dir)
    records = _select(records, root, model, data, limit, closed=closed)
    scorer = ChoiceScorer(model, root, closed_set(records)[0])
    return records, root, model, scorer, _out(out, model)


def _write(folder: Path, name: str, model: Any, sections: dict, settings: dict, seed: int,
           figures: dict) -> Path:  # fmt: skip
    from earthvlm.eval.diagnostics import write_report

    config = {"model": str(model.source or model.name), "variant": model.variant, **settings}
    return write_report(
        folder / f"{name}.md",
        sections,
        config,
        seed,
        title=f"{name}: {model.name} ({model.variant})",
        figures=figures,
    )


@diagnose_app.command("spoof")
def spoof(
    model_dir: ModelOpt,
    data: DataOpt,
    root: RootOpt = None,
    out: OutOpt = None,
    sweep: Annotated[
        str, typer.Option(help="'offset' (true GSD x 10^delta), 'absolute' (0.01-30 m) or 'both'.")
    ] = "both",
    per_class: Annotated[
        int | None, typer.Option(help="Class-balanced subset size (default: the rarest class).")
    ] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """GSD spoofing (ScaleEarth App. A.3): accuracy under claimed GSDs, with bootstrap CIs,
    pair flips and paired tests of whether the answers depend on the GSD at all."""
    from earthvlm.errors import EarthVLMError
    from earthvlm.eval.diagnose import closed_set, spoof_model
    from earthvlm.eval.diagnostics import (
        PAPER_SPOOF_DELTAS,
        PAPER_SPOOF_GSDS_M,
        plot_spoof_curves,
    )
    from earthvlm.eval.diagnostics.report import markdown_table
    from earthvlm.eval.diagnostics.stats import fmt_p, spoof_tests

    if sweep not in ("offset", "absolute", "both"):
        raise _fail(f"--sweep {sweep!r}: choose 'offset', 'absolute' or 'both'")
    records, root, model, scorer, folder = _setup(model_dir, data, root, out, limit, closed=True)
    candidates, pairs = closed_set(records)
    kinds = ["offset", "absolute"] if sweep == "both" else [sweep]
    sections: dict[str, Any] = {}
    figures = {}
    for kind in kinds:
        values = {"deltas": PAPER_SPOOF_DELTAS} if kind == "offset" else {
            "gsd_values_m": PAPER_SPOOF_GSDS_M
        }  # fmt: skip
        try:
            curve = spoof_model(
                scorer, records, pairs=pairs, n_per_class=per_class, n_boot=n_boot, seed=seed,
                **values,
            )  # fmt: skip
        except (EarthVLMError, ValueError) as e:
            raise _fail(str(e)) from None
        sections[f"{kind} sweep"] = curve
        tests = spoof_tests(curve) if kind == "offset" else {}
        if tests:
            rows = [[n, f"{t.statistic:.1f}", t.dof or "", fmt_p(t.p_value), t.n]
                    for n, t in tests.items()]  # fmt: skip
            sections[f"{kind} sweep: paired tests"] = markdown_table(
                ["test", "statistic", "dof", "p", "n"], rows
            )
        figures[f"GSD spoofing ({kind})"] = plot_spoof_curves(
            {model.name: curve}, folder / f"spoof_{kind}.png"
        )
        console.print(curve.to_markdown())
        for n, t in tests.items():
            console.print(f"{n}: statistic {t.statistic:.2f}, p {fmt_p(t.p_value, eq=True)}")
    settings = {"data": str(data), "candidates": candidates, "pairs": pairs, "sweep": sweep,
                "per_class": per_class, "n_boot": n_boot}  # fmt: skip
    report = _write(folder, "spoof", model, sections, settings, seed, figures)
    console.print(f"report: {report}")


@diagnose_app.command("gates")
def gates(
    model_dir: ModelOpt,
    data: Annotated[
        Path | None, typer.Option("--data", help="Not needed: gates are read from the weights.")
    ] = None,
    out: OutOpt = None,
) -> None:
    """Learned CS-HLoRA gate curves h_k(s) per initial tier group (Fig. 8d)."""
    from earthvlm.eval.diagnostics import gate_curves, plot_gate_curves

    model = _load(model_dir)
    if model.cshlora is None:
        raise _fail(f"{model_dir}: gate curves need a CS-HLoRA run (this is {model.variant})")
    curves = gate_curves(model.hf_model, model.cshlora)
    folder = _out(out, model)
    fig = plot_gate_curves(curves, folder / "gates.png")
    console.print(curves.to_markdown())
    report = _write(folder, "gates", model, {"gate curves": curves}, {}, 0, {"gates": fig})
    console.print(f"report: {report}")


@diagnose_app.command("calibration")
def calibration(
    model_dir: ModelOpt,
    data: DataOpt,
    root: RootOpt = None,
    out: OutOpt = None,
    limit: LimitOpt = None,
) -> None:
    """SSE-U calibration: E|g_hat - g| / mean sigma, reliability, resolver branches, and
    sigma with vs without scale cues (records' ``meta.has_scale_cues``)."""
    from earthvlm.errors import EarthVLMError
    from earthvlm.eval.diagnose import calibrate_model
    from earthvlm.eval.diagnostics import plot_calibration

    records, root, model, scorer, folder = _setup(model_dir, data, root, out, limit, closed=False)
    try:
        stats = calibrate_model(model, scorer, records)
    except EarthVLMError as e:
        raise _fail(str(e)) from None
    fig = plot_calibration(stats, folder / "calibration.png")
    console.print(stats.to_markdown())
    report = _write(
        folder, "calibration", model, {"SSE-U calibration": stats}, {"data": str(data)}, 0,
        {"calibration": fig},
    )  # fmt: skip
    console.print(f"report: {report}")


@diagnose_app.command("probe")
def probe(
    model_dir: ModelOpt,
    data: DataOpt,
    root: RootOpt = None,
    out: OutOpt = None,
    layer: Annotated[
        str, typer.Option(help="CS-HLoRA layer (a full path or a unique suffix).")
    ] = "layers.1.mlp.down_proj",
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Rank probe (App. A.4): held-out R^2 of per-rank ridge probes to texture (Gabor
    energy), geometry (Canny edge density), scene identity and log10 GSD, by tier group."""
    from earthvlm.errors import EarthVLMError
    from earthvlm.eval.diagnose import probe_model
    from earthvlm.eval.diagnostics import plot_probe_heatmap

    records, root, model, scorer, folder = _setup(model_dir, data, root, out, limit, closed=False)
    try:
        result = probe_model(model, scorer, records, root, layer=layer, seed=seed)
    except (EarthVLMError, ValueError) as e:
        raise _fail(str(e)) from None
    fig = plot_probe_heatmap(result, folder / "probe.png")
    console.print(result.to_markdown())
    report = _write(
        folder, "probe", model, {"rank probe": result}, {"data": str(data), "layer": layer},
        seed, {"probe": fig},
    )  # fmt: skip
    console.print(f"report: {report}")


__all__ = ["diagnose_app"]
