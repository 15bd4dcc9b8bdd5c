"""Readers for PDF and Word (.docx) articles, run in a child process with page, size, time and memory limits.

A PDF or DOCX is a container: a hostile one (tens of thousands of pages, a stream or a zip member
that inflates to gigabytes) can take a reader's memory or time without bound. So the libraries
(pdfminer.six, python-docx) run in a child process (`python -m rag.office FILE`) under an
address-space limit and a wall-clock limit, and hand back plain data as JSON: for a PDF the text
lines of each page with their positions, for a DOCX its blocks in order. Turning that data into
an Article (reading order, lines joined back into sentences, running headers and page numbers
recognized, the page of every line) happens here, in the parent, as pure functions.

Why pdfminer.six and not pypdf (both tried on Japanese, bench/README.md): both decode the embedded
TrueType fonts and the standard Adobe-Japan1 CID fonts (HeiseiMin-W3) right, but pypdf returns
text in the order the page's content stream draws it, so a two-column page whose lines are drawn
row by row comes out with the columns interleaved line by line; pdfminer's layout analysis groups
lines into boxes by position and orders the boxes, so each column reads whole.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.text import ends_sentence

PDF_SUFFIX = ".pdf"
DOCX_SUFFIX = ".docx"
OFFICE_SUFFIXES = (PDF_SUFFIX, DOCX_SUFFIX)
# Old binary Word files are listed so a seeds folder reports them by name instead of ignoring them.
REFUSED_SUFFIXES = {".doc": "Word 97-2003 形式（.doc）は読めません。Word で .docx として保存し直してください"}

MAX_PAGES = 2_000  # a newspaper archive export or a court ruling runs to hundreds; tens of thousands is hostile
MAX_DOCX_UNPACKED = 200 * 1024 * 1024  # bytes of all zip members together, as the zip declares them
READ_SECONDS = 300.0  # one file; pdfminer reads ~10-40 pages/s here, so 2,000 pages fit
READ_MEMORY = 2 * 1024**3  # address space of the reading process

SCAN_REASON = "文字情報のないPDF（スキャン画像）です。文字を選択できるPDFを使ってください（OCR はしません）"
ENCRYPTED_REASON = "パスワードで保護されたPDFです。保護を外して保存し直してください"
BROKEN_PDF_REASON = "PDFとして読めません。壊れているか、途中で切れています"
BROKEN_DOCX_REASON = "Word（.docx）として読めません。壊れているか、途中で切れています"
TOO_MANY_PAGES = "ページ数が多すぎます（{pages} ページ、上限 {limit} ページ）。分けて保存してください"
TOO_BIG_UNPACKED = "展開後のサイズが大きすぎます（上限 {limit} MB）。圧縮爆弾の可能性があるため読みません"
TOO_SLOW = "読み取りが {seconds:.0f} 秒で終わりませんでした。ファイルを分けるか、テキストとして保存してください"
TOO_MUCH_MEMORY = "読み取りにメモリを使いすぎました（上限 {limit} GB）。圧縮爆弾の可能性があるため読みません"


class OfficeReadError(ValueError):
    """A PDF or DOCX that cannot be read, with the reason shown to the person."""


# ---------------------------------------------------------------------------------------------
# The child process: libraries in, plain JSON out.


def _pdf_data(path: str) -> dict[str, Any]:
    from pdfminer.converter import PDFPageAggregator
    from pdfminer.layout import LAParams, LTTextBox, LTTextLine
    from pdfminer.pdfdocument import PDFDocument, PDFPasswordIncorrect
    from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
    from pdfminer.pdfpage import PDFPage
    from pdfminer.pdfparser import PDFParser
    from pdfminer.pdftypes import resolve1

    with open(path, "rb") as fh:
        parser = PDFParser(fh)
        try:
            doc = PDFDocument(parser)
        except PDFPasswordIncorrect:
            return {"error": ENCRYPTED_REASON}
        try:
            count = int(resolve1(resolve1(doc.catalog["Pages"])["Count"]))
        except Exception:  # a damaged page tree: pdfminer may still find the pages by scanning
            count = 0
        if count > MAX_PAGES:
            return {"error": TOO_MANY_PAGES.format(pages=count, limit=MAX_PAGES)}
        title = ""
        for info in doc.info:
            raw = resolve1(info.get("Title"))
            if isinstance(raw, bytes):
                title = _pdf_string(raw)
        manager = PDFResourceManager()
        # char_margin 1.0 (pdfminer's default 2.0): Japanese has no spaces, so a gap of more than one
        # character is a column gutter; at 2.0, two columns drawn row by row fuse into one line.
        device = PDFPageAggregator(manager, laparams=LAParams(char_margin=1.0))
        interpreter = PDFPageInterpreter(manager, device)
        pages = []
        for n, page in enumerate(PDFPage.create_pages(doc), start=1):
            if n > MAX_PAGES:
                return {"error": TOO_MANY_PAGES.format(pages=f"{MAX_PAGES}+", limit=MAX_PAGES)}
            interpreter.process_page(page)
            layout = device.get_result()
            boxes = []
            # The layout's boxes come in reading order (pdfminer groups them by position: columns whole).
            for box in layout:
                if not isinstance(box, LTTextBox):
                    continue
                lines = [
                    [
                        _CID.sub("", line.get_text()).rstrip("\n"),
                        round(line.x0, 1),
                        round(line.x1, 1),
                        round(line.y0, 1),
                        round(line.y1, 1),
                    ]
                    for line in box
                    if isinstance(line, LTTextLine) and _CID.sub("", line.get_text()).strip()
                ]
                if lines:
                    boxes.append(lines)
            pages.append({"width": layout.width, "height": layout.height, "boxes": boxes})
    return {"title": title, "pages": pages}


# pdfminer writes "(cid:8443)" for a glyph its font maps to no character: a gap, not text.
_CID = re.compile(r"\(cid:\d+\)")


def _pdf_string(raw: bytes) -> str:
    if raw.startswith((b"\xfe\xff", b"\xff\xfe")):
        return raw.decode("utf-16", errors="replace")
    from pdfminer.utils import decode_text

    return decode_text(raw)


def _docx_data(path: str) -> dict[str, Any]:
    import docx
    from docx.table import Table

    with zipfile.ZipFile(path) as zf:
        # Sizes as the zip declares them; zipfile never inflates a member past its declared size.
        unpacked = sum(info.file_size for info in zf.infolist())
    if unpacked > MAX_DOCX_UNPACKED:
        return {"error": TOO_BIG_UNPACKED.format(limit=MAX_DOCX_UNPACKED // 1024**2)}
    document = docx.Document(path)
    blocks: list[list[str]] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                cells: list[str] = []
                for cell in row.cells:  # a merged cell repeats in each column it spans: once is enough
                    text = " ".join(cell.text.split())
                    if not cells or cells[-1] != text:
                        cells.append(text)
                if any(cells):
                    blocks.append(["row", "| " + " | ".join(cells) + " |"])
            blocks.append(["break", ""])
            continue
        style = (item.style.name if item.style is not None else "") or ""
        kind = (
            "title"
            if style == "Title"
            else "heading"
            if _is_heading(style)
            else "list"
            if _is_list(item, style)
            else "para"
        )
        blocks.append([kind, item.text])
    return {"title": document.core_properties.title or "", "blocks": blocks}


def _is_heading(style: str) -> bool:
    # English style ids and Japanese Word's names (見出し 1); a custom "Heading" style counts too.
    return style.startswith(("Heading", "見出し")) or style.lower().startswith("heading")


def _is_list(paragraph: Any, style: str) -> bool:
    ppr = paragraph._p.pPr
    return "List" in style or "箇条書き" in style or (ppr is not None and ppr.numPr is not None)


def _child_main(path: str) -> int:
    try:
        if path.lower().endswith(PDF_SUFFIX):
            try:
                data = _pdf_data(path)
            except MemoryError:
                raise
            except Exception as exc:
                data = {"error": BROKEN_PDF_REASON, "detail": f"{type(exc).__name__}: {exc}"[:200]}
        else:
            try:
                data = _docx_data(path)
            except MemoryError:
                raise
            except Exception as exc:
                data = {"error": BROKEN_DOCX_REASON, "detail": f"{type(exc).__name__}: {exc}"[:200]}
    except MemoryError:
        os._exit(3)  # no room left to write anything; the parent knows what exit code 3 means
    sys.stdout.write(json.dumps(data, ensure_ascii=False))
    return 0


def _limit_memory() -> None:  # pragma: no cover - runs in the child between fork and exec
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (READ_MEMORY, READ_MEMORY))


def read_office_data(path: Path, *, seconds: float | None = None) -> dict[str, Any]:
    """Run the reader of a PDF or DOCX in a bounded child process; its data, or OfficeReadError with the reason."""
    is_pdf = str(path).lower().endswith(PDF_SUFFIX)
    with open(path, "rb") as fh:
        head = fh.read(1024)
    # Not a PDF or a zip at all (a renamed file): say so at once; pdfminer would scan all of it for objects.
    if is_pdf and b"%PDF-" not in head:
        raise OfficeReadError(BROKEN_PDF_REASON)
    if not is_pdf and not head.startswith(b"PK"):
        raise OfficeReadError(BROKEN_DOCX_REASON)
    seconds = READ_SECONDS if seconds is None else seconds
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "rag.office", str(path)],
            capture_output=True,
            timeout=seconds,
            env=env,
            preexec_fn=_limit_memory if sys.platform != "win32" else None,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise OfficeReadError(TOO_SLOW.format(seconds=seconds)) from exc
    if proc.returncode == 3 or b"MemoryError" in proc.stderr:
        raise OfficeReadError(TOO_MUCH_MEMORY.format(limit=READ_MEMORY // 1024**3))
    if proc.returncode != 0:
        last = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        broken = BROKEN_PDF_REASON if is_pdf else BROKEN_DOCX_REASON
        raise OfficeReadError(f"{broken}（{last[0][:160]}）")
    data = json.loads(proc.stdout.decode("utf-8"))
    if "error" in data:
        raise OfficeReadError(data["error"])
    return data


# ---------------------------------------------------------------------------------------------
# Plain data -> paragraphs with pages (pure functions, tested without the child)


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of a PDF as read: its text, its page, and whether it is page furniture (and why)."""

    text: str
    page: int
    furniture: bool = False


