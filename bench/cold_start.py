"""Benchmark (not a test): what a person waits for from a cold process, per embedding runtime.

    python bench/cold_start.py [--runs 3] [--runtimes torch onnx] [--question Q]
    python bench/cold_start.py --checkouts BEFORE AFTER [--runs 3]   (two checkouts of this project)

For each variant, an embedding runtime (RAG_EMBED_RUNTIME) or a checkout (its own code, the default
runtime), a copy of seeds/ is indexed once in a temporary folder with its own RAG_CACHE_DIR, then,
variants taking turns in every run so all see the same machine load (a checkout that keeps the
LLM's evaluated instruction in the cache saves it in run 1 and loads it from run 2 on):

  ask      `rag ask Q -v` in a fresh process: wall time, the answer's own first-word time (the
           pipeline's, from -v), wall minus the whole answer's own time (what the cold process
           adds: imports, loading, retrieval, exit) and the process's peak RSS (wait4's
           ru_maxrss, in MiB). The target: wall <= first word + 3 s, peak RSS <= 1.5 GB.
  add      `rag add FILE` of one new article (a seed page with a serial number, so each run adds
           a new file) in a fresh process: wall time. Target <= 10 s.
  serve    `rag serve` in a fresh process until /healthz answers: the page's start-up time.

Prints medians and each runtime's ratio to the first. The machine is shared: compare within a run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RAG = [sys.executable, "-m", "rag.cli"]
QUESTION = "ロシア軍がクルスク州で奪還を目指している要衝の町はどこですか?"


def run(cmd: list[str], env: dict[str, str]) -> None:
    """Run one command to the end (a build), stopping the bench if it fails."""
    proc = subprocess.run(cmd, env=env, cwd=env["PYTHONPATH"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")


def run_rss(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stderr) of one fresh process, measured by wait4."""
    with tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=env["PYTHONPATH"], stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{text[-2000:]}")
    return wall, usage.ru_maxrss / 1024, text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_start(index: Path, seeds: Path, env: dict[str, str]) -> float:
    """Seconds from starting `rag serve` until /healthz answers."""
    port = free_port()
    cmd = [*RAG, "serve", "--index", str(index), "--seeds", str(seeds), "--port", str(port)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=env["PYTHONPATH"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit("rag serve exited before it answered")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--checkouts", nargs="+", type=Path, help="compare these checkouts (default runtime) instead")
    parser.add_argument("--models-dirs", nargs="+", type=Path, help="RAG_MODELS_DIR of each checkout (prepared by it)")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--seeds", type=Path, default=REPO / "seeds")
    args = parser.parse_args()
    article = sorted(p for p in args.seeds.iterdir() if p.suffix == ".txt")[0].read_text(encoding="utf-8")
    if args.checkouts:  # label -> (code, extra environment)
        models = args.models_dirs or [None] * len(args.checkouts)
        variants = {
            f"{i}:{c.resolve().name}": (c.resolve(), {"RAG_MODELS_DIR": str(m.resolve())} if m else {})
            for i, (c, m) in enumerate(zip(args.checkouts, models, strict=True))
        }
    else:
        variants = {r: (REPO, {"RAG_EMBED_RUNTIME": r}) for r in args.runtimes}
    labels = list(variants)
    results: dict[str, dict[str, list[float]]] = {r: {} for r in labels}
    with tempfile.TemporaryDirectory() as tmp:
        envs, where = {}, {}
        for i, (label, (code, extra)) in enumerate(variants.items()):
            env = {**os.environ, **extra, "PYTHONPATH": str(code), "RAG_CACHE_DIR": str(Path(tmp) / f"cache{i}")}
            seeds, index = Path(tmp) / f"v{i}" / "seeds", Path(tmp) / f"v{i}" / "index"
            shutil.copytree(args.seeds, seeds)
            run([*RAG, "build", "--seeds", str(seeds), "--index", str(index), "--quiet"], env)
            envs[label], where[label] = env, (seeds, index)
        print(f"variants {labels}, {args.runs} runs, load average {os.getloadavg()[0]:.1f}", flush=True)
        for n in range(args.runs):
            for runtime in labels:
                env, (seeds, index) = envs[runtime], where[runtime]
                got = results[runtime]
                wall, rss, err = run_rss([*RAG, "ask", args.question, "--index", str(index), "-v"], env)
                first = float(re.search(r"first token ([\d.]+) s", err).group(1))
                got.setdefault("ask wall s", []).append(wall)
                got.setdefault("ask first word s", []).append(first)
                got.setdefault("ask wall - first word s", []).append(wall - first)
                # What a cold process adds to the answer itself (imports, loading, retrieval, exit).
                whole = float(re.search(r"total ([\d.]+) s", err).group(1))
                got.setdefault("ask wall - whole answer s", []).append(wall - whole)
                got.setdefault("ask peak RSS MB", []).append(rss)
                new = Path(tmp) / f"added-{labels.index(runtime)}-{n}.txt"
                new.write_text(f"追加記事 {n}\n{article}\n通し番号 {runtime}-{n}。\n", encoding="utf-8")
                wall, rss, _ = run_rss([*RAG, "add", str(new), "--seeds", str(seeds), "--index", str(index), "--quiet"], env)
                got.setdefault("add wall s", []).append(wall)
                got.setdefault("add peak RSS MB", []).append(rss)
                got.setdefault("serve start s", []).append(serve_start(index, seeds, env))
                print(f"run {n + 1} {runtime}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in got.items()), flush=True)
    first = labels[0]
    print("\n| measure | " + " | ".join(labels) + " | " + " | ".join(f"{r}/{first}" for r in labels[1:]) + " |")
    print("|---" * (1 + 2 * len(labels) - 1) + "|")
    for key in results[first]:
        meds = [statistics.median(results[r][key]) for r in labels]
        ratios = [f"{m / meds[0]:.2f}" if meds[0] else "-" for m in meds[1:]]
        print(f"| {key} | " + " | ".join(f"{m:.2f}" for m in meds) + " | " + " | ".join(ratios) + " |")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
