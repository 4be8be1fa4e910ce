"""One tiny scale-conditioned model and one server on a free loopback port for the
session (the server and endpoint-evaluation tests share them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from _serving import NAME, tiny_cshlora

from earthvlm.models import EarthVLM
from earthvlm.serve import RunningServer, ServeConfig, create_app, serve_in_thread


@pytest.fixture(scope="session")
def served_model() -> EarthVLM:
    return tiny_cshlora()


@pytest.fixture(scope="session")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("image_root")


@pytest.fixture(scope="session")
def server(served_model: EarthVLM, image_root: Path) -> Iterator[RunningServer]:
    config = ServeConfig(
        model_name=NAME,
        image_root=image_root,
        zoom=True,
        max_body_bytes=2 * 1024 * 1024,
        max_image_pixels=512 * 512,
        max_request_pixels=600 * 600,
        max_tokens=64,
        default_max_tokens=8,
        batch_wait_ms=20.0,
    )
    with serve_in_thread(create_app(served_model, config)) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=60)
