"""A chat client for tests against a loopback server: one retry, millisecond backoff, a
seeded jitter, the response cache in ``cache`` (shared by the judge and benchmark tests)."""

from __future__ import annotations

from pathlib import Path

from earthvlm.teacher import ChatClient, ClientConfig


def fast_client(url: str, cache: Path | None) -> ChatClient:
    """A client for the server at ``url`` (model name ``judge``, no key)."""
    return ChatClient(
        ClientConfig(
            url,
            "judge",
            api_key_env=None,
            max_tokens=64,
            max_retries=1,
            backoff_base_s=0.001,
            backoff_max_s=0.01,
            cache_dir=cache,
            seed=0,
        )
    )
