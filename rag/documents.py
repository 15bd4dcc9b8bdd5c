"""Read a seeds folder into clean Documents in two plain steps.

1. A reader per format turns a file into articles (title, date, URL, body lines):
   `read_text_articles` for .txt/.md, `read_html_articles` for .html/.htm (trafilatura),
   `read_office_articles` for .pdf/.docx (pdfminer.six, python-docx; in a bounded child process,
   rag/office.py). A PDF's lines keep their page.
2. `clean_articles` drops page furniture line by line and records every drop with its rule
   (`rag inspect FILE` prints that record). It may drop menu-like lines; it never drops a
   line because of the word it starts with.
"""

from __future__ import annotations

import bisect
import gc
import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rag.office import DOCX_SUFFIX, OFFICE_SUFFIXES, REFUSED_SUFFIXES, OfficeReadError
from rag.text import ends_sentence, has_sentence, split_sentences
from rag.types import Document, Drop, FileReport, SkippedFile

TEXT_SUFFIXES = (".txt", ".md")
HTML_SUFFIXES = (".html", ".htm")
SEED_SUFFIXES = TEXT_SUFFIXES + HTML_SUFFIXES + OFFICE_SUFFIXES
LISTED_SUFFIXES = SEED_SUFFIXES + tuple(REFUSED_SUFFIXES)  # a .doc is listed to be reported, not read
PAGE_FURNITURE = "page header/footer"  # rule of a PDF's running heads, feet and page numbers
MIN_ARTICLE_CHARS = 40  # a body shorter than this without one sentence is a stray caption, not an article
SHORT_LINE = 15  # characters: below this a line without a sentence end is a label ("ニュース", "ワールド")
MENU_RUN = 10  # this many non-sentence lines in a row, a third of them labels, are a link list or ranking
TITLE_MAX = 100
ISLAND_MAX = 40  # characters: a sentence this short between two link lists is part of them

# ASCII only: Japanese glued to an address ("https://www.google.co.jpでアクセス可能。") is text, not URL.
_URL = re.compile(r"https?://[!-~]+|pic\.twitter\.com/[!-~]+")
_SHORT_LINK = ("https://t.co/", "http://t.co/", "pic.twitter.com/")  # a tweet's link: says nothing itself
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\((\S+?)\)")
# Hashtags trailing a line (a tweet's "#nhk_news"); one inside a sentence (「#MeToo 運動」) is text.
_HASHTAG = re.compile(r"(?<=\s)#\w+(?=(?:\s+#\w+)*\s*$)")
_INLINE_HINT = re.compile(r"http|pic\.twitter|#|\]\(|, opens new tab")  # lines _strip_inline may change
_LINK_LABEL = ", opens new tab"  # screen-reader text of a news site's links, glued into sentences
_SEPARATOR = re.compile(r"^(?:-{3,}|\*{3,}|_{3,}|={3,})$")
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*$")
# "タイトル2025年03月20日 17:36": a blog post header with the date glued to the title.
_TITLE_WITH_DATE = re.compile(r"^(?P<title>.{4,}?)\s*(?P<date>\d{4}年\d{1,2}月\d{1,2}日)\s+\d{1,2}:\d{2}$")
# "2025年12月8日月曜日": a blog's day header; the next line is the post title.
_DAY_HEADER = re.compile(r"^(?P<date>\d{4}年\d{1,2}月\d{1,2}日)[月火水木金土日]曜日$")
# "— NHKニュース (@nhk_news) February 21, 2025": the byline of an embedded tweet; its headline is the line before.
_TWEET_BYLINE = re.compile(r"^[—―-]\s*(?P<who>.+?)\s*\(@\w+\)\s*(?P<date>[A-Z][a-z]+ \d{1,2}, \d{4})$")
_DATE_IN_TEXT = re.compile(r"\d{4}年\s*\d{1,2}月\s*\d{1,2}日")
# Page furniture that is never prose. Applied only to lines without a sentence end, so a sentence
# that happens to contain one of these words is kept.
_MENU_LINE = re.compile(
    r"^(?:"
    r".*スキップ.*|"  # "メインメニューへスキップ": skip links
    r"ラベル .* の投稿を表示しています。.*|"  # a blog's label filter banner
    r"最新記事|"
    r"[•・*]?\s*\d{1,3}|"  # ranking positions and comment counts
    r"[•・*]|"  # an empty list item
    r".{0,30}で作成|"  # "Microsoft Designerで作成": image credit
    r"引用[:：].{0,30}|"  # "引用:AP通信": photo credit
    r".{0,30}\S+@\S+\.\w+|"  # an author's e-mail
    r".{0,20} アクセス|"
    r"フォトニュース|トレンド"
    r")$"
)
_ELLIPSES = ("…", "...", "‥")
_MONTHS = {
    m: i
    for i, m in enumerate(
        (
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ),
        start=1,
    )
}

