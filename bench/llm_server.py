"""Benchmark (not a test): the embedded model against `python -m llama_cpp.server` on the same GGUF.

    python bench/llm_server.py [--limit 10] [--index index]

Starts llama-cpp-python's server on a free port with the embedded model's context, batch and
threads, asks the seed questions (eval/seed_qa.jsonl, first turns only) through both backends,
and prints per question whether the answer text and citations are identical, then how many
were, and the median seconds per answer of each. The machine is shared: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.config import Settings
from rag.factories import load_generator, load_pipeline
from rag.models import resolve_llm_path
from rag.pipeline import RagPipeline

REPO = Path(__file__).resolve().parent.parent


def start_server(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    """llama_cpp.server on the settings' GGUF, configured like LlamaCppGenerator."""
    gguf = resolve_llm_path(models_dir=settings.models_dir, llm_name=settings.llm_name, llm_path=settings.llm_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", str(settings.n_ctx), "--n_batch", "512", "--n_threads", str(settings.n_threads),
         "--n_threads_batch", str(multiprocessing.cpu_count())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5):
                return proc
        except OSError:
            time.sleep(1)
    proc.kill()
    raise SystemExit("llama_cpp.server did not start within 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--index", default=None)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    settings = Settings.from_env().with_overrides(index_dir=args.index)
    questions = []
    for line in (REPO / "eval" / "seed_qa.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line) if line.strip() else {}
        if item and not item.get("history"):
            questions.append(item["question"])
    questions = questions[: args.limit]

    local = load_pipeline(settings=settings)
    proc = start_server(settings, args.port)
    try:
        remote_settings = settings.with_overrides(llm_url=f"http://127.0.0.1:{args.port}/v1")
        remote = RagPipeline(local.retriever, load_generator(remote_settings), settings=remote_settings)
        same, seconds_local, seconds_remote = 0, [], []
        for question in questions:
            a, b = local.ask(question), remote.ask(question)
            cites = [(c.n, c.source) for c in a.citations] == [(c.n, c.source) for c in b.citations]
            match = a.raw_text == b.raw_text and a.text == b.text and cites
            same += match
            seconds_local.append(a.seconds_total)
            seconds_remote.append(b.seconds_total)
            print(f"{'same' if match else 'DIFF'}  {question}\n  embedded: {a.raw_text!r}\n  server:   {b.raw_text!r}")
        print(f"\n{same}/{len(questions)} identical (text and citations)")
        print(
            f"seconds per answer, median: embedded {statistics.median(seconds_local):.1f}, "
            f"server {statistics.median(seconds_remote):.1f}"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
