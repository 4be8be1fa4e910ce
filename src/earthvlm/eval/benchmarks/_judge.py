"""The LLM judge a benchmark asks, given as a client or as plain options.

Benchmarks that need a judge (``earthmind`` for its open-ended tasks, ``vrsbench_vqa`` for
the pairs its rule leaves open) take either a ready
:class:`~earthvlm.teacher.client.ChatClient` (``judge``) or plain, JSON-ready options that
a config file or the command line can carry: ``judge_url`` (the API root of any
OpenAI-compatible server), ``judge_model``, ``judge_cache`` (a response-cache folder, so
a rerun sends nothing) and ``judge_key_env`` (the environment variable holding the key).
Judges are asked at temperature 0.
"""

from __future__ import annotations

from earthvlm.teacher.client import ChatClient, ClientConfig


def judge_client(
    judge: ChatClient | None,
    url: str | None,
    model: str | None,
    cache: str | None,
    key_env: str | None,
) -> ChatClient | None:
    """The judge's client: ``judge`` if given, else one built from the options, else None.

    Raises:
        ValueError: If both a client and a URL are given, or a URL without a model.
    """
    if judge is not None:
        if url is not None:
            raise ValueError("judge and judge_url are both given; pass one of them")
        return judge
    if url is None:
        if model is not None or cache is not None:
            raise ValueError("judge_model / judge_cache need judge_url (the judge's API root)")
        return None
    if not model:
        raise ValueError(f"judge_url={url!r} needs judge_model, the model name to ask")
    return ChatClient(
        ClientConfig(url, model, api_key_env=key_env, temperature=0.0, cache_dir=cache)
    )


__all__ = ["judge_client"]