# Says which encodings were tried; a user can re-save the file as UTF-8.
_NOT_TEXT = "not UTF-8, Shift_JIS or EUC-JP text (nor UTF-16 or ISO-2022-JP); save it as UTF-8"

Line = tuple[int, str]  # (1-based line number in the decoded text, for HTML in the extracted main text; text)


class UnreadableFileError(ValueError):
    """A seed file that is not text in a known Japanese encoding, or holds no article."""


# ---------------------------------------------------------------------------------------------
# Bytes -> text


_KANA_OR_KANJI = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def _japanese_ratio(text: str) -> float:
    kana = sum(1 for ch in text if "\u3040" <= ch <= "\u30ff")
    return kana / max(len(text), 1)


_JAPANESE_CODECS = ("cp932", "shift_jis", "euc_j", "iso2022_jp")  # euc_j: euc_jp, euc_jis_2004
_NOT_JAPANESE = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af\uff61-\uff9f\x00-\x08\x0e-\x1f]")


def _looks_japanese(text: str) -> bool:
    return _KANA_OR_KANJI.search(text) is not None and _NOT_JAPANESE.search(text) is None


def _controls(text: str) -> int:
    return sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f")


def detect_encoding(data: bytes) -> tuple[str, str]:
    """Decode bytes to (text, encoding name); raise UnreadableFileError if they are not Japanese text."""
    # A BOM says it all; UTF-16 has NUL bytes, so look for a BOM before calling NULs binary.
    if data.startswith(b"\xef\xbb\xbf"):
        return data.decode("utf-8-sig", errors="strict"), "utf_8_sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf_16"
        except UnicodeDecodeError as exc:
            raise UnreadableFileError(f"starts with a UTF-16 mark but does not decode ({exc.reason})") from exc
    if b"\x00" in data:
        raise UnreadableFileError("binary file (contains NUL bytes), not text")
    # ISO-2022-JP's escape sequences ("ESC $ B") name it; being 7-bit it is valid UTF-8 too, so look first.
    if b"\x1b$B" in data or b"\x1b$@" in data or b"\x1b(J" in data:
        for name in ("iso2022_jp", "iso2022_jp_2", "iso2022_jp_ext"):
            try:
                return data.decode(name), name
            except UnicodeDecodeError:
                continue
    # Strict UTF-8 first: it is the common case, exact, and fast on a 50 MB file.
    try:
        return data.decode("utf-8"), "utf_8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    # charset-normalizer's best guess is wrong for very short legacy Japanese (bench/reading.py
    # --encodings): "円相場が急落" in EUC-JP comes out as cp949 (Korean), "東京都" as Big5,
    # "国会議員選挙" in cp932 as cp949. Help, as measured: prefer a Japanese codec whose text
    # looks Japanese (no Hangul, no half-width katakana, no control characters), with the
    # most kana; its own order breaks ties. Otherwise its best guess stands.
    candidates = [(str(m), m.encoding) for m in from_bytes(data)]
    for name in ("cp932", "euc_jp"):  # the two usual ones, in case it proposed neither
        if all(enc != name for _, enc in candidates):
            try:
                candidates.append((data.decode(name), name))
            except UnicodeDecodeError:
                pass
    if not candidates:
        raise UnreadableFileError(_NOT_TEXT)
    japanese = [c for c in candidates if c[1].startswith(_JAPANESE_CODECS) and _looks_japanese(c[0])]
    text, encoding = max(japanese, key=lambda c: _japanese_ratio(c[0])) if japanese else candidates[0]
    if not _KANA_OR_KANJI.search(text) or _controls(text) > len(text) / 100:
        raise UnreadableFileError(_NOT_TEXT)
    return text, encoding


def decode_text(data: bytes) -> str:
    """Decode UTF-8 (BOM or not), UTF-16 (BOM), Shift_JIS/cp932, EUC-JP or ISO-2022-JP bytes."""
    return detect_encoding(data)[0]


def _normalize_line(raw: str) -> str:
    return unicodedata.normalize("NFC", raw).replace("\u3000", " ").strip()


