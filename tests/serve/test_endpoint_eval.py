"""Benchmarks through an endpoint (our server on loopback): the runner's reports equal
the local model's, and lmms-eval's ``openai`` chat model's request format is served.

lmms-eval itself is too heavy to install in CI (torch-video stacks, decord); the test
sends the request its ``openai`` chat model sends (``ChatMessages.to_openai_messages``:
a user turn with each visual as a PNG data URL, then the text; ``model``,
``max_tokens`` from the task's ``max_new_tokens``, ``temperature`` 0) for the docs of an
exported task, and scores the replies with the export's own ``process_results``.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import openai
import pytest
from _serving import NAME
from typer.testing import CliRunner

from earthvlm.cli.main import app
from earthvlm.eval.benchmarks import build_benchmark
from earthvlm.eval.endpoint import EndpointConfig, EndpointModel
from earthvlm.eval.lmms_export import export_lmms_task, load_task_yaml
from earthvlm.eval.runner import Processes, RunConfig, run_benchmark
from earthvlm.models import EarthVLM
from earthvlm.serve import RunningServer
from earthvlm.synth.dataset import SynthConfig, generate_dataset


@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chips")
    generate_dataset(out, SynthConfig(n_scenes=0, n_chips=6, chip_size_px=64, seed=2))
    return out


def predictions(folder: Path) -> dict[str, Any]:
    lines = (folder / "synth_chips" / "predictions.jsonl").read_text().splitlines()
    return {row["id"]: row["prediction"] for row in map(json.loads, lines)}


def test_a_benchmark_through_the_endpoint_equals_the_local_run(
    server: RunningServer, served_model: EarthVLM, chips: Path, tmp_path: Path
) -> None:
    bench = build_benchmark("synth_chips")
    config = RunConfig(batch_size=6, max_new_tokens=8)
    local = run_benchmark(served_model, bench, chips, tmp_path / "local", config, Processes())
    endpoint = EndpointModel(EndpointConfig(server.base_url, NAME, max_workers=6))
    remote = run_benchmark(endpoint, bench, chips, tmp_path / "remote", config, Processes())
    assert remote.n_generated == local.n_generated == 6 and not remote.failures
    assert predictions(tmp_path / "remote") == predictions(tmp_path / "local")
    assert remote.result.headline == local.result.headline
    scores = json.loads((tmp_path / "remote" / "synth_chips" / "scores.json").read_text())
    assert scores["model"]["variant"] == "endpoint"
    assert scores["model"]["checkpoint"] == f"{server.base_url}#{NAME}"
    rows = [
        json.loads(line)
        for shard in (tmp_path / "remote" / "synth_chips" / "shards").glob("*.jsonl")
        for line in shard.read_text().splitlines()
    ]
    assert all(row["gsd"][0][1] == "metadata" for row in rows)  # the records' GSDs were sent
    again = run_benchmark(endpoint, bench, chips, tmp_path / "remote", config, Processes())
    assert (again.n_generated, again.n_cached) == (0, 6)  # resumed from the cache


def test_the_command_and_the_zoom_arm_through_the_endpoint(
    server: RunningServer, chips: Path, tmp_path: Path
) -> None:
    args = [
        "eval",
        "--endpoint",
        server.base_url,
        "--served-model",
        NAME,
        "--bench",
        "synth_chips",
        "--data",
        str(chips),
        "--out",
        str(tmp_path / "cli"),
        "--limit",
        "2",
        "--max-new-tokens",
        "4",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "summary.md").is_file()
    zoomed = CliRunner().invoke(
        app,
        [
            *args[:-6],
            "--out",
            str(tmp_path / "zoom"),
            "--limit",
            "2",
            "--max-new-tokens",
            "4",
            "--endpoint-zoom",
            "1",
        ],
    )
    assert zoomed.exit_code == 0, zoomed.output
    shard = next((tmp_path / "zoom" / "synth_chips" / "shards").glob("*.jsonl"))
    assert all("zooms" in json.loads(line) for line in shard.read_text().splitlines())
    wrong = CliRunner().invoke(
        app, ["eval", "--endpoint", server.base_url, "--bench", "synth_chips", "--data", str(chips)]
    )
    assert wrong.exit_code == 2 and "--served-model" in wrong.output


def test_lmms_eval_openai_requests_are_served_and_scored(
    server: RunningServer, chips: Path, tmp_path: Path
) -> None:
    bench = build_benchmark("synth_chips")
    export = export_lmms_task(bench, chips, tmp_path / "task", limit=3)
    task = load_task_yaml(export.yaml_path)
    spec = importlib.util.spec_from_file_location(
        "earthvlm_lmms_serve_utils", export.folder / "utils.py"
    )
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)
    gen = task["generation_kwargs"]
    docs = [json.loads(line) for line in (export.folder / "docs.jsonl").read_text().splitlines()]
    for doc in docs:
        content: list[dict[str, Any]] = []
        for image in utils.doc_to_visual(doc):  # as ChatMessages.to_openai_messages does
            buf = io.BytesIO()
            image.copy().save(buf, format="PNG")
            url = f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('utf-8')}"
            content.append({"type": "image_url", "image_url": {"url": url}})
        content.append({"type": "text", "text": utils.doc_to_text(doc)})
        payload = {
            "messages": [{"role": "user", "content": content}],
            "model": NAME,
            "max_tokens": min(gen.get("max_new_tokens", 1024), 4096),
            "temperature": gen.get("temperature", 0),
        }
        response = client.chat.completions.create(**payload)
        text = response.choices[0].message.content
        assert isinstance(text, str)
        (image,) = response.model_extra["earthvlm"]["images"]
        assert image["branch"] == "estimate"  # lmms-eval sends no GSD: SSE-U decides
        scored = utils.process_results(doc, [text])
        assert scored["score"] == bench.reward(utils._record(doc), text)
