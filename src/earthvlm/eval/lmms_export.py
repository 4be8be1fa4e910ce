"""Export a registered benchmark as an lmms-eval task folder, scored by earthvlm.

lmms-eval runs many public models under one harness; exporting a benchmark there lets
those models be compared with earthvlm's on the same items and the same scorer. The
folder holds::

    out/
      <task>.yaml          the task: dataset, prompts, greedy generation, metrics
      utils.py             doc_to_visual / doc_to_text / doc_to_target / process_results
      docs.jsonl           one doc per record of ``Benchmark.examples()``
      earthvlm_task.json   benchmark name, version, options, provenance
      COMPLETE             written last

``process_results`` rebuilds the benchmark from ``earthvlm_task.json`` and calls
:meth:`Benchmark.reward` on the doc's record, so the per-item ``score`` equals earthvlm's;
the headline metric (:attr:`Benchmark.metric`) is aggregated by
:meth:`Benchmark.score` over all items, so corpus-level headlines (LRS-VQA's mean of
per-source AAs, XLRS macro) agree too. earthvlm must be installed where lmms-eval runs.

The YAML uses lmms-eval's ``!function`` tag for the callbacks (as every lmms-eval task
does); :func:`load_task_yaml` reads it with a safe loader that knows that one tag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from earthvlm.data.record import Record
from earthvlm.eval.benchmarks import Benchmark, BenchmarkError, build_benchmark
from earthvlm.provenance import provenance

#: Files of an export.
DOCS_FILE = "docs.jsonl"
META_FILE = "earthvlm_task.json"
UTILS_FILE = "utils.py"
COMPLETE_FILE = "COMPLETE"


@dataclass(frozen=True)
class LmmsExport:
    """What :func:`export_lmms_task` wrote.

    Attributes:
        task: The lmms-eval task name (``earthvlm_<benchmark>``).
        folder: The task folder (give it to lmms-eval's ``--include_path``).
        yaml_path: The task YAML.
        n_docs: Docs written.
    """

    task: str
    folder: Path
    yaml_path: Path
    n_docs: int


class _Function(str):
    """A ``!function module.attr`` reference in lmms-eval's task YAML."""


def _represent_function(dumper: yaml.SafeDumper, value: _Function) -> yaml.Node:
    return dumper.represent_scalar("!function", str(value))


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Function, _represent_function)


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor(
    "!function",
    lambda loader, node: _Function(loader.construct_scalar(node)),  # type: ignore[arg-type]
)


def load_task_yaml(path: str | Path) -> dict[str, Any]:
    """A task YAML as a dict; a ``!function`` value reads as its ``"module.attr"`` text."""
    obj = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Loader)
    if not isinstance(obj, dict):
        raise BenchmarkError(f"{path}: not a task YAML (expected a mapping)")
    return obj


def _prompt(record: Record) -> str:
    for m in reversed(record.messages):
        if m.role == "user":
            return m.text()
    raise BenchmarkError(f"record {record.id}: no user turn holds the prompt")


def _exportable_options(bench: Benchmark) -> dict[str, Any]:
    opts = bench.options()
    if opts.get("synsets") is not None:
        raise BenchmarkError(
            f"{bench.name}: a custom synonym provider cannot travel to lmms-eval; export "
            "with WordNet (the default) or wordnet=False"
        )
    opts.pop("synsets", None)
    try:
        json.dumps(opts)
    except TypeError as e:
        raise BenchmarkError(f"{bench.name}: options {opts} are not JSON ({e})") from None
    return opts


def task_yaml(bench: Benchmark, task: str, docs: Path) -> dict[str, Any]:
    """The lmms-eval task config of ``bench`` reading ``docs`` (a JSONL file)."""
    fn = _Function
    return {
        "task": task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(docs)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_visual": fn("utils.doc_to_visual"),
        "doc_to_text": fn("utils.doc_to_text"),
        "doc_to_target": fn("utils.doc_to_target"),
        "generation_kwargs": {
            "max_new_tokens": int(bench.max_new_tokens),
            "temperature": 0,
            "top_p": 1.0,
            "num_beams": 1,
            "do_sample": False,
        },
        "process_results": fn("utils.process_results"),
        "metric_list": [
            {"metric": "score", "aggregation": "mean", "higher_is_better": True},
            {
                "metric": bench.metric,
                "aggregation": fn("utils.aggregate_headline"),
                "higher_is_better": True,
            },
        ],
        "lmms_eval_specific_kwargs": {"default": {"pre_prompt": "", "post_prompt": ""}},
        "metadata": {"version": bench.version, "earthvlm_benchmark": bench.name},
    }


