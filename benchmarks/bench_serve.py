"""``earthvlm serve`` throughput and latency: concurrent mixed-GSD clients against the same
requests sent one at a time, on the same server, in the same run.

Server: a separate process (``OMP_NUM_THREADS=1``) serving a tiny Qwen3-VL with
CS-HLoRA (rank 4, non-zero B: answers depend on the GSD) and SSE-U, batches of up to 8
rows, ``batch_wait_ms`` 5. Requests: a 64 x 64 PNG data URL each, a GSD drawn from
0.1, 0.3, 1, 3, 10 m or none (SSE-U decides), greedy, ``max_tokens`` 16; the official
``openai`` client, one shared client, N threads.

* throughput: 8 concurrent clients / 1 client (requests per second), over the same
  requests, arms interleaved (target >= 3x with the tiny model on a 2-core CPU), and the
  answers must be identical (greedy; batching must not change them);
* latency p50 / p95 per request at 1, 4, 8 and 16 clients.

Usage::

    .venv/bin/python benchmarks/bench_serve.py [--requests 32] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

NAME = "tiny-cs"
GSDS = (0.1, 0.3, 1.0, 3.0, 10.0, None)


def serve(port: int) -> None:
    """The server process: the tiny CS-HLoRA model on 127.0.0.1:port."""
    import torch

    from earthvlm.models import EarthVLM, ModelRecipe
    from earthvlm.models.recipe import AdapterConfig
    from earthvlm.serve import ServeConfig, create_app, run

    recipe = ModelRecipe(stage=2, adapter=AdapterConfig(kind="cshlora", r=4, sseu=True))
    model = EarthVLM.build(recipe, name=NAME)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "cshlora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    config = ServeConfig(model_name=NAME, port=port, max_concurrent=64, max_batch_size=8)
    run(create_app(model, config), "127.0.0.1", port, log_level="warning")


def requests(n: int, max_tokens: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        part: dict[str, Any] = {
            "type": "image_url",
            "image_url": {
                "url": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
            },
        }
        if GSDS[i % len(GSDS)] is not None:
            part["gsd_m"] = GSDS[i % len(GSDS)]
        text = {"type": "text", "text": f"Question {i}: what is in this image?"}
        out.append(
            {
                "model": NAME,
                "messages": [{"role": "user", "content": [part, text]}],
                "max_tokens": max_tokens,
                "temperature": 0,
            }
        )
    return out


def run_arm(client: Any, bodies: list[dict[str, Any]], clients: int) -> tuple[float, list, list]:
    """Send every body with ``clients`` threads: (wall seconds, answers, latencies)."""

    def one(body: dict[str, Any]) -> tuple[str, float]:
        t0 = time.perf_counter()
        reply = client.chat.completions.create(**body)
        return reply.choices[0].message.content, time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, bodies))
    wall = time.perf_counter() - t0
    return wall, [r[0] for r in results], [r[1] for r in results]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="8 requests, 1 repeat, 1 and 8 clients")
    ap.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    if args.quick:
        args.requests, args.repeats, args.max_tokens = 8, 1, 8
    levels = (1, 8) if args.quick else (1, 4, 8, 16)
    import openai

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=env)
    try:
        t0 = time.monotonic()
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() - t0 > 120:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=300
        )
        bodies = requests(args.requests, args.max_tokens)
        run_arm(client, bodies[:4], 4)  # warm-up
        walls: dict[int, list[float]] = {c: [] for c in levels}
        lats: dict[int, list[float]] = {c: [] for c in levels}
        answers: dict[int, list[str]] = {}
        for rep in range(args.repeats):
            order = levels if rep % 2 == 0 else tuple(reversed(levels))  # interleaved arms
            for c in order:
                wall, texts, lat = run_arm(client, bodies, c)
                walls[c].append(wall)
                lats[c].extend(lat)
                if c in answers and answers[c] != texts:
                    raise SystemExit(f"{c} clients: answers changed between repeats")
                answers[c] = texts
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health") as r:
            health = r.read().decode()
    finally:
        proc.terminate()
        proc.wait(30)
    same = all(answers[c] == answers[1] for c in levels)
    print(
        f"{args.requests} requests x {args.repeats} repeats, max_tokens {args.max_tokens}, "
        f"GSDs {GSDS} in turn; identical answers at every concurrency: {same}"
    )
    print("| clients | req/s (median) | x vs 1 client | p50 ms | p95 ms |")
    print("|---|---|---|---|---|")
    base = args.requests / statistics.median(walls[1])
    for c in levels:
        rps = args.requests / statistics.median(walls[c])
        print(
            f"| {c} | {rps:.1f} | {rps / base:.2f}x | {pct(lats[c], 50):.0f} | "
            f"{pct(lats[c], 95):.0f} |"
        )
    print(f"server: {health}")
    if not same:
        raise SystemExit("answers differ between concurrency levels")


if __name__ == "__main__":
    main()