def normalize_date(text: str) -> str | None:
    """'2025年3月13日' or 'February 21, 2025' -> '2025-03-13'; None if it is not a date."""
    if m := re.search(r"(\d{4})年\s*(\d{1,2})月\s*(\d{1,2})日", text):
        y, mo, d = m.groups()
    elif (m := re.search(r"([A-Z][a-z]+) (\d{1,2}), (\d{4})", text)) and m[1] in _MONTHS:
        y, mo, d = m[3], str(_MONTHS[m[1]]), m[2]
    elif m := re.search(r"(\d{4})-(\d{1,2})-(\d{1,2})", text):
        y, mo, d = m.groups()
    else:
        return None
    return f"{int(y):04d}-{int(mo):02d}-{int(d):02d}"


# ---------------------------------------------------------------------------------------------
# Step 1: readers, one per format. They only find article boundaries and metadata; they drop nothing.


@dataclass
class Article:
    """An article as a reader found it: metadata and body lines, not cleaned yet."""

    title: str | None = None
    title_line: int = 0
    date: str | None = None
    url: str | None = None
    lines: list[Line] = field(default_factory=list)  # "" lines mark paragraph breaks
    title_next: bool = False  # after a blog's day header the next line is the title, however short
    html: bool = False  # lines come from trafilatura: one per block element, menus it let in stacked on top
    headers: list[Line] = field(default_factory=list)  # lines the reader turned into metadata (date headers, bylines)
    furniture: list[Line] = field(default_factory=list)  # a PDF's running heads and page numbers, found by position
    pages: list[tuple[int, int]] = field(default_factory=list)  # (first line number, page) of each page of a PDF

    def page_of(self, line_no: int) -> int | None:
        """The page a line of a PDF is on (None for files without pages)."""
        if not self.pages:
            return None
        i = bisect.bisect_right(self.pages, (line_no, float("inf"))) - 1
        return self.pages[max(i, 0)][1]

    def has_text(self) -> bool:
        return bool(self.title) or any(text for _, text in self.lines)


def read_text_articles(text: str) -> list[Article]:
    """Split .txt/.md text into articles at `---` lines, top-level `#` headings and dated headers."""
    # Normalized once for the whole text (C speed), then split: \r\n, \r and \n alike.
    lines = [line.strip() for line in unicodedata.normalize("NFC", text).replace("\u3000", " ").splitlines()]
    levels = [len(m[1]) for line in lines if line[:1] == "#" and (m := _MD_HEADING.match(line))]
    top = min(levels) if levels else 0
    articles = [Article()]

    def start(**meta: object) -> Article:
        if articles[-1].has_text():
            articles.append(Article())
        cur = articles[-1]
        for key, value in meta.items():
            setattr(cur, key, value)
        return cur

    for no, line in enumerate(lines, start=1):
        cur = articles[-1]
        if not line:
            cur.lines.append((no, ""))
            continue
        if cur.url is None and ("http" in line or "pic.twitter" in line) and (url := _first_url(line)):
            cur.url = url
        if cur.title_next:
            cur.title, cur.title_line, cur.title_next = line, no, False
            continue
        first = line[0]
        # Cheap first-character and substring tests skip the regular expressions on ordinary lines.
        if first in "-*_=" and _SEPARATOR.match(line):
            start()
            continue
        if first == "#" and (m := _MD_HEADING.match(line)):
            if len(m[1]) == top:
                start(title=m[2], title_line=no)
            else:
                cur.lines.append((no, m[2]))  # a sub-heading stays in its article, without the #s
            continue
        dated = "年" in line and "日" in line
        if dated and (m := _DAY_HEADER.match(line)):
            start(date=normalize_date(m["date"]), title_next=True).headers.append((no, line))
            continue
        if dated and (m := _TITLE_WITH_DATE.match(line)):
            start(title=m["title"], title_line=no, date=normalize_date(m["date"]))
            continue
        if first in "—―-" and (m := _TWEET_BYLINE.match(line)):
            # The tweet's headline is the line just before its byline: it titles a new article.
            headline: Line | None = None
            while cur.lines and not cur.lines[-1][1]:
                cur.lines.pop()
            if cur.lines:
                headline = cur.lines.pop()
            elif cur.title and not cur.lines:
                headline, cur.title = (cur.title_line, cur.title), None
            new = start(date=normalize_date(m["date"]))
            new.headers.append((no, line))
            if headline:
                new.title, new.title_line = headline[1], headline[0]
            continue
        cur.lines.append((no, line))
    for a in articles:
        if a.date is None:
            a.date = _first_date([t for _, t in a.lines[:12]] + [a.title or ""])
    return [a for a in articles if a.has_text()]


