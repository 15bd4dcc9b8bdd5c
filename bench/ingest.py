"""Benchmark (not a test): `rag build` on a large synthetic archive — passages/s, peak RSS, 1M projection.

    python bench/ingest.py [--passages 100000] [--embedder stand-in|e5] [--e5-sample 256] [--before REPO]

Writes a seeds folder of about --passages passages (JSQuAD paragraphs, each copy with its sentences
rotated and a serial number, 100 articles per file separated by `---`, so no two passages are the
same) and runs rag.build.build on it in a fresh process, which reports wall time, the seconds spent
inside the embedder, passages and its peak RSS (ru_maxrss). --before REPO runs the same build with
another checkout's `rag` (e.g. the commit before a change) in the same run, for a ratio.

Embedding a hundred thousand passages with e5 on 2 cores takes hours, so by default the archive is
embedded by a stand-in (a deterministic random unit vector per text, 384 dimensions like e5, almost
free): that measures everything else a build does (reading, chunking, BM25 tokenizing, FAISS, writing)
and its memory at full size. The e5 rate is measured on --e5-sample of the same passages (real model,
the build's batch size), and the projection adds the two:

    T(n passages, N embedding workers) = rest(n) + n / (N · e5 passages/s)

rest(n) scales linearly from the measured size (every stage is linear in passages). Embedding is the
part that parallelizes across machines; the rest runs in the one process that writes the index.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
JSQUAD = REPO.parent / "shared" / "jsquad" / "valid-v1.3.json"
if not JSQUAD.is_file():
    JSQUAD = Path("/work/shared/jsquad/valid-v1.3.json")
ARTICLES_PER_FILE = 100


def paragraphs() -> list[tuple[str, str]]:
    """(title, text) of every JSQuAD valid paragraph."""
    data = json.loads(JSQUAD.read_text(encoding="utf-8"))
    out = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            title, _, text = para["context"].partition(" [SEP] ")
            out.append((title.strip(), text.strip()))
    return out


def write_archive(folder: Path, passages: int, chunk_size: int, chunk_overlap: int) -> int:
    """Write about `passages` passages as seed files; return how many articles were written."""
    sys.path.insert(0, str(REPO))
    from rag.chunking import chunk_documents
    from rag.types import Document

    base = paragraphs()
    per = [
        len(chunk_documents([Document(doc_id="d", source="s", title=t, text=x)], chunk_size=chunk_size,
                            chunk_overlap=chunk_overlap))
        for t, x in base
    ]
    mean = sum(per) / len(per)
    articles = int(passages / mean) + 1
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(0, articles, ARTICLES_PER_FILE):
        parts = []
        for i in range(f, min(articles, f + ARTICLES_PER_FILE)):
            title, text = base[i % len(base)]
            sentences = [s for s in re.split(r"(?<=。)", text) if s]
            k = rng.randrange(len(sentences)) if sentences else 0
            body = "".join(sentences[k:] + sentences[:k])
            parts.append(f"{title}（第{i}報）\n\n{body}\n")
        (folder / f"archive-{f // ARTICLES_PER_FILE:05}.txt").write_text("\n---\n\n".join(parts), encoding="utf-8")
    return articles


class StandIn:
    """A deterministic random unit vector per text (384 dimensions, like e5): embedding at almost no cost."""

    model_id = "bench-stand-in-384"
    dimension = 384

    def __init__(self) -> None:
        self.seconds = 0.0

    def embed_passages(self, texts: list[str], *, show_progress: bool = False):
        import numpy as np

        started = time.perf_counter()
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            v = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(self.dimension)
            out[i] = v / np.linalg.norm(v)
        self.seconds += time.perf_counter() - started
        return out

    def embed_queries(self, texts: list[str]):
        return self.embed_passages(texts)


class Timed:
    """Wraps the real embedder and adds up the seconds spent in it."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.seconds = 0.0

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed_passages(self, texts: list[str], *, show_progress: bool = False):
        started = time.perf_counter()
        try:
            return self.inner.embed_passages(texts)
        finally:
            self.seconds += time.perf_counter() - started


def child(args: argparse.Namespace) -> None:
    """One build in this process; prints one JSON line."""
    sys.path.insert(0, str(Path(args.repo).resolve()))
    from rag.build import build
    from rag.config import Settings

    settings = Settings.from_env()
    if args.embedder == "e5":
        from rag.factories import load_embedder

        embedder = Timed(load_embedder(settings))
    else:
        embedder = StandIn()
    started = time.perf_counter()
    report = build(Path(args.seeds), Path(args.index), embedder=embedder, chunk_size=settings.chunk_size,
                   chunk_overlap=settings.chunk_overlap, full=True)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "passages": report.chunks,
        "articles": report.docs,
        "seconds": seconds,
        "embed_seconds": embedder.seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }))