_ASCII_WORD = re.compile(r"[A-Za-z0-9,.;:]")
# A bare page number at the top or bottom of a page: 「3」, 「- 3 -」, 「3 / 12」, 「p. 3」, 「3ページ」.
_PAGE_NUMBER = re.compile(
    r"^[-‐－—–(（\[]?\s*(?:p\.?|P\.?|ページ|page)?\s*\d{1,4}\s*(?:/\s*\d{1,4}|ページ|頁)?\s*[-‐－—–)）\]]?$"
)
_DIGITS = re.compile(r"\d+")


def _join(a: str, b: str) -> str:
    """Join two pieces of one sentence broken by a line end: no space in Japanese, one between two Latin words."""
    if a and b and _ASCII_WORD.match(a[-1]) and _ASCII_WORD.match(b[0]):
        return a + " " + b
    return a + b


def _norm(text: str) -> str:
    return unicodedata.normalize("NFC", text).replace("\u3000", " ").strip()


Box = list[list[Any]]  # the lines of one text box: [text, x0, x1, y0, y1] each (PDF points, y upwards)


def reading_order(boxes: list[Box]) -> list[Box]:
    """A page's text boxes in reading order: wide blocks top to bottom; between two of them, columns left to right.

    pdfminer's own order groups nearest boxes, which reads a two-column page row by row when the
    paragraphs of both columns line up. Here a box narrower than 60% of the text width belongs to
    a column; boxes whose x-ranges overlap share a column; each column is read top to bottom
    before the next one, until the next wide block (a headline over both columns, a footer).
    """
    if len(boxes) < 2:
        return list(boxes)
    geo = [
        (min(ln[1] for ln in b), max(ln[2] for ln in b), min(ln[3] for ln in b), max(ln[4] for ln in b)) for b in boxes
    ]
    left, right = min(g[0] for g in geo), max(g[1] for g in geo)
    wide = [i for i, g in enumerate(geo) if g[1] - g[0] > 0.6 * (right - left)]
    narrow = [i for i in range(len(boxes)) if i not in set(wide)]
    wide.sort(key=lambda i: -geo[i][3])
    out: list[int] = []
    remaining = narrow
    for w in [*wide, None]:
        above = geo[w][3] if w is not None else float("-inf")
        # The narrow boxes whose middle lies above this wide block come before it.
        segment = [i for i in remaining if (geo[i][2] + geo[i][3]) / 2 > above]
        remaining = [i for i in remaining if i not in set(segment)]
        columns: list[list[int]] = []
        for i in sorted(segment, key=lambda i: geo[i][0]):
            col = next((c for c in columns if geo[i][0] < max(geo[j][1] for j in c) - 1), None)
            if col is None:
                columns.append([i])
            else:
                col.append(i)
        for col in columns:
            out.extend(sorted(col, key=lambda i: -geo[i][3]))
        if w is not None:
            out.append(w)
    return [boxes[i] for i in out]


