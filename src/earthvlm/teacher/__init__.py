"""Teacher and judge LLMs behind any OpenAI-compatible endpoint (standard library, no torch).

* :mod:`.client`: :class:`ChatClient`: retries with backoff, a response cache, a bounded
  thread pool and a ledger of every request; replies from an untrusted server are
  checked and failures counted by reason, never raised mid-batch.
* :mod:`.responses`: reading a (possibly hostile) completion body and ``Retry-After``;
  the backoff schedule.
* :mod:`.cache`: :class:`ResponseCache`: one JSON file per request, keyed by the request
  content, so a rerun resumes where the last run stopped.
* :mod:`.fake_server`: :class:`FakeChatServer`: a scripted local server for tests and
  offline runs.

The pipelines that generate and judge data build on these (the judge lives in
:mod:`earthvlm.eval.judge`).
"""

from earthvlm.teacher.cache import ResponseCache, request_key
from earthvlm.teacher.client import ChatBatch, ChatClient, ChatResult, ClientConfig
from earthvlm.teacher.responses import (
    ChatResponseError,
    backoff_delay_s,
    parse_chat_completion,
    parse_retry_after,
)

__all__ = [
    "ChatBatch",
    "ChatClient",
    "ChatResponseError",
    "ChatResult",
    "ClientConfig",
    "ResponseCache",
    "backoff_delay_s",
    "parse_chat_completion",
    "parse_retry_after",
    "request_key",
]