_UTILS = '''"""lmms-eval callbacks of an earthvlm benchmark export (generated; do not edit).

Scores come from earthvlm itself: process_results calls Benchmark.reward on the doc's
record, aggregate_headline calls Benchmark.score over all items.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

TASK = json.loads((Path(__file__).parent / "earthvlm_task.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def benchmark() -> Any:
    """The benchmark, built with the exported options."""
    from earthvlm.eval.benchmarks import build_benchmark

    return build_benchmark(TASK["benchmark"], **TASK["options"])


def _record(doc: dict[str, Any]) -> Any:
    from earthvlm.data.record import Record

    return Record.model_validate_json(doc["record_json"])


def doc_to_visual(doc: dict[str, Any]) -> list[Any]:
    from PIL import Image

    return [Image.open(p).convert("RGB") for p in doc["images"]]


def doc_to_text(
    doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None
) -> str:
    kw = lmms_eval_specific_kwargs or {}
    return f"{kw.get('pre_prompt', '')}{doc['prompt']}{kw.get('post_prompt', '')}"


def doc_to_target(doc: dict[str, Any]) -> str:
    return str(doc["target"])


def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    prediction = results[0] if results else None
    prediction = prediction if prediction is None else str(prediction)
    score = benchmark().reward(_record(doc), prediction)
    item = {"record_json": doc["record_json"], "prediction": prediction}
    return {"score": score, TASK["metric"]: item}


def aggregate_headline(items: list[dict[str, Any]]) -> float:
    records = [_record(i) for i in items]
    return float(benchmark().score(records, [i["prediction"] for i in items]).headline)
'''


def export_lmms_task(
    bench: Benchmark,
    data: str | Path,
    out: str | Path,
    *,
    limit: int | None = None,
    task: str | None = None,
) -> LmmsExport:
    """Write ``bench``'s records under ``data`` as an lmms-eval task folder ``out``.

    Args:
        bench: The benchmark (its options travel with the export).
        data: The benchmark's data folder (as for ``earthvlm eval``).
        out: The task folder to write (created; existing export files are replaced).
        limit: At most this many records.
        task: The task name (default ``earthvlm_<benchmark>``).

    Returns:
        The :class:`LmmsExport`.

    Raises:
        BenchmarkError: If the data is missing, no record is read, or the options cannot
            be written as JSON.
    """
    options = _exportable_options(bench)
    task = task or f"earthvlm_{bench.name}"
    folder = Path(out).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / COMPLETE_FILE).unlink(missing_ok=True)
    image_root = bench.image_root(data).resolve()
    docs = folder / DOCS_FILE
    n = 0
    with docs.open("w", encoding="utf-8") as f:
        for rec in bench.examples(data, limit=limit):
            doc = {
                "doc_id": n,
                "id": rec.id,
                "prompt": _prompt(rec),
                "target": bench.reference(rec),
                "images": [str(image_root / im.path) for im in rec.images],
                "record_json": rec.model_dump_json(),
            }
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            n += 1
    if not n:
        raise BenchmarkError(f"{bench.name}: no records under {data}; nothing to export")
    meta = {
        "benchmark": bench.name,
        "version": bench.version,
        "metric": bench.metric,
        "options": options,
        "task": task,
        "n_docs": n,
        "ledger": bench.ledger.to_dict(),
        "provenance": provenance(packages=()),
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    (folder / UTILS_FILE).write_text(_UTILS, encoding="utf-8")
    yaml_path = folder / f"{task}.yaml"
    text = yaml.dump(task_yaml(bench, task, docs), Dumper=_Dumper, sort_keys=False)
    yaml_path.write_text(text, encoding="utf-8")
    (folder / COMPLETE_FILE).write_text("", encoding="utf-8")
    return LmmsExport(task=task, folder=folder, yaml_path=yaml_path, n_docs=n)


def export_by_name(
    name: str, data: str | Path, out: str | Path, *, limit: int | None = None, **options: Any
) -> LmmsExport:
    """:func:`export_lmms_task` for the benchmark registered as ``name``."""
    return export_lmms_task(build_benchmark(name, **options), data, out, limit=limit)


__all__ = [
    "LmmsExport",
    "export_by_name",
    "export_lmms_task",
    "load_task_yaml",
    "task_yaml",
]
