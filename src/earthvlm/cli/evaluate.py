"""``earthvlm eval``: run a trained model on benchmarks and write scores and reports.

Generation is batched and greedy, raw answers are cached per record (a rerun resumes
without recomputing them), and under ``accelerate launch`` the examples are shared among
the processes. Reports land under ``--out`` (default ``<run>/eval/<checkpoint>``): per
benchmark ``report.md``, ``scores.csv``, ``scores.json`` and ``predictions.jsonl``, and a
``summary.md`` / ``summary.csv`` over all of them.

``--zoom [--max-zooms K]`` asks every example through the zoom loop (the zoom arm,
:mod:`earthvlm.eval.zoom`): reports go to ``<out>/<bench>-zoom<K>/`` with each example's
trace, beside the direct arm's ``<out>/<bench>/``; ``arms.md`` compares the two
(``docs/zoom-eval.md``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from earthvlm.cli._model import MODEL_HELP, BaseOpt, DtypeOpt, Nf4Opt

console = Console()
err_console = Console(stderr=True)

#: Environment variable naming a folder with one data folder per benchmark.
DATA_ENV = "EARTHVLM_BENCHMARKS"


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]error:[/] {message}")
    return typer.Exit(code)


def data_folder(name: str, data: Path | None) -> Path:
    """Where benchmark ``name`` reads its files: ``<data>/<name>`` when that folder exists,
    else ``<data>`` itself (one folder for all, e.g. a synthetic dataset); without
    ``--data``, ``$EARTHVLM_BENCHMARKS/<name>``.

    Raises:
        typer.Exit: When no folder is given or it does not exist.
    """
    if data is None:
        base = os.environ.get(DATA_ENV)
        if not base:
            raise _fail(
                f"{name}: no data folder; pass --data (a folder with the benchmark's files, "
                f"or one with a subfolder per benchmark) or set {DATA_ENV}"
            )
        folder = Path(base) / name
    else:
        folder = data / name if (data / name).is_dir() else data
    if not folder.exists():
        raise _fail(f"{name}: data folder {folder} does not exist")
    return folder


def parse_options(items: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """``["bench.field=value", ...]`` -> ``{bench: {field: value}}`` (values as YAML).

    Raises:
        ValueError: For an item without ``=`` or a benchmark, or naming a benchmark that
            is not being run.
        BenchmarkError: For an unknown benchmark name.
    """
    import yaml

    from earthvlm.eval.benchmarks import REGISTRY
    from earthvlm.typed import parse_yaml

    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        bench, dot, field = key.strip().rpartition(".")
        if not sep or not dot or not bench or not field:
            raise ValueError(f"--opt {item!r}: write BENCH.FIELD=VALUE, e.g. earthmind.setting=sar")
        name = REGISTRY.resolve(bench)
        if name not in names:
            raise ValueError(f"--opt {item!r}: {name} is not among the benchmarks run ({names})")
        try:
            value = parse_yaml(text) if text.strip() else ""  # aliases refused
        except yaml.YAMLError as e:
            raise ValueError(f"--opt {item!r}: the value is not YAML ({e})") from None
        options.setdefault(name, {})[field] = value
    return options


def eval_command(
    model: Annotated[
        Path | None, typer.Option("--model", help=MODEL_HELP + " Or give --endpoint.")
    ] = None,
    bench: Annotated[
        str | None,
        typer.Option(
            "--bench",
            help="Benchmarks, comma-separated registered names (e.g. synth_chips, "
            "synth_vqa, xlrs_lite, rsvqa_hr, lrs_vqa, vrsbench_vqa, earthmind); a wrong "
            "name lists the close ones.",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Data folder: one per benchmark under it (named after the benchmark), or "
            f"one folder for all. Default: ${DATA_ENV}/<benchmark>."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder (default: <run>/eval/<checkpoint> for a run, else "
            "./eval/<model folder name>)."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Ask at most this many examples per benchmark.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per generation call.")] = 8,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="New tokens per answer (default: each benchmark's own).")
    ] = None,
    base: BaseOpt = None,
    dtype: DtypeOpt = "fp32",
    load_in_4bit: Nf4Opt = False,
    opt: Annotated[
        list[str] | None,
        typer.Option(
            "--opt",
            help="A benchmark option BENCH.FIELD=VALUE (VALUE read as YAML), repeatable: "
            "e.g. earthmind.setting=fused, earthmind.judge_url=http://127.0.0.1:8000/v1, "
            "lrs_vqa.wordnet=false.",
        ),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            help="An OpenAI-compatible API root (e.g. http://127.0.0.1:8000/v1: earthvlm "
            "serve, vLLM, SGLang) answering instead of a local --model.",
        ),
    ] = None,
    served_model: Annotated[
        str | None,
        typer.Option("--served-model", help="The endpoint's model name (GET /v1/models)."),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option("--api-key-env", help="Environment variable with the endpoint's key."),
    ] = None,
    endpoint_workers: Annotated[
        int, typer.Option(min=1, help="Requests in flight at once to the endpoint.")
    ] = 8,
    max_decode_pixels: Annotated[
        int,
        typer.Option(
            "--max-decode-pixels",
            min=1,
            help="Images with more pixels are read reduced to the size the model sees "
            "(overviews, JPEG draft, PNG strips), never decoded whole; the report counts them.",
        ),
    ] = 89_478_485,
    zoom: Annotated[
        bool,
        typer.Option(
            "--zoom/--no-zoom",
            help="Ask through the zoom loop: a global view at the model's budget, zoom_in "
            "calls read natively from the image, one GSD per view (reports under "
            "<out>/<bench>-zoom<K>/ with each trace).",
        ),
    ] = False,
    max_zooms: Annotated[
        int | None,
        typer.Option("--max-zooms", min=0, help="Most zooms per question with --zoom (default 2)."),
    ] = None,
    global_max_pixels: Annotated[
        int | None,
        typer.Option(
            "--global-max-pixels",
            min=1,
            help="Pixel budget of the zoom loop's global view (default: the model's; "
            "ZoomEarth's 512 x 512 is 262144).",
        ),
    ] = None,
    endpoint_zoom: Annotated[
        int | None,
        typer.Option(
            "--endpoint-zoom",
            min=0,
            help="Offer the zoom_in tool with at most this many zooms (the server runs it: "
            "earthvlm serve --zoom).",
        ),
    ] = None,
) -> None:
    """Evaluate a trained model, or an OpenAI-compatible endpoint, on benchmarks (greedy
    decoding, resumable, shardable with accelerate launch). Exit code 2 for bad
    arguments, 1 if a run fails."""
    from earthvlm.errors import EarthVLMError
    from earthvlm.eval.benchmarks import BenchmarkError, build_benchmark, parse_names

    if bench is None:
        raise _fail("name the benchmarks with --bench")
    if (model is None) == (endpoint is None):
        raise _fail("give a local --model or an --endpoint (with --served-model), not both")
    if endpoint is not None and not served_model:
        raise _fail("--endpoint needs --served-model (the name GET /v1/models lists)")
    if zoom and endpoint is not None:
        raise _fail("--zoom runs a local --model; an endpoint zooms with --endpoint-zoom K")
    if not zoom and (max_zooms is not None or global_max_pixels is not None):
        raise _fail("--max-zooms and --global-max-pixels set the zoom arm: add --zoom")
    try:
        names = parse_names(bench)
    except BenchmarkError as e:
        raise _fail(str(e)) from None
    try:
        options = parse_options(opt or [], names)
        for name, values in options.items():  # unknown fields and bad values fail here
            build_benchmark(name, **values)
    except (BenchmarkError, ValueError) as e:
        raise _fail(str(e)) from None
    folders = {name: data_folder(name, data) for name in names}
    from earthvlm.cli._model import default_out, load_model_option
    from earthvlm.eval.runner import Processes, RunConfig, run_benchmarks
    from earthvlm.eval.zoom import ZoomEvalConfig

    try:
        zoom_config = None
        if zoom:
            zoom_config = ZoomEvalConfig(
                max_zooms=2 if max_zooms is None else max_zooms,
                global_max_pixels=global_max_pixels,
            )
        config = RunConfig(
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            limit=limit,
            max_decode_pixels=max_decode_pixels,
            zoom=zoom_config,
        )
    except ValueError as e:
        raise _fail(str(e)) from None
    try:
        if endpoint is not None:
            from earthvlm.eval.endpoint import EndpointConfig, EndpointModel

            trained = EndpointModel(EndpointConfig(
                endpoint, served_model or "", api_key_env=api_key_env,
                max_workers=endpoint_workers, zoom=endpoint_zoom))  # fmt: skip
        else:
            trained = load_model_option(model, base=base, dtype=dtype, load_in_4bit=load_in_4bit)
    except (EarthVLMError, ValueError) as e:
        raise _fail(str(e)) from None
    if out is None and endpoint is not None:  # a served name may hold '/' or '..'
        out = Path.cwd() / "eval" / re.sub(r"[^\w.-]+", "_", served_model or "").strip(".")
    folder = out or default_out(trained, "eval")
    procs = Processes.from_accelerate()
    try:
        runs = run_benchmarks(
            trained, names, folders.__getitem__, folder, config, procs, options=options
        )
    except (EarthVLMError, ValueError) as e:
        raise _fail(str(e), code=1) from None
    if not procs.is_main:
        return
    console.print(_table(runs, trained))
    console.print(f"reports: {folder / 'summary.md'}")


def _table(runs: list[Any], model: Any) -> Table:
    table = Table(title=f"{model.name} ({model.variant})")
    for col in ("benchmark", "n", "metric", "value", "generated", "cached", "refused"):
        table.add_column(col, justify="left" if col in ("benchmark", "metric") else "right")
    for r in runs:
        res = r.result
        value = "-" if res is None or res.headline != res.headline else f"{res.headline:.4f}"
        table.add_row(
            r.folder.name, str(res.n if res else r.n_examples), res.metric if res else "-",
            value, str(r.n_generated), str(r.n_cached), str(sum(r.failures.values())),
        )  # fmt: skip
    return table


__all__ = ["DATA_ENV", "data_folder", "eval_command", "parse_options"]
