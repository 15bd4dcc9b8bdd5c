"""JSQuAD valid paragraphs saved as article files, indexed by the real `rag build`, then searched.

The ingestion issue's check on text nobody tuned the reading rules on: every paragraph is written
as a file a user could save ("title", blank line, paragraph), `rag build` (a subprocess, the
command a user runs) indexes the folder, and then
- every paragraph must be in the index whole (each of its characters in a passage of its file);
- recall@1/5/10 and MRR of hybrid retrieval over all answerable questions, a hit counting when it
  comes from the question's paragraph file (the same definition `rag eval` uses on JSQuAD).

Run: `python bench/jsquad_files.py [--jsquad ../shared/jsquad/valid-v1.3.json] [--work DIR] [--limit N]`.
Embedding ~1,100 paragraphs takes several minutes on 2 cores; --work keeps the index for reruns.

--format pdf / docx: one file per JSQuAD article (--per article), its paragraphs laid out by
reportlab over A4 pages (Adobe-Japan1 CID font, --columns 1 or 2, a running header and page
numbers) or written as Word paragraphs under the article title by python-docx; also prints the
reading speed (pages/s of `read_file`, the child process included). Compare with
`--format txt --per article`: the same articles, the same definition of a hit (a passage of the
article's file that holds a reference answer).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from rag import evaluation as ev
from rag.config import Settings
from rag.factories import load_embedder
from rag.retrieval import Retriever
from rag.vector_index import VectorIndex

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests/office_files.py makes the PDF and DOCX files


def paragraphs_of(txt: Path) -> list[tuple[str, str]]:
    """(title, paragraph) of each article in a file written by write_squad_files."""
    out = []
    for block in txt.read_text(encoding="utf-8").split("\n---\n\n"):
        title, body = block.split("\n\n", 1)
        out.append((title.strip(), body.strip()))
    return out


def undrawable(texts: list[str]) -> set[str]:
    """Characters the test PDFs cannot carry: drawn in the CID font and read back, they do not come back.

    reportlab's Adobe-Japan1 font has no Bengali or Devanagari, no Ainu small katakana (ㇿ), no
    IBM extension kanji (﨑); such characters never reach the PDF, so no reader can find them.
    """
    from pdfminer.high_level import extract_text

    from tests.office_files import make_pdf

    chars = sorted({ch for t in texts for ch in ev.normalize(t)})
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "chars.pdf"
        # One character per line, each between two markers, so a missing one is known by its place.
        make_pdf(pdf, [f"〔{ch}〕" for ch in chars], header=None, page_numbers=False, lines_per_column=45)
        back = ev.normalize(extract_text(pdf))
    return {ch for ch in chars if f"〔{ch}〕" not in back}


def convert(seeds: Path, fmt: str, columns: int) -> dict[str, str]:
    """Rewrite every .txt of the folder as a .pdf or .docx; returns the new name of each old one."""
    from tests.office_files import make_docx, make_pdf

    names = {}
    for txt in sorted(seeds.glob("*.txt")):
        parts = paragraphs_of(txt)
        new = txt.with_suffix("." + fmt)
        title = parts[0][0]
        if fmt == "pdf":
            make_pdf(new, [body for _, body in parts], columns=columns, title=title, headline=title)
        else:
            make_docx(new, [("title", title), *[("para", body) for _, body in parts]])
        names[txt.name] = new.name
        txt.unlink()
    return names


def uncovered_chars(paragraph: str, passages: list[str], ignore: set[str] = frozenset()) -> int:
    """Characters of the paragraph that no passage of its file holds (whitespace and width ignored).

    A passage is at most a chunk long, so a sentence longer than that spans two passages: what
    counts is that every character is in one, not that every sentence is.
    """

    def norm(t: str) -> str:
        return "".join(ch for ch in ev.normalize(t) if ch not in ignore)

    text = norm(paragraph)
    covered = [False] * len(text)
    # A passage of a PDF or DOCX may run from one paragraph into the next ("\n\n" between them).
    for piece in (norm(p) for passage in passages for p in passage.split("\n\n")):
        start = text.find(piece)
        while piece and start >= 0:
            covered[start : start + len(piece)] = [True] * len(piece)
            start = text.find(piece, start + 1)
    return covered.count(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jsquad", type=Path, default=REPO.parent / "shared" / "jsquad" / "valid-v1.3.json")
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for the files and the index (default: temporary)"
    )
    parser.add_argument("--limit", type=int, default=None, help="questions, spread evenly (default: all)")
    parser.add_argument("--format", choices=("txt", "pdf", "docx"), default="txt")
    parser.add_argument("--per", choices=("paragraph", "article"), default=None, help="default: paragraph for txt")
    parser.add_argument("--columns", type=int, default=1, help="PDF columns (1 or 2)")
    parser.add_argument("--ray", action="store_true", help="build with `rag build --ray` (a local Ray instance)")
    args = parser.parse_args()
    per = args.per or ("paragraph" if args.format == "txt" else "article")

    work = args.work or Path(tempfile.mkdtemp(prefix="kijiqa-jsquad-files-"))
    seeds, index_dir = work / "seeds", work / "index"
    items = ev.write_squad_files(args.jsquad, seeds, per=per)
    bodies = {p.name: [body for _, body in paragraphs_of(p)] for p in seeds.glob("*.txt")}
    if args.format != "txt":
        t0 = time.perf_counter()
        names = convert(seeds, args.format, args.columns)
        print(f"wrote {len(names)} {args.format} files in {time.perf_counter() - t0:.0f} s")
        bodies = {names[k]: v for k, v in bodies.items()}
        items = [replace(it, source=names.get(it.source, it.source)) for it in items]
        if args.format == "pdf":
            from pdfminer.high_level import extract_pages  # noqa: F401  (imported once, outside the timing)

            from rag.documents import read_file

            speeds, pages = [], 0
            for f in sorted(seeds.glob("*.pdf")):
                t0 = time.perf_counter()
                reading = read_file(f)
                took = time.perf_counter() - t0
                n = max((d.pages[-1][1] for d in reading.docs if d.pages), default=0)
                pages += n
                speeds.append(n / took)
            print(
                f"reading: {pages} pages in {len(speeds)} PDFs; pages/s per file median {statistics.median(speeds):.1f}"
            )
    files = sorted(bodies)
    print(f"{len(files)} {per} files ({args.format}) in {seeds}/, {len(items)} questions")

    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "rag.cli", "build", "--seeds", str(seeds), "--index", str(index_dir), "--quiet"]
    cmd += ["--ray"] if args.ray else []
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    print(f"rag build: exit {done.returncode} in {time.perf_counter() - t0:.0f} s")
    print("\n".join(done.stdout.strip().splitlines()[-4:]))
    if done.returncode != 0:
        print(done.stderr[-2000:])
        sys.exit(1)

    settings = Settings.from_env()
    embedder = load_embedder(settings)
    index = VectorIndex.load(index_dir, expected_model=embedder.model_id)
    missing = undrawable([b for v in bodies.values() for b in v]) if args.format == "pdf" else set()
    if missing:
        print(
            f"characters the test PDFs cannot carry (left out of the check): {len(missing)}: {''.join(sorted(missing))[:60]}"
        )
    passages: dict[str, list[str]] = defaultdict(list)
    for chunk in index.chunks:
        passages[chunk.source].append(chunk.text)
    not_indexed = [f for f in files if f not in passages]
    incomplete = []
    for f in files:
        # What a PDF shows in place of a character it cannot carry (a combining mark, another dash) is
        # in its passages and in none of its paragraphs: left out too.
        shown = {ch for t in passages.get(f, []) for ch in ev.normalize(t)} - {
            ch for b in bodies[f] for ch in ev.normalize(b)
        }
        for body in bodies[f]:
            if f in passages and uncovered_chars(body, passages[f], missing | shown if missing else set()):
                incomplete.append(f)
    print(
        f"files indexed: {len(files) - len(not_indexed)}/{len(files)}; paragraphs with a character in no passage: "
        f"{len(incomplete)} of {sum(len(b) for b in bodies.values())}"
    )
    for f in (not_indexed + incomplete)[:5]:
        print(f"  {f}")

    retriever = Retriever(index, embedder, mode=settings.retrieval_mode)
    asked = ev.spread([it for it in items if not it.unanswerable], args.limit)
    t0 = time.perf_counter()
    ranked = [retriever.retrieve_in_conversation(it.question, [], k=10) for it in asked]
    scores = ev.retrieval_scores(ranked, asked)
    print(f"retrieval ({settings.retrieval_mode}, {len(asked)} questions, {time.perf_counter() - t0:.0f} s):")
    print("  " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