def read_html_articles(html: str) -> list[Article]:
    """Main text of a saved web page with its title, date and URL (trafilatura); one article per page."""
    import trafilatura

    # favor_recall: losing a paragraph of the article is worse than letting a menu in, which the
    # cleaning step then drops (on the test pages both settings give the same text).
    doc = trafilatura.bare_extraction(
        html, with_metadata=True, include_comments=False, include_tables=True, favor_recall=True
    )
    if doc is None or not (doc.text or "").strip():
        return []
    # One paragraph per line; numbered as lines of the extracted text (the page's own lines mean little).
    lines: list[Line] = [(no, _normalize_line(raw)) for no, raw in enumerate(doc.text.splitlines(), start=1)]
    title = _normalize_line(doc.title) if doc.title else None
    date = normalize_date(doc.date) if doc.date else None
    return [Article(title=title or None, date=date, url=doc.url or None, lines=lines, html=True)]


_FILE_TITLE = re.compile(r"^(?:Microsoft Word - .*|.*\.(?:docx?|pdf|txt|rtf)|untitled|無題.*)$", re.IGNORECASE)


def read_office_articles(path: Path) -> list[Article]:
    """A PDF or DOCX as one article: its title (metadata, else a heading or its first line), lines and pages."""
    from rag.office import docx_lines, pdf_paragraphs, read_office_data

    data = read_office_data(path)
    meta_title = _normalize_line(data.get("title") or "")
    if not meta_title or _FILE_TITLE.match(meta_title):
        meta_title = ""  # "Microsoft Word - 原稿.docx" names the file, not the article
    if path.suffix.lower() == DOCX_SUFFIX:
        title, body = docx_lines({**data, "title": meta_title})
        lines: list[Line] = [(no, t) for no, t in enumerate(body, start=1)]
        article = Article(title=title, lines=lines)
    else:
        from rag.office import SCAN_REASON

        paragraphs = pdf_paragraphs(data)
        if not any(not p.furniture for p in paragraphs):
            raise UnreadableFileError(SCAN_REASON)
        article = Article(title=meta_title or None)
        for no, p in enumerate(paragraphs, start=1):
            if not article.pages or article.pages[-1][1] != p.page:
                article.pages.append((no, p.page))
            (article.furniture if p.furniture else article.lines).append((no, p.text))
    # The article's own date line first; a running head's date (the issue's) only when it has none.
    article.date = _first_date([t for _, t in article.lines[:12]] + [article.title or ""]) or _first_date(
        t for _, t in article.furniture
    )
    return [article] if article.has_text() else []


def _first_url(raw: str) -> str | None:
    for url in _URL.findall(raw):
        if not url.startswith(_SHORT_LINK):
            return url.rstrip(")」>")
    return None


def _first_date(lines: Iterable[str]) -> str | None:
    for line in lines:
        if m := _DATE_IN_TEXT.search(line):
            return normalize_date(m.group(0))
    return None


# ---------------------------------------------------------------------------------------------
# Step 2: one cleaning step; every drop is recorded with its rule.


@dataclass
class CleanArticle:
    """An article after cleaning: what becomes a Document."""

    title: str
    date: str | None
    url: str | None
    paragraphs: list[str]
    lines: list[int] = field(default_factory=list)  # the line number each paragraph came from


def _strip_inline(no: int, line: str, drops: list[Drop]) -> str:
    """Remove links' addresses, hashtags and screen-reader labels from a line, recording each."""
    before = len(drops)
    if "](" in line:
        for m in _MD_LINK.finditer(line):
            drops.append(Drop(no, m[2], "url"))
        line = _MD_LINK.sub(r"\1", line)
    if "http" in line or "pic.twitter" in line:
        # A line that is only addresses (a source link) goes, and so do tweets' short links; an
        # address inside a sentence stays, it is part of what the sentence says.
        only_urls = not _URL.sub("", line).strip()
        for url in _URL.findall(line):
            if only_urls or url.startswith(_SHORT_LINK):
                drops.append(Drop(no, url, "url"))
        line = _URL.sub(lambda m: "" if only_urls or m[0].startswith(_SHORT_LINK) else m[0], line)
    if "#" in line:
        for tag in _HASHTAG.findall(line):
            drops.append(Drop(no, tag, "hashtag"))
        line = _HASHTAG.sub("", line)
    if _LINK_LABEL in line:
        drops.append(Drop(no, _LINK_LABEL.strip(", "), "link label"))
        line = line.replace(_LINK_LABEL, "")
    if len(drops) == before:
        return line  # untouched: its own spacing stays (「応力ベクトル  と」 had a formula between)
    return re.sub(r"\s{2,}", " ", line).strip()


