"""The chat client against a real HTTP server on loopback, scripted per test.

Each test starts a :class:`FakeChatServer` (``http.server`` on 127.0.0.1, an ephemeral
port) and plays a model that behaves, rate-limits, fails, hangs or sends garbage; the
assertions read what the server received as well as what the client returned.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from earthvlm.errors import EarthVLMError
from earthvlm.teacher import (
    ChatClient,
    ChatResponseError,
    ClientConfig,
    ResponseCache,
    backoff_delay_s,
    parse_chat_completion,
    parse_retry_after,
    request_key,
)
from earthvlm.teacher.fake_server import ChatCall, FakeChatServer, Reply, completion


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def make_client(
    server: FakeChatServer, cache: Path | None = None, sleep: Any = None, **overrides: Any
) -> ChatClient:
    """A client with test-sized waits: backoff in milliseconds, a 2 s timeout."""
    fields: dict[str, Any] = {
        "base_url": server.url,
        "model": "judge-model",
        "api_key_env": None,
        "timeout_s": 2.0,
        "max_retries": 3,
        "backoff_base_s": 0.005,
        "backoff_max_s": 0.05,
        "jitter": 0.0,
        "max_workers": 4,
        "cache_dir": cache,
        "seed": 0,
    }
    fields.update(overrides)
    return ChatClient(ClientConfig(**fields), **({"sleep": sleep} if sleep else {}))


def counts(batch: Any) -> dict[str, Any]:
    d = batch.ledger.to_dict()
    return {"read": d["read"], "ok": d["ok"], "failed": d["failed"]}


# -- behaving server ---------------------------------------------------------------------


def test_replies_come_back_in_request_order_with_the_openai_request_shape() -> None:
    with FakeChatServer() as server:
        batch = make_client(server).chat_many([user("a"), user("b"), user("c")])
        calls = server.calls
    assert batch.texts == ["a", "b", "c"]
    assert [r.status for r in batch.results] == ["ok"] * 3
    assert counts(batch) == {"read": 3, "ok": 3, "failed": {}}
    assert batch.ledger.balanced
    assert {c.path for c in calls} == {"/v1/chat/completions"}
    body = calls[0].json
    assert body["model"] == "judge-model"
    assert body["temperature"] == 0.0 and body["max_tokens"] == 1024
    assert body["messages"][0]["role"] == "user"
    assert calls[0].headers["content-type"] == "application/json"
    assert "authorization" not in calls[0].headers  # api_key_env=None
    assert batch.results[0].usage == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
    }


def test_the_bearer_key_comes_from_the_named_variable_and_is_stored_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EARTHVLM_TEST_KEY", "sk-secret-123")
    with FakeChatServer() as server:
        client = make_client(server, tmp_path, api_key_env="EARTHVLM_TEST_KEY")
        assert client.chat(user("hi")).ok
        assert server.calls[0].headers["authorization"] == "Bearer sk-secret-123"
    stored = "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    assert stored and "sk-secret" not in stored
    assert "sk-secret" not in repr(client) and "sk-secret" not in repr(client.config)


def test_a_missing_key_variable_is_an_error_that_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EARTHVLM_NO_SUCH_KEY", raising=False)
    config = ClientConfig("http://127.0.0.1:9/v1", "m", api_key_env="EARTHVLM_NO_SUCH_KEY")
    with pytest.raises(EarthVLMError, match=r"EARTHVLM_NO_SUCH_KEY.*api_key_env=None"):
        ChatClient(config)


def test_a_key_with_control_characters_is_refused_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EARTHVLM_TEST_KEY", "sk-abc\r\nX-Injected: 1")
    config = ClientConfig("http://127.0.0.1:9/v1", "m", api_key_env="EARTHVLM_TEST_KEY")
    with pytest.raises(EarthVLMError, match="control characters"):
        ChatClient(config)


def test_identical_requests_in_a_batch_are_sent_once() -> None:
    with FakeChatServer() as server:
        batch = make_client(server).chat_many([user("same"), user("other"), user("same")])
        assert server.n_calls == 2
    assert [r.status for r in batch.results] == ["ok", "ok", "cached"]
    assert batch.texts == ["same", "other", "same"]
    assert batch.n_http_requests == 2 and counts(batch)["ok"] == 3


def test_the_pool_bounds_requests_in_flight_and_order_does_not_follow_completion() -> None:
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def script(call: ChatCall) -> Reply:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        n = int(call.last_user_text)
        time.sleep(0.05 * (6 - n))  # later requests finish first
        with lock:
            state["now"] -= 1
        return Reply(body=completion(f"answer {n}"))

    with FakeChatServer(script) as server:
        batch = make_client(server, max_workers=2).chat_many([user(str(i)) for i in range(6)])
    assert batch.texts == [f"answer {i}" for i in range(6)]
    assert state["peak"] == 2


# -- the cache -------------------------------------------------------------------------------


def test_a_rerun_is_served_from_the_cache_even_from_another_endpoint(tmp_path: Path) -> None:
    requests = [user(f"q{i}") for i in range(5)]
    with FakeChatServer() as first:
        batch1 = make_client(first, tmp_path).chat_many(requests)
        assert first.n_calls == 5
    assert len(ResponseCache(tmp_path)) == 5
    with FakeChatServer() as second:  # another port: the key ignores the endpoint
        batch2 = make_client(second, tmp_path).chat_many(requests)
        assert second.n_calls == 0
    assert batch2.texts == batch1.texts
    assert batch2.n_cached == 5 and batch2.n_http_requests == 0
    assert counts(batch2) == {"read": 5, "ok": 5, "failed": {}}
    assert [r.key for r in batch2.results] == [r.key for r in batch1.results]


def test_a_rerun_after_failures_sends_only_what_failed(tmp_path: Path) -> None:
    def flaky(call: ChatCall) -> Reply:
        if call.last_user_text in ("q1", "q3"):
            return Reply(400, {"error": {"message": "bad request"}})
        return Reply(body=completion(call.last_user_text.upper()))

    requests = [user(f"q{i}") for i in range(5)]
    with FakeChatServer(flaky) as server:
        batch = make_client(server, tmp_path).chat_many(requests)
    assert counts(batch) == {"read": 5, "ok": 3, "failed": {"http_4xx": 2}}
    assert batch.results[1].detail.startswith("HTTP 400")
    with FakeChatServer() as healthy:
        rerun = make_client(healthy, tmp_path).chat_many(requests)
        sent = sorted(c.last_user_text for c in healthy.calls)
    assert sent == ["q1", "q3"]
    assert [r.status for r in rerun.results] == ["cached", "ok", "cached", "ok", "cached"]
    assert rerun.texts == ["Q0", "q1", "Q2", "q3", "Q4"]


def test_other_parameters_are_other_keys(tmp_path: Path) -> None:
    with FakeChatServer() as server:
        make_client(server, tmp_path).chat(user("x"))
        make_client(server, tmp_path, temperature=0.7).chat(user("x"))
        make_client(server, tmp_path, extra_body={"seed": 1}).chat(user("x"))
        make_client(server, tmp_path, model="other").chat(user("x"))
        assert server.n_calls == 4


def test_a_corrupt_cache_entry_is_counted_and_replaced(tmp_path: Path) -> None:
    with FakeChatServer() as server:
        client = make_client(server, tmp_path)
        key = client.chat(user("x")).key
        path = ResponseCache(tmp_path).path(key)
        path.write_bytes(b'{"format": "earthvlm.chat-cache/1", "key": ')  # torn by hand
        again = make_client(server, tmp_path).chat_many([user("x")])
        assert server.n_calls == 2
    assert again.cache_problems == {"corrupt entry": 1}
    assert again.results[0].status == "ok"
    assert json.loads(path.read_text())["response"]["text"] == "x"


# -- misbehaving server --------------------------------------------------------------------


def test_429_with_retry_after_is_retried_after_the_asked_delay() -> None:
    lock = threading.Lock()
    seen: dict[str, int] = {}

    def limited(call: ChatCall) -> Reply:
        with lock:
            seen[call.last_user_text] = seen.get(call.last_user_text, 0) + 1
            first = seen[call.last_user_text] == 1
        if first:
            return Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "1"})
        return Reply(body=completion("fine"))

    sleeps: list[float] = []
    with FakeChatServer(limited) as server:
        batch = make_client(server, sleep=sleeps.append, backoff_max_s=5).chat_many(
            [user("a"), user("b")]
        )
        assert server.n_calls == 4
    assert batch.texts == ["fine", "fine"]
    assert sleeps == [1.0, 1.0]
    assert batch.retries == {"http_429": 2}
    assert [r.attempts for r in batch.results] == [2, 2]
    assert counts(batch) == {"read": 2, "ok": 2, "failed": {}}


def test_retry_after_ms_is_really_waited_and_a_huge_retry_after_is_capped() -> None:
    script_calls: list[float] = []

    def limited(call: ChatCall) -> Reply:
        script_calls.append(time.monotonic())
        if call.index == 0:
            return Reply(429, headers={"retry-after-ms": "150"})
        return Reply(body=completion("ok"))

    with FakeChatServer(limited) as server:
        assert make_client(server, backoff_max_s=1.0).chat(user("x")).ok
    assert script_calls[1] - script_calls[0] >= 0.14

    sleeps: list[float] = []
    with FakeChatServer(lambda c: Reply(429, headers={"Retry-After": "86400"})) as server:
        result = make_client(server, sleep=sleeps.append, max_retries=2).chat(user("x"))
    assert sleeps == [0.05, 0.05]  # backoff_max_s, not a day
    assert result.reason == "http_429_exhausted" and result.attempts == 3


def test_5xx_is_retried_with_exponential_backoff_until_exhausted() -> None:
    sleeps: list[float] = []
    with FakeChatServer(lambda c: Reply(503, "upstream overloaded")) as server:
        result = make_client(server, sleep=sleeps.append, backoff_max_s=1.0).chat(user("x"))
        assert server.n_calls == 4  # 1 + max_retries
    assert not result.ok and result.status == "failed"
    assert result.reason == "http_5xx_exhausted"
    assert result.retries == ("http_503",) * 3
    assert result.detail == "HTTP 503: upstream overloaded"
    assert sleeps == pytest.approx([0.005, 0.01, 0.02])


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_are_not_retried(status: int) -> None:
    with FakeChatServer(lambda c: Reply(status, {"error": {"message": "no"}})) as server:
        result = make_client(server).chat(user("x"))
        assert server.n_calls == 1
    assert result.reason == "http_4xx" and result.retries == ()


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_is_refused_so_the_key_cannot_follow_it(
    status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EARTHVLM_TEST_KEY", "sk-secret")
    with FakeChatServer() as target:
        elsewhere = target.url + "/chat/completions"
        script = lambda c: Reply(status, headers={"Location": elsewhere})  # noqa: E731
        with FakeChatServer(script) as server:
            client = make_client(server, api_key_env="EARTHVLM_TEST_KEY")
            result = client.chat(user("x"))
            assert server.n_calls == 1
        assert target.n_calls == 0
    assert result.reason == "http_3xx" and "refused" in result.detail


def test_a_reply_slower_than_the_timeout_is_retried_then_counted() -> None:
    with FakeChatServer(lambda c: Reply(body=completion("late"), delay_s=3.0)) as server:
        start = time.monotonic()
        result = make_client(server, timeout_s=0.25, max_retries=1).chat(user("x"))
        elapsed = time.monotonic() - start
        assert server.n_calls == 2
    assert result.reason == "timeout" and result.retries == ("timeout",)
    assert elapsed < 2.0


def test_an_unreachable_server_is_a_connection_failure() -> None:
    with FakeChatServer() as server:
        url = server.url
    config = ClientConfig(url, "m", api_key_env=None, max_retries=2, backoff_base_s=0.001)
    result = ChatClient(config).chat(user("x"))
    assert result.reason == "connection" and result.retries == ("connection", "connection")


@pytest.mark.parametrize("content_length", [True, False])
def test_a_huge_body_is_cut_off_and_counted(content_length: bool) -> None:
    huge = json.dumps(completion("x" * 300_000))
    script = lambda c: Reply(body=huge, content_length=content_length)  # noqa: E731
    with FakeChatServer(script) as server:
        result = make_client(server, max_body_bytes=64 * 1024).chat(user("x"))
        assert server.n_calls == 1
    assert result.reason == "body_too_large"


BAD_BODIES: dict[str, tuple[Any, str]] = {
    "not json": ("{'choices': oops", "bad_json"),
    "not utf-8": (b'{"choices": "\xff\xfe"}', "not_utf8"),
    "a list": ([1, 2, 3], "bad_shape"),
    "no choices": ({"id": "x"}, "bad_shape"),
    "empty choices": ({"choices": []}, "empty_choice"),
    "choice not an object": ({"choices": ["text"]}, "bad_shape"),
    "no message": ({"choices": [{"text": "legacy"}]}, "bad_shape"),
    "null content": (completion(None), "empty_choice"),
    "blank content": (completion("  \n"), "empty_choice"),
    "content a list": (completion([{"type": "text", "text": "hi"}]), "bad_shape"),  # type: ignore
    "truncated": (completion("Score: 4 because", finish_reason="length"), "truncated"),
    "refusal": (completion(None, refusal="I can't help"), "refusal"),
    "content filter": (completion("", finish_reason="content_filter"), "refusal"),
    "error object": ({"error": {"message": "model overloaded"}}, "api_error"),
    "deep nesting": ("[" * 100_000 + "]" * 100_000, "bad_json"),
    "huge integer": ('{"choices": ' + "9" * 5000 + "}", "bad_json"),
    "lone surrogate": (json.dumps(completion("a \ud800 b")), "not_utf8"),
}


def test_bad_bodies_fail_with_reasons_and_never_stop_the_batch(tmp_path: Path) -> None:
    def script(call: ChatCall) -> Reply:
        name = call.last_user_text
        if name in BAD_BODIES:
            return Reply(body=BAD_BODIES[name][0])
        return Reply(body=completion(f"good {name}"))

    names = ["fine 1", *BAD_BODIES, "fine 2"]
    with FakeChatServer(script) as server:
        batch = make_client(server, tmp_path).chat_many([user(n) for n in names])
        assert server.n_calls == len(names)  # nothing retried: garbage stays garbage
    expected: dict[str, int] = {}
    for _, reason in BAD_BODIES.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert counts(batch) == {"read": len(names), "ok": 2, "failed": expected}
    assert batch.ledger.balanced
    assert batch.texts[0] == "good fine 1" and batch.texts[-1] == "good fine 2"
    got = {n: r.reason for n, r in zip(names, batch.results, strict=True)}
    assert got == {"fine 1": None, **{n: r for n, (_, r) in BAD_BODIES.items()}, "fine 2": None}
    assert len(ResponseCache(tmp_path)) == 2  # failures are not cached


def test_a_script_error_surfaces_when_the_server_stops() -> None:
    def broken(call: ChatCall) -> Reply:
        raise KeyError("oops")

    server = FakeChatServer(broken).start()
    result = make_client(server, max_retries=0).chat(user("x"))
    assert result.reason == "http_5xx_exhausted" and "script failed" in result.detail
    with pytest.raises(RuntimeError, match="script failed"):
        server.stop()


# -- pure parts ----------------------------------------------------------------------------


def test_parse_chat_completion_reads_text_finish_reason_and_usage() -> None:
    body = json.dumps(completion("Score: 4")).encode()
    assert parse_chat_completion(body) == {
        "text": "Score: 4",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    with pytest.raises(ChatResponseError) as info:
        parse_chat_completion(b"\x80")
    assert info.value.reason == "not_utf8" and info.value.retry_as is None


def test_backoff_doubles_caps_and_jitters_reproducibly() -> None:
    kw: dict[str, Any] = {"base_s": 0.5, "max_s": 4.0}
    plain = [backoff_delay_s(r, jitter=0.0, rng=random.Random(0), **kw) for r in range(6)]
    assert plain == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    a = [backoff_delay_s(r, jitter=0.25, rng=random.Random(7), **kw) for r in range(50)]
    b = [backoff_delay_s(r, jitter=0.25, rng=random.Random(7), **kw) for r in range(50)]
    assert a == b
    assert all(0.75 * min(0.5 * 2**r, 4.0) <= d <= min(0.5 * 2**r, 4.0) for r, d in enumerate(a))
    assert backoff_delay_s(10_000, jitter=0.0, rng=random.Random(0), **kw) == 4.0
    assert backoff_delay_s(0, jitter=0.0, rng=random.Random(0), retry_after_s=99, **kw) == 4.0
    assert backoff_delay_s(0, jitter=0.0, rng=random.Random(0), retry_after_s=1.5, **kw) == 1.5


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past
        ({"retry-after": "-4"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "x"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_request_key_ignores_dict_order_and_covers_every_parameter() -> None:
    a = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0.0}
    b = {"temperature": 0.0, "messages": [{"content": "x", "role": "user"}], "model": "m"}
    assert request_key(a) == request_key(b)
    assert request_key(a) != request_key({**a, "temperature": 0.1})
    assert len(request_key(a)) == 64


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"base_url": "ftp://host/v1"}, "base_url must be an http"),
        ({"base_url": "http://host/v1/chat/completions"}, "drop '/chat/completions'"),
        ({"model": ""}, "model"),
        ({"temperature": -1.0}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"max_retries": -1}, "max_retries"),
        ({"backoff_base_s": 5.0, "backoff_max_s": 1.0}, "backoff_base_s"),
        ({"jitter": 2.0}, "jitter"),
        ({"extra_body": {"model": "x"}}, "extra_body"),
        ({"api_key_env": ""}, "api_key_env"),
    ],
)
def test_config_errors_name_the_field(fields: dict[str, Any], fragment: str) -> None:
    base: dict[str, Any] = {"base_url": "http://localhost:8000/v1", "model": "m"}
    with pytest.raises(ValueError, match=fragment):
        ClientConfig(**{**base, **fields})


@pytest.mark.parametrize(
    "messages",
    [
        [],
        "hello",
        [{"content": "no role"}],
        [{"role": "wizard", "content": "x"}],
        [{"role": "user"}],
    ],
)
def test_malformed_requests_are_refused_before_anything_is_sent(messages: Any) -> None:
    with FakeChatServer() as server:
        with pytest.raises(ValueError, match=r"requests\[1\]"):
            make_client(server).chat_many([user("fine"), messages])
        assert server.n_calls == 0
