"""Load benchmark for `rag serve`'s OpenAI-compatible API: throughput and p50/p95 latency for 1, 5, 20 users.

    python bench/load.py                          # starts `rag serve` on a free port (index/, models/)
    python bench/load.py --url http://127.0.0.1:7860 --users 1 5 20 --requests 2

Each simulated user sends its questions one after another (the chat page's examples, in turn),
all users at once. Latency is measured from sending the request to the whole answer; the model
answers one question at a time, so with N users a question waits for up to N-1 others.
Prints a table; nothing is asserted (numbers go to bench/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rag.webapp import EXAMPLES  # noqa: E402


@contextlib.contextmanager
def started_server(port: int, env: dict[str, str]) -> Iterator[str]:
    """`rag serve` in a child process; yields its URL once /healthz answers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], cwd=REPO, env={**os.environ, **env}
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"rag serve exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def one_request(url: str, question: str, max_tokens: int | None, headers: dict[str, str]) -> tuple[float, int]:
    body: dict[str, object] = {"model": "kiji-qa", "messages": [{"role": "user", "content": question}]}
    if max_tokens:
        body["max_tokens"] = max_tokens
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=1800)
    return time.perf_counter() - t0, r.status_code


def run_level(url: str, users: int, requests: int, max_tokens: int | None, headers: dict[str, str]) -> dict[str, float]:
    """All users at once, each sending `requests` questions in a row."""
    barrier = threading.Barrier(users)

    def user(u: int) -> list[tuple[float, int]]:
        barrier.wait()
        return [
            one_request(url, EXAMPLES[(u + i) % len(EXAMPLES)], max_tokens, headers) for i in range(requests)
        ]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        results = [r for rs in pool.map(user, range(users)) for r in rs]
    wall = time.perf_counter() - t0
    ok = [s for s, status in results if status == 200]
    return {
        "users": users,
        "requests": len(results),
        "ok": len(ok),
        "busy": sum(status == 503 for _, status in results),
        "wall": wall,
        "per_min": 60 * len(ok) / wall,
        "p50": float(np.percentile(ok, 50)) if ok else float("nan"),
        "p95": float(np.percentile(ok, 95)) if ok else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running `rag serve` (default: start one)")
    parser.add_argument("--users", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--requests", type=int, default=1, help="questions per user (one after another)")
    parser.add_argument("--max-tokens", type=int, default=None, help="cap answers (default: the server's)")
    parser.add_argument("--port", type=int, default=7899)
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {os.environ['RAG_API_KEY']}"} if os.environ.get("RAG_API_KEY") else {}

    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(started_server(args.port, {}))
        one_request(url, EXAMPLES[0], args.max_tokens, headers)  # warm-up: first-call costs are not load
        print(f"{'users':>5} {'requests':>8} {'ok':>4} {'503':>4} {'answers/min':>11} {'p50 s':>7} {'p95 s':>7}", flush=True)
        for users in args.users:  # each row as soon as it is measured: the 20-user level takes minutes
            r = run_level(url, users, args.requests, args.max_tokens, headers)
            print(
                f"{r['users']:>5} {r['requests']:>8} {r['ok']:>4} {r['busy']:>4} {r['per_min']:>11.1f} "
                f"{r['p50']:>7.1f} {r['p95']:>7.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