def pdf_paragraphs(data: dict[str, Any]) -> list[Paragraph]:
    """The paragraphs of a PDF in reading order, lines joined back into sentences, page furniture marked."""
    pages = [{**page, "boxes": reading_order(page["boxes"])} for page in data.get("pages", [])]
    # 1. The top and bottom line of each page are candidates for running heads and page numbers: a
    #    line there whose text, digits aside, comes back on other pages is furniture, and so is a
    #    bare page number. A line that is a sentence is never furniture.
    edges: dict[tuple[int, int, int], str] = {}
    for p, page in enumerate(pages):
        lines = [(b, i, ln) for b, box in enumerate(page["boxes"]) for i, ln in enumerate(box)]
        if not lines:
            continue
        top = max(lines, key=lambda t: t[2][4])
        bottom = min(lines, key=lambda t: t[2][3])
        for b, i, ln in {top[:2]: top, bottom[:2]: bottom}.values():
            if len(page["boxes"][b]) == 1:  # alone in its box: a head or foot, not the first line of a paragraph
                edges[(p, b, i)] = _DIGITS.sub("#", _norm(ln[0]))
    repeats = Counter(edges.values())
    furniture = {
        key
        for key, masked in edges.items()
        if _PAGE_NUMBER.match(masked.replace("#", "1")) or (repeats[masked] >= 2 and not ends_sentence(masked))
    }

    # 2. Lines of a box are joined into paragraphs; a line that ends a sentence short of the box's
    #    right edge ends its paragraph. A paragraph that runs to the right edge without ending a
    #    sentence continues in the next box (the next column or page), past any furniture.
    out: list[Paragraph] = []
    open_para: int | None = None  # index in out of a paragraph that ran on at the end of its box
    open_height = 0.0  # the height of its last line: it goes on only in text of the same size
    for p, page in enumerate(pages):
        spans = [(min(ln[1] for ln in box), max(ln[2] for ln in box)) for box in page["boxes"]]
        bottoms = [min(ln[3] for ln in box) for box in page["boxes"]]
        for b, box in enumerate(page["boxes"]):
            if (p, b, 0) in furniture:
                out.append(Paragraph(_norm(box[0][0]), p + 1, furniture=True))
                continue
            # The right edge of this box's column: the widest of the boxes it shares x-range with (a
            # one-line box at the foot of a column cannot tell alone whether its line is full).
            x0, x1 = spans[b]
            right = max(hi for (lo, hi) in spans if lo < x1 and hi > x0)
            char = max(min((ln[4] - ln[3]) for ln in box), 1.0)  # about one character's width in Japanese
            text = ""
            start_page = p + 1
            last_height = 0.0
            for i, (raw, _x0, x1, y0, y1) in enumerate(box):
                piece = _norm(raw)
                if not piece:
                    continue
                height, last_height = y1 - y0, last_height or (y1 - y0)
                if text and abs(height - last_height) > 0.2 * last_height:
                    # Another type size: a headline over its text (or a caption under it) is a paragraph of its own.
                    out.append(Paragraph(text, start_page))
                    text, start_page = "", p + 1
                last_height = height
                if not text and open_para is not None and i == 0 and abs(height - open_height) <= 0.2 * open_height:
                    # The paragraph left open at the end of the last box goes on here.
                    prev = out.pop(open_para)
                    text, start_page = prev.text, prev.page
                text = _join(text, piece) if text else piece
                full = x1 >= right - 1.5 * char
                if ends_sentence(piece) and not full:
                    out.append(Paragraph(text, start_page))
                    text, start_page = "", p + 1
                open_para = None
            if text:
                last = box[-1]
                # Only the last box of its column can run on: a box below it in the same column starts
                # a new paragraph (text cut short without a sentence end, a list, a formula removed).
                last_in_column = not any(
                    k != b
                    and (p, k, 0) not in furniture
                    and spans[k][0] < x1
                    and spans[k][1] > x0
                    and bottoms[k] < bottoms[b]
                    for k in range(len(page["boxes"]))
                )
                runs_on = last_in_column and last[2] >= right - 1.5 * char and not ends_sentence(text)
                out.append(Paragraph(text, start_page))
                open_para = len(out) - 1 if runs_on else None
                open_height = last[4] - last[3]
            else:
                open_para = None
    return out


def docx_lines(data: dict[str, Any]) -> tuple[str | None, list[str]]:
    """(title, body lines) of a DOCX: the document title, else its first title or heading paragraph."""
    title = _norm(data.get("title") or "") or None
    lines: list[str] = []
    for kind, raw in data.get("blocks", []):
        text = _norm(raw)
        if kind == "break" or not text:
            if lines and lines[-1]:
                lines.append("")
            continue
        if title is None and kind in ("title", "heading"):
            title = text
            continue
        if kind == "list":
            text = "・" + text if not text.startswith(("・", "•", "-", "*")) else text
        lines.append(text)
    return title, lines


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