# An item of a list someone typed ("- 日時: 3月1日", "・場所: 東京", "1. 概要"): content, not a menu label.
_LIST_ITEM = re.compile(r"^(?:[-*+・]\s*\S|\d{1,2}[.)．]\s*\S|[（(]\d{1,2}[)）])")


def _menu_like(line: str) -> bool:
    if line.startswith("•") or line.endswith(_ELLIPSES):  # a rendered link list bullet, a cut teaser
        return True
    return len(line) < SHORT_LINE and _LIST_ITEM.match(line) is None


def _prefix_index(lines: Iterable[str], k: int = 10) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for line in lines:
        if len(line) > k:
            index.setdefault(line[:k], []).append(line)
    return index


def clean_articles(articles: Sequence[Article]) -> tuple[list[CleanArticle], list[Drop]]:
    """Drop page furniture from the articles of one file; return the articles kept and every drop."""
    drops: list[Drop] = []
    # Pass 1, per line: inline junk, furniture lines, exact repeats, cut previews of a later full line.
    work: list[tuple[Article, list[Line]]] = []
    for a in articles:
        title = _strip_inline(a.title_line, a.title, drops) if a.title else a.title
        kept = [(no, _strip_inline(no, t, drops) if t and _INLINE_HINT.search(t) else t) for no, t in a.lines]
        work.append((replace(a, title=title, lines=kept), a.lines))
    # Built only when some line ends with an ellipsis: most files have none.
    prefixes: dict[str, list[str]] | None = None
    seen_sentences: set[str] = set()  # file-wide: a sentence said twice (tweet preview, full text) is kept once
    out: list[tuple[Article, list[Line], list[Line]]] = []
    for a, raw in work:
        seen_labels: set[str] = {a.title} if a.title else set()  # per article: each post has its own 【概要】
        body: list[Line] = []
        for no, line in a.lines:
            if not line:
                body.append((no, ""))
                continue
            sentence = ends_sentence(line)
            if not sentence and _MENU_LINE.match(line):
                drops.append(Drop(no, line, "menu"))
            elif line in seen_sentences or line in seen_labels:
                drops.append(Drop(no, line, "repeated"))
            elif line.endswith(_ELLIPSES) and _is_cut_preview(
                line,
                prefixes := prefixes if prefixes is not None else _prefix_index(t for w, _ in work for _, t in w.lines),
            ):
                drops.append(Drop(no, line, "cut preview"))
            else:
                # A headline may title several articles of one file (JSQuAD grouped per article): only
                # sentences are unique file-wide; other lines repeat only within their article.
                (seen_sentences if sentence else seen_labels).add(line)
                body.append((no, line))
        out.append((a, raw, body))

    # Pass 2, per article: link lists (long runs of non-sentences), then breadcrumbs before an untitled head.
    result: list[CleanArticle] = []
    for a, raw, body in out:
        for no, t in a.headers:
            drops.append(Drop(no, t, "header"))  # its date (and author) became the article's metadata
        for no, t in a.furniture:
            drops.append(Drop(no, t, PAGE_FURNITURE))
        body = _drop_menu_runs(body, drops, keep_head=not a.title)
        title, title_line = a.title, a.title_line
        if not title or a.html:
            body = _drop_breadcrumbs(raw, body, drops, titled=bool(title))
        if not title:
            title, title_line, body = _title_from_body(body)
        paragraphs = [t for _, t in body if t]
        text_chars = sum(len(p) for p in paragraphs)
        if not paragraphs or (text_chars < MIN_ARTICLE_CHARS and not any(has_sentence(p) for p in paragraphs)):
            no_of = {t: no for no, t in body}
            for p in paragraphs:
                drops.append(Drop(no_of.get(p, 0), p, "no article text"))
            if title and (paragraphs or a.title):
                drops.append(Drop(title_line, title, "title without text"))
            continue
        numbers = [no for no, t in body if t]
        result.append(CleanArticle(title=title, date=a.date, url=a.url, paragraphs=paragraphs, lines=numbers))
    drops.sort(key=lambda d: d.line_no)  # stable: pieces of one line stay in the order found
    return result, drops


