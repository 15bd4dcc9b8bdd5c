"""Benchmark (not a test): `rag build` in one process vs `rag build --ray` with 1 and 2 local workers.

    python bench/ray_build.py [--passages 4000] [--runs 1]

The same synthetic archive as bench/ingest.py (JSQuAD paragraphs, each copy rotated and numbered)
is built from scratch by each variant in a fresh process: `rag build`, then `rag build --ray
--ray-workers 1` and `--ray-workers 2` (a local Ray instance started by the build, its start-up
included; each worker 1 CPU and 1 embedder thread). Printed per variant: wall time, passages/s and
the writer's peak RSS (the `rag build` process itself, from wait4; Ray's workers are separate
processes). Variants run in turn within each run, so a noisy machine hits them alike.
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
sys.path.insert(0, str(REPO / "bench"))

from ingest import write_archive  # noqa: E402

VARIANTS = {
    "one process (2 embedder threads)": [],
    "Ray, 1 worker": ["--ray", "--ray-workers", "1", "--ray-cpus", "1"],
    "Ray, 2 workers": ["--ray", "--ray-workers", "2", "--ray-cpus", "1"],
}


def run(seeds: Path, index: Path, extra: list[str]) -> tuple[float, int, float]:
    """(seconds, passages, peak RSS in GB of the build process) of one fresh build."""
    shutil.rmtree(index, ignore_errors=True)
    cmd = [sys.executable, "-m", "rag.cli", "build", "--seeds", str(seeds), "--index", str(index), "--quiet", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    out = proc.stdout.read() if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read() if proc.stderr else ''}")
    passages = int(out.split(" passages")[0].split()[-1].replace(",", "")) if " passages" in out else 0
    return seconds, passages, usage.ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kijiqa-ray-bench-"))
    seeds = work / "seeds"
    seeds.mkdir()
    made = write_archive(seeds, args.passages, 300, 50)
    print(
        f"archive: {made} articles in {len(list(seeds.iterdir()))} files, about {args.passages} passages ({os.cpu_count()} CPUs)"
    )
    results: dict[str, list[tuple[float, int, float]]] = {name: [] for name in VARIANTS}
    for _ in range(args.runs):
        for name, extra in VARIANTS.items():
            results[name].append(run(seeds, work / "index", extra))
            seconds, n, rss = results[name][-1]
            print(
                f"  {name}: {seconds:.0f} s, {n} passages, {n / seconds:.1f} passages/s, writer {rss:.2f} GB",
                flush=True,
            )
    base = statistics.median(r[0] for r in results["one process (2 embedder threads)"])
    print(
        f"\n| variant | wall s (median of {args.runs}) | passages | passages/s | ratio to one process | writer peak RSS GB |"
    )
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        wall = statistics.median(r[0] for r in rows)
        n = rows[0][1]
        rss = statistics.median(r[2] for r in rows)
        print(f"| {name} | {wall:.0f} | {n} | {n / wall:.1f} | {base / wall:.2f} | {rss:.2f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
