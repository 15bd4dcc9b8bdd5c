"""pypdf or pdfminer.six for Japanese PDFs: which reads the text right, and how fast.

Made here with reportlab (tests/office_files.py): multi-page Japanese articles in the standard
Adobe-Japan1 CID font (HeiseiMin-W3, not embedded) and in an embedded TrueType font (IPA Gothic),
one column, and two columns drawn column by column or row by row (the drawing order of some
typesetters). For each library's plain text, and for 記事QA's reader (pdfminer's boxes, own
column order, lines joined): the share of paragraphs found whole (whitespace aside), whether they
come in the written order, and pages/s.

Run: `python bench/pdf_readers.py [--paragraphs 60] [--runs 3]`
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.office_files import CID_FONT, make_pdf  # noqa: E402
from tests.test_office import paragraphs  # noqa: E402


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def pypdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def pdfminer_text(path: Path) -> str:
    from pdfminer.high_level import extract_text

    return extract_text(path)


def ours_text(path: Path) -> str:
    from rag.documents import read_file

    return "\n".join(d.text for d in read_file(path).docs)


READERS = {
    "pypdf 7.1.1 (extract_text)": pypdf_text,
    "pdfminer.six (extract_text)": pdfminer_text,
    "記事QA (pdfminer boxes + column order)": ours_text,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paragraphs", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kijiqa-pdf-readers-"))
    paras = paragraphs(args.paragraphs)
    layouts = {
        "CID font, 1 column": dict(font=CID_FONT),
        "embedded TrueType, 1 column": dict(font="IPAGothic"),
        "CID font, 2 columns drawn column by column": dict(font=CID_FONT, columns=2),
        "embedded TrueType, 2 columns drawn row by row": dict(font="IPAGothic", columns=2, row_order=True),
    }
    print(f"| layout | reader | paragraphs whole | in written order | pages/s (median of {args.runs}) |")
    print("|---|---|---|---|---|")
    for name, options in layouts.items():
        path = work / "article.pdf"
        starts = make_pdf(path, paras, lines_per_column=30, **options)
        pages = starts[-1]
        for reader, read in READERS.items():
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                text = squash(read(path))
                times.append(time.perf_counter() - t0)
            where = [text.find(squash(p)) for p in paras]
            whole = sum(1 for i in where if i >= 0) / len(paras)
            found = [i for i in where if i >= 0]
            ordered = "yes" if found == sorted(found) and whole == 1 else "no"
            print(
                f"| {name} ({pages} pages) | {reader} | {whole:.2f} | {ordered} | {pages / statistics.median(times):.1f} |"
            )


if __name__ == "__main__":
    main()