def _is_cut_preview(line: str, prefixes: dict[str, list[str]]) -> bool:
    stem = line.rstrip("".join(_ELLIPSES) + " ")
    if len(stem) <= 10:
        return False
    return any(other != line and other.startswith(stem) for other in prefixes.get(stem[:10], ()))


_TEASER_ENDS = ("!", "?", *_ELLIPSES)


def _breaks_run(line: str) -> bool:
    """Prose or a table row ends a run of menu lines; a teaser with a 。 inside but a "!" at the end does not."""
    if line[0] == "|":  # a Markdown table row is content, like a sentence
        return True
    return has_sentence(line) and not line.endswith(_TEASER_ENDS)


def _drop_menu_runs(body: list[Line], drops: list[Drop], *, keep_head: bool) -> list[Line]:
    """Drop runs of non-sentence lines that look like link lists: mostly labels, or very long.

    keep_head: leave the lines before the first sentence alone (an untitled article's title is
    among them; `_drop_breadcrumbs` deals with them).
    """
    runs: list[list[int]] = []
    current: list[int] = []
    in_head = keep_head
    for i, (_, t) in enumerate(body):
        if not t:
            continue
        if in_head:
            in_head = not has_sentence(t)
            if in_head:
                continue
        if _breaks_run(t):
            if current:
                runs.append(current)
            current = []
        else:
            current.append(i)
    if current:
        runs.append(current)
    dropped: set[int] = set()
    for run in runs:
        labels = sum(1 for i in run if _menu_like(body[i][1]))
        # Mostly labels, or long and a third labels: a typed list of facts has no labels and stays.
        if (len(run) >= 3 and labels * 2 > len(run)) or (len(run) >= MENU_RUN and labels * 3 >= len(run)):
            dropped.update(run)
            for i in run:
                drops.append(Drop(body[i][0], body[i][1], "link list"))
    if not dropped:
        return body
    # A short sentence boxed in by link lists ("メールマガジンのご登録はこちらから。") belongs to them,
    # as long as the article keeps other sentences (a one-sentence page between menus stays whole).
    text = [i for i, (_, t) in enumerate(body) if t]
    kept_sentences = sum(1 for i in text if i not in dropped and has_sentence(body[i][1]))
    for k in range(1, len(text) - 1):
        i = text[k]
        if kept_sentences < 2:
            break
        if i in dropped or len(body[i][1]) >= ISLAND_MAX:
            continue
        if text[k - 1] in dropped and text[k + 1] in dropped:
            dropped.add(i)
            kept_sentences -= has_sentence(body[i][1])
            drops.append(Drop(body[i][0], body[i][1], "between link lists"))
    return [line for i, line in enumerate(body) if i not in dropped]


def _drop_breadcrumbs(raw: list[Line], body: list[Line], drops: list[Drop], *, titled: bool) -> list[Line]:
    """Short labels stacked above an untitled article's headline ("ニュース", "ウクライナ戦争") are breadcrumbs.

    Only labels that share their paragraph with another line count: a short line alone in its
    paragraph is a title (「東京都」, 「第3回の調査結果」 above a date line) and stays. When the
    stacked labels run into the first sentence, the last of them is the title and stays too
    (unless the article has a title already: a web page's, from its metadata). Dates are not labels.
    """
    head: list[int] = []  # indices into raw of the short labels before the first headline or sentence
    reached_sentence = True  # labels only: keep the last one as the title of whatever follows
    for i, (_, t) in enumerate(raw):
        if not t:
            continue
        if has_sentence(t) or len(t) >= SHORT_LINE:
            reached_sentence = has_sentence(t)
            break
        if not _DATE_IN_TEXT.search(t):
            head.append(i)

    def stacked(i: int) -> bool:
        return (i > 0 and bool(raw[i - 1][1])) or (i + 1 < len(raw) and bool(raw[i + 1][1]))

    labels = [i for i in head if stacked(i)]
    if reached_sentence and not titled and labels and labels[-1] == head[-1]:
        labels.pop()  # the label right above the text is its title
    crumbs = {raw[i][0] for i in labels}
    if not crumbs:
        return body
    kept = []
    for no, t in body:
        if t and no in crumbs:
            drops.append(Drop(no, t, "menu"))
        else:
            kept.append((no, t))
    return kept


