"""Make PDF and Word files for the tests: reportlab with Japanese fonts, python-docx, pypdf for odd PDFs."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

IPA_GOTHIC = Path("/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf")  # Debian fonts-ipafont-gothic (make fonts)
CID_FONT = "HeiseiMin-W3"  # Adobe-Japan1, not embedded: every PDF reader must know it by name
HEADER = "東西新聞 2026年12月3日 朝刊"

_registered: set[str] = set()


def _font(name: str) -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfbase.ttfonts import TTFont

    if name not in _registered:
        if name == CID_FONT:
            pdfmetrics.registerFont(UnicodeCIDFont(CID_FONT))
        else:
            if not IPA_GOTHIC.is_file():
                raise RuntimeError(f"{IPA_GOTHIC} is missing: run `make fonts` (Debian fonts-ipafont-gothic)")
            pdfmetrics.registerFont(TTFont(name, str(IPA_GOTHIC)))
        _registered.add(name)
    return name


def make_pdf(
    path: Path,
    paragraphs: Sequence[str],
    *,
    columns: int = 1,
    font: str = CID_FONT,
    lines_per_column: int = 40,
    header: str | None = HEADER,
    page_numbers: bool = True,
    row_order: bool = False,
    title: str | None = None,
    headline: str | None = None,
    encrypt: str | None = None,
) -> list[int]:
    """Lay the paragraphs out in columns over as many A4 pages as needed; return the page each paragraph starts on.

    row_order: draw the lines of all columns row by row (as some typesetters do), so the drawing
    order interleaves the columns and only a reader that looks at positions reads them whole.
    """
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    font = _font(font)
    size, leading, gap = 10.5, 15.0, 9.0
    width, height = A4
    margin = 56.0
    col_gap = 18.0
    col_width = (width - 2 * margin - (columns - 1) * col_gap) / columns
    per_line = int(col_width // size)
    c = canvas.Canvas(str(path), pagesize=A4, encrypt=encrypt)
    if title:
        c.setTitle(title)
    # Flow: (page, column, y, text) for every line; a paragraph may run into the next column or page.
    placed: list[tuple[int, int, float, str]] = []
    starts: list[int] = []

    def top(p: int) -> float:
        return height - margin - (2 * leading if headline and p == 1 else 0)

    page, col = 1, 0
    y = top(1)
    bottom = height - margin - lines_per_column * leading
    for para in paragraphs:
        lines = [para[i : i + per_line] for i in range(0, len(para), per_line)] or [""]
        for k, line in enumerate(lines):
            if y < bottom:
                col += 1
                if col == columns:
                    page, col = page + 1, 0
                y = top(page)
            if k == 0:
                starts.append(page)
            placed.append((page, col, y, line))
            y -= leading
        y -= gap
    pages = max(p for p, *_ in placed)
    for p in range(1, pages + 1):
        if header:
            c.setFont(font, 9)
            c.drawString(margin, height - 30, header)
        if page_numbers:
            c.setFont(font, 9)
            c.drawCentredString(width / 2, 28, f"- {p} -")
        if headline and p == 1:
            c.setFont(font, 16)
            c.drawString(margin, height - margin, headline)
        c.setFont(font, size)
        mine = [t for t in placed if t[0] == p]
        # Column after column, or row after row across the columns.
        mine.sort(key=(lambda t: (-t[2], t[1])) if row_order else (lambda t: (t[1], -t[2])))
        for _, cl, yy, line in mine:
            c.drawString(margin + cl * (col_width + col_gap), yy, line)
        c.showPage()
    c.save()
    return starts


def make_image_pdf(path: Path, pages: int = 2) -> None:
    """A 'scanned' PDF: pictures of pages, no text layer."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4)
    for _ in range(pages):
        c.setFillGray(0.2)
        for k in range(20):
            c.rect(60, 760 - k * 30, 400, 12, fill=1, stroke=0)  # lines of 'text' drawn as shapes
        c.showPage()
    c.save()


def make_many_pages_pdf(path: Path, pages: int) -> None:
    """A PDF with a great many empty pages (a hostile file)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    with open(path, "wb") as fh:
        writer.write(fh)


def make_inflating_pdf(path: Path, inflated_bytes: int) -> None:
    """A one-page PDF whose content stream is small on disk and inflates to `inflated_bytes` (a hostile file)."""
    comp = zlib.compressobj(9)
    chunk = b" " * (1 << 20)
    body = b"".join(comp.compress(chunk) for _ in range(inflated_bytes >> 20)) + comp.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(body) + body + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    Path(path).write_bytes(bytes(out))


def make_docx(
    path: Path,
    blocks: Sequence[tuple[str, object]],
    *,
    core_title: str | None = None,
) -> None:
    """A .docx from (kind, content) blocks: "title", "heading", "para", "bullet" (str) or "table" (rows of cells)."""
    import docx

    document = docx.Document()
    if core_title:
        document.core_properties.title = core_title
    for kind, content in blocks:
        if kind == "title":
            document.add_heading(str(content), level=0)
        elif kind == "heading":
            document.add_heading(str(content), level=1)
        elif kind == "bullet":
            document.add_paragraph(str(content), style="List Bullet")
        elif kind == "table":
            rows = list(content)  # type: ignore[arg-type]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for r, row in enumerate(rows):
                for k, cell in enumerate(row):
                    table.cell(r, k).text = str(cell)
        else:
            document.add_paragraph(str(content))
    document.save(str(path))


def make_zip_bomb_docx(path: Path, source: Path, inflated_bytes: int) -> None:
    """A valid .docx with one extra member that inflates to `inflated_bytes` (a hostile file)."""
    import shutil
    import zipfile

    shutil.copyfile(source, path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("word/media/padding.bin", "w", force_zip64=True) as fh:
            chunk = b"\0" * (1 << 20)
            for _ in range(inflated_bytes >> 20):
                fh.write(chunk)