def run_child(repo: Path, seeds: Path, index: Path, embedder: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--repo", str(repo), "--seeds", str(seeds), "--index", str(index),
           "--embedder", embedder]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)})
    if out.returncode:
        raise SystemExit(f"build failed ({repo}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def e5_rate(seeds: Path, sample: int, runs: int) -> float:
    """Real e5 passages/s on `sample` passages of the archive, in the build's batches (median of runs)."""
    sys.path.insert(0, str(REPO))
    from rag.build import EMBED_BATCH
    from rag.chunking import chunk_documents, passage_text
    from rag.config import Settings
    from rag.documents import read_file
    from rag.factories import load_embedder

    settings = Settings.from_env()
    texts: list[str] = []
    for path in sorted(seeds.iterdir()):
        docs = read_file(path).docs
        texts += [passage_text(c) for c in chunk_documents(docs, chunk_size=settings.chunk_size,
                                                            chunk_overlap=settings.chunk_overlap)]
        if len(texts) >= sample:
            break
    texts = texts[:sample]
    embedder = load_embedder(settings)
    embedder.embed_passages(texts[:8])  # one-off costs
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        for s in range(0, len(texts), EMBED_BATCH):
            embedder.embed_passages(texts[s : s + EMBED_BATCH])
        rates.append(len(texts) / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--embedder", choices=["stand-in", "e5"], default="stand-in")
    parser.add_argument("--e5-sample", type=int, default=256, help="passages for the e5 rate (0: skip)")
    parser.add_argument("--runs", type=int, default=1, help="builds per checkout (medians printed)")
    parser.add_argument("--before", type=Path, help="another checkout to build with, for a before/after ratio")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 4, 16])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repo", default=str(REPO), help=argparse.SUPPRESS)
    parser.add_argument("--seeds", help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    sys.path.insert(0, str(REPO))
    from rag.config import Settings

    settings = Settings.from_env()
    print(f"load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="kijiqa-ingest-") as tmp:
        seeds = Path(tmp) / "seeds"
        started = time.perf_counter()
        articles = write_archive(seeds, args.passages, settings.chunk_size, settings.chunk_overlap)
        size = sum(p.stat().st_size for p in seeds.iterdir())
        print(f"archive: {articles:,} articles in {len(list(seeds.iterdir())):,} files, {size / 1e6:.0f} MB "
              f"({time.perf_counter() - started:.0f} s to write)", flush=True)
        checkouts = [("after", REPO)] + ([("before", args.before.resolve())] if args.before else [])
        results: dict[str, list[dict]] = {name: [] for name, _ in checkouts}
        for run in range(args.runs):
            for name, repo in checkouts:  # alternate, so both see the same load
                r = run_child(repo, seeds, Path(tmp) / f"index-{name}-{run}", args.embedder)
                results[name].append(r)
                print(f"  {name} run {run + 1}: {json.dumps(r)}", flush=True)
        summary = {}
        for name, rs in results.items():
            med = {k: statistics.median(r[k] for r in rs) for k in ("seconds", "embed_seconds", "peak_rss_gb")}
            rest = med["seconds"] - med["embed_seconds"]
            n = rs[0]["passages"]
            summary[name] = {**med, "passages": n, "rest_seconds": rest}
            print(f"{name}: {n:,} passages, build {med['seconds']:.0f} s (embedder {med['embed_seconds']:.0f} s, "
                  f"rest {rest:.0f} s = {n / rest:,.0f} passages/s), peak RSS {med['peak_rss_gb']:.2f} GB")
        if args.before:
            a, b = summary["after"], summary["before"]
            print(f"after/before: rest time {a['rest_seconds'] / b['rest_seconds']:.2f}x, "
                  f"peak RSS {a['peak_rss_gb'] / b['peak_rss_gb']:.2f}x")
        if args.e5_sample:
            rate = e5_rate(seeds, args.e5_sample, max(1, args.runs))
            after = summary["after"]
            rest_per = after["rest_seconds"] / after["passages"]
            print(f"e5 on this machine: {rate:.1f} passages/s ({args.e5_sample} passages, "
                  f"{os.environ.get('RAG_N_THREADS', 'default')} threads)")
            for n in (after["passages"], 1_000_000):
                cells = ", ".join(f"{w} worker{'s' if w > 1 else ''}: {(rest_per * n + n / (w * rate)) / 3600:.1f} h"
                                  for w in args.workers)
                print(f"projected build of {n:,} passages (rest {rest_per * n / 60:.0f} min + embedding): {cells}")


if __name__ == "__main__":
    main()