def _title_from_body(body: list[Line]) -> tuple[str, int, list[Line]]:
    """An untitled article's (title, its line, body): its first line if that is a headline, else the
    start of its first sentence (which then stays in the body)."""
    first = next((i for i, (_, t) in enumerate(body) if t), None)
    if first is None:
        return "", 0, body
    no, line = body[first]
    if not has_sentence(line) and len(line) <= TITLE_MAX and any(t for _, t in body[first + 1 :]):
        return line, no, body[:first] + body[first + 1 :]
    sentences = split_sentences(line)
    return (sentences[0] if sentences else line)[:60], 0, body


# ---------------------------------------------------------------------------------------------
# Files and folders


@dataclass(frozen=True)
class FileReading:
    """One file as read: its articles, what the cleaning dropped (and why), and its build-report numbers."""

    docs: list[Document]
    drops: list[Drop]
    report: FileReport
    encoding: str | None = None


def list_seed_files(seeds_dir: Path) -> list[Path]:
    """The files in a seeds folder that are read as articles (.txt .md .html .htm .pdf .docx, and .doc to be
    reported; not hidden), in a stable order."""
    root = Path(seeds_dir)
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in LISTED_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def read_articles(path: Path, data: bytes | None = None) -> tuple[list[Article], str]:
    """Step 1 for one file: decode its bytes and run the reader of its format (the encoding is "" for PDF/DOCX)."""
    suffix = Path(path).suffix.lower()
    if suffix in REFUSED_SUFFIXES:
        raise UnreadableFileError(REFUSED_SUFFIXES[suffix])
    if suffix in OFFICE_SUFFIXES:
        try:
            return read_office_articles(Path(path)), ""
        except OfficeReadError as exc:
            raise UnreadableFileError(str(exc)) from exc
    data = Path(path).read_bytes() if data is None else data
    text, encoding = detect_encoding(data)
    if Path(path).suffix.lower() in HTML_SUFFIXES:
        return read_html_articles(text), encoding
    return read_text_articles(text), encoding


def read_file(path: Path, *, root: Path | None = None) -> FileReading:
    """Read one seed file; a file with no usable article comes back with status "skipped" and a reason."""
    # A big file becomes millions of small strings and tuples, and the cyclic garbage collector
    # rescans the growing heap again and again (a third of the time on a 10 MB file). Reading
    # makes no reference cycles worth collecting, so the collector waits until the file is read.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _read_file(Path(path), root=root)
    finally:
        if paused:
            gc.enable()


def _read_file(path: Path, *, root: Path | None) -> FileReading:
    source = path.relative_to(root).as_posix() if root else path.name
    try:
        articles, encoding = read_articles(path)
    except (UnreadableFileError, OSError) as exc:
        return FileReading(docs=[], drops=[], report=FileReport(path=source, status="skipped", reason=str(exc)))
    cleaned, drops = clean_articles(articles)
    dropped_chars = sum(len(d.text) for d in drops)
    if not cleaned:
        reason = "no article text found (empty, or only menus and links; `rag inspect` shows what was dropped)"
        report = FileReport(path=source, dropped_chars=dropped_chars, status="skipped", reason=reason)
        return FileReading(docs=[], drops=drops, report=report, encoding=encoding)
    stem = Path(source).with_suffix("").as_posix()
    # The suffix stays in a PDF's or DOCX's id: 記事.pdf is often saved beside 記事.docx or 記事.txt.
    if Path(source).suffix.lower() in OFFICE_SUFFIXES:
        stem = Path(source).as_posix()
    docs = [
        Document(
            doc_id=f"{stem}#{i}",
            source=source,
            title=a.title,
            date=a.date,
            url=a.url,
            text="\n\n".join(a.paragraphs),
            pages=_page_offsets(a, articles[0]) if articles and articles[0].pages else (),
        )
        for i, a in enumerate(cleaned)
    ]
    if articles and articles[0].pages:
        drops = [replace(d, page=articles[0].page_of(d.line_no)) for d in drops]
    kept = sum(len(d.text) for d in docs)
    report = FileReport(path=source, articles=len(docs), kept_chars=kept, dropped_chars=dropped_chars)
    return FileReading(docs=docs, drops=drops, report=report, encoding=encoding)


def _page_offsets(clean: CleanArticle, article: Article) -> tuple[tuple[int, int], ...]:
    """(offset in the document's text, page) where each page's paragraphs start."""
    out: list[tuple[int, int]] = []
    offset = 0
    for text, no in zip(clean.paragraphs, clean.lines):
        page = article.page_of(no)
        if page is not None and (not out or out[-1][1] != page):
            out.append((offset, page))
        offset += len(text) + 2  # the "\n\n" between paragraphs
    return tuple(out)


