"""Benchmark (not a test): how long index updates take, as a user sees them (a fresh `rag` process each time).

    python bench/incremental.py [--runs 3] [--seeds seeds]

Measures, on a copy of the seeds folder and a temporary index:
  full build       `rag build --full`: read, chunk and embed every file (includes loading e5)
  no change        `rag build` when nothing changed (target ≤ 2 s: the embedder is not loaded)
  add one article  `rag add FILE`: copy one saved page into the seeds and embed only it (target ≤ 10 s, e5 load included)
  remove it        `rag build` after deleting that file (no embedding, so the embedder is not loaded)
  embedder load    a fresh process importing torch + sentence-transformers and loading e5: the part of
                   "add one article" that is not index work
  add, warm        add_documents() in a process that already holds the embedder, as the chat page's upload does
Prints the median of --runs runs and the per-run times, and the load average: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rag(*args: str) -> float:
    """Run `rag ARGS` in a new process; return its wall-clock seconds."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "rag.cli", *args, "--quiet"], capture_output=True, text=True, env=env, cwd=REPO
    )
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"rag {' '.join(args)} failed:\n{out.stderr}")
    return seconds


LOAD_EMBEDDER = """
import time
started = time.perf_counter()
from rag.config import Settings
from rag.factories import load_embedder
load_embedder(Settings.from_env()).embed_passages(["準備"])
print(time.perf_counter() - started)
"""


def embedder_load() -> float:
    """Seconds a fresh process needs to import the embedding stack and load e5 (Python start-up excluded)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", LOAD_EMBEDDER], capture_output=True, text=True, env=env, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seeds", default=str(REPO / "seeds"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        seeds, index = Path(tmp) / "seeds", Path(tmp) / "index"
        shutil.copytree(args.seeds, seeds)
        where = ["--seeds", str(seeds), "--index", str(index)]
        article = sorted(seeds.iterdir())[0]  # one saved news page (a few articles, ~6 KB)
        times: dict[str, list[float]] = {
            "full build": [], "no change": [], "add one article": [], "remove it": [], "embedder load": [], "add, warm": []
        }
        sys.path.insert(0, str(REPO))
        from rag.config import Settings
        from rag.factories import load_embedder
        from rag.ingest import add_documents

        settings = Settings.from_env().with_overrides(seeds_dir=seeds, index_dir=index)
        embedder = load_embedder(settings)
        for run in range(args.runs):
            times["full build"].append(rag("build", "--full", *where))
            times["no change"].append(rag("build", *where))
            new = Path(tmp) / f"new_article_{run}.txt"
            # A line of its own makes every run's file new to the index.
            new.write_text(article.read_text(encoding="utf-8") + f"\n追加記事の試験 {run} 回目。\n", encoding="utf-8")
            times["add one article"].append(rag("add", str(new), *where))
            (seeds / new.name).unlink()
            times["remove it"].append(rag("build", *where))
            times["embedder load"].append(embedder_load())
            started = time.perf_counter()
            add_documents([new], settings=settings, embedder=embedder)
            times["add, warm"].append(time.perf_counter() - started)
            (seeds / new.name).unlink()
            rag("build", *where)
        files = len(list(seeds.iterdir()))
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"{files} seed files, {args.runs} runs (fresh `rag` process each; seconds); load average {load} on {os.cpu_count()} CPUs")
        for name, values in times.items():
            runs = ", ".join(f"{v:.2f}" for v in values)
            print(f"{name:>16}: median {statistics.median(values):6.2f} s   ({runs})")


if __name__ == "__main__":
    main()