def read_for_build(path: Path, rel: str, seeds_dir: Path) -> FileReading:
    """read_file, except that an unexpected failure on one file skips that file instead of the whole build."""
    try:
        return read_file(path, root=seeds_dir)
    except Exception as exc:  # a reader bug on one odd file must not keep every other file out of the index
        reason = f"could not be read ({type(exc).__name__}: {exc}); fix or remove the file and run `rag build` again"
        return FileReading(docs=[], drops=[], report=FileReport(path=rel, status="skipped", reason=reason))


def load_file(path: Path, *, root: Path | None = None) -> list[Document]:
    """Read one seed file into its articles; raise UnreadableFileError if it has none."""
    reading = read_file(path, root=root)
    if reading.report.status == "skipped":
        raise UnreadableFileError(reading.report.reason)
    return reading.docs


def split_articles(text: str) -> list[tuple[str, str | None, str | None, str]]:
    """(title, date, url, body) per article of a text page, cleaned; kept for callers of the old API."""
    cleaned, _ = clean_articles(read_text_articles(text))
    return [(a.title, a.date, a.url, "\n\n".join(a.paragraphs)) for a in cleaned]


def load_documents(seeds_dir: Path) -> tuple[list[Document], list[SkippedFile]]:
    """Read every seed file under seeds_dir; unreadable files are reported, not fatal."""
    docs: list[Document] = []
    skipped: list[SkippedFile] = []
    for path in list_seed_files(seeds_dir):
        reading = read_file(path, root=Path(seeds_dir))
        if reading.report.status == "skipped":
            skipped.append(SkippedFile(path=reading.report.path, reason=reading.report.reason))
        docs.extend(reading.docs)
    return docs, skipped


# ---------------------------------------------------------------------------------------------
# What users see


def format_reading(reading: FileReading) -> str:
    """How one file was read, for `rag inspect`: each article, then every dropped piece with its line and rule."""
    r = reading.report
    out = [f"{r.path}: {r.articles} 記事, 残した文字 {r.kept_chars}, 落とした文字 {r.dropped_chars}"]
    if reading.encoding:
        out[0] += f" (文字コード {reading.encoding})"
    if r.status == "skipped":
        out.append(f"スキップ: {r.reason}")
    for i, doc in enumerate(reading.docs, start=1):
        out += [
            "",
            f"=== 記事 {i}: {doc.title}",
            f"日付: {doc.date or '-'}",
            f"URL: {doc.url or '-'}",
            "",
            _with_pages(doc),
        ]
    if reading.drops:
        out += ["", f"--- 落とした部分 ({len(reading.drops)})"]
        for d in reading.drops:
            where = f"{d.line_no:>5}行" if d.line_no else "    -  "
            if d.page is not None:
                where = f"p.{d.page:<4}" + where
            text = d.text if len(d.text) <= 80 else d.text[:79] + "…"
            out.append(f"{where} [{d.rule}] {text}")
    return "\n".join(out)


def _with_pages(doc: Document) -> str:
    """A document's text, with a 「--- p. N ---」 line where each page of a PDF starts."""
    if not doc.pages:
        return doc.text
    parts = []
    bounds = [*doc.pages, (len(doc.text), 0)]
    for (start, page), (end, _) in itertools.pairwise(bounds):
        parts.append(f"--- p. {page} ---\n" + doc.text[start:end].strip("\n"))
    return "\n\n".join(parts)


def summarize_skipped(skipped: Sequence[SkippedFile], *, limit: int = 5, full_list: str = "") -> str:
    """One readable paragraph about skipped files: counts per reason, the first few names, where the full list is."""
    if not skipped:
        return ""
    by_reason: dict[str, list[str]] = {}
    for s in skipped:
        by_reason.setdefault(s.reason, []).append(s.path)
    parts = []
    for reason, count in Counter(s.reason for s in skipped).most_common():
        names = by_reason[reason]
        shown = ", ".join(names[:limit]) + (f" ほか {len(names) - limit} 件" if len(names) > limit else "")
        parts.append(f"{count} 件: {reason} ({shown})")
    where = f" 全件の一覧: {full_list}" if full_list else ""
    return f"{len(skipped)} ファイルをスキップしました。" + " / ".join(parts) + where
