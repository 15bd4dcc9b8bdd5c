"""Read a seeds folder into clean Documents: decode, drop page boilerplate, one article each."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from rag.types import Document, Drop, FileReport, SkippedFile

SEED_SUFFIXES = (".txt", ".md")
# cp932 is Windows' superset of Shift_JIS; Japanese pages saved on Windows use its extra characters.
FALLBACK_ENCODINGS = ("cp932", "euc_jp")
MIN_ARTICLE_CHARS = 40  # shorter "articles" are stray tweets or captions, not worth a passage

_URL = re.compile(r"https?://\S+|pic\.twitter\.com/\S+")
_HASHTAG = re.compile(r"\s#\w+")
# "タイトル2025年03月20日 17:36": a blog post header with the date glued to the title.
_TITLE_WITH_DATE = re.compile(r"^(?P<title>.{4,}?)\s*(?P<date>\d{4}年\d{1,2}月\d{1,2}日)\s+\d{1,2}:\d{2}$")
# "2025年12月8日月曜日": a blog's day header; the next line is the post title.
_DAY_HEADER = re.compile(r"^(?P<date>\d{4}年\d{1,2}月\d{1,2}日)[月火水木金土日]曜日$")
# "— NHKニュース (@nhk_news) February 21, 2025": the byline of an embedded tweet.
_TWEET_BYLINE = re.compile(r"^[—―-]\s*(?P<who>.+?)\s*\(@\w+\)\s*(?P<date>[A-Z][a-z]+ \d{1,2}, \d{4})$")
_DATE_IN_TEXT = re.compile(r"\d{4}年\s*\d{1,2}月\s*\d{1,2}日")
# How a paragraph of article text ends; headlines and teasers end otherwise (or with "!").
_PARAGRAPH_END = ("。", "」", "』", "■")
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

# A line that opens a block of links to other pages: everything from here to the next
# article is menus, rankings or recommendations, never text of this article.
_TAIL_MARKERS = (
    "あわせて読みたい",
    "こんな記事も読まれています",
    "人気ランキング",
    "おすすめニュース",
    "[ニュース] ランキング",
    "ニュース速報",
    "関連記事",
    "話題",
    "MAGAZINE",
    "【引用・参照・底本】",
    "著者について",
    "コメント",
)
# Single lines of page furniture that can sit anywhere (navigation, image credits, bylines).
_DROP_LINE = re.compile(
    r"^(?:"
    r".*スキップ.*|"
    r"ラベル .* の投稿を表示しています。.*|"
    r"最新記事|"
    r"\d{1,3}|"  # ranking positions
    r"•.*|"  # ranking list items
    r".*で作成|"  # "Microsoft Designerで作成": image credit
    r"引用[:：].*|"
    r".*\S+@\S+\.\w+|"  # author e-mail
    r".* アクセス|"
    r"(?:フォトニュース|トレンド)"
    r")$"
)


@dataclass
class _Draft:
    title: str = ""
    date: str | None = None
    url: str | None = None
    lines: list[str] = field(default_factory=list)
    skipping: bool = False  # inside a menu/ranking block until the next article starts
    title_next: bool = False  # after a blog's day header the next line is the title, however short

    def add(self, line: str) -> None:
        if not self.title and not self.lines and len(line) < 15 and not self.title_next:
            return  # a short line before any title is a site section label ("ウクライナ戦争")
        if not self.title:
            self.title = line
        self.lines.append(line)


class UnreadableFileError(ValueError):
    """A seed file that is not text in a known Japanese encoding."""


def decode_text(data: bytes) -> str:
    """Decode UTF-8, Shift_JIS (cp932) or EUC-JP bytes; raise UnreadableFileError otherwise."""
    if b"\x00" in data:
        raise UnreadableFileError("binary file (contains NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    candidates: list[tuple[float, str]] = []
    for encoding in FALLBACK_ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        candidates.append((_japanese_ratio(text), text))
    if not candidates:
        raise UnreadableFileError("not UTF-8, Shift_JIS or EUC-JP text")
    # Bytes can decode without error in both legacy encodings; the right one yields kana.
    ratio, text = max(candidates, key=lambda c: c[0])
    controls = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f")
    if ratio == 0 or controls > len(text) / 100:
        raise UnreadableFileError("not UTF-8, Shift_JIS or EUC-JP text")
    return text


def _japanese_ratio(text: str) -> float:
    kana = sum(1 for ch in text if "\u3040" <= ch <= "\u30ff")
    return kana / max(len(text), 1)


def _clean_line(raw: str) -> str:
    line = unicodedata.normalize("NFC", raw).replace("\u3000", " ").strip()
    line = _URL.sub("", line)
    line = _HASHTAG.sub("", line)
    line = line.replace(", opens new tab", "")
    return line.strip()


def _is_tail_marker(line: str) -> bool:
    return any(line == m or line.startswith(m) for m in _TAIL_MARKERS) and len(line) < 40


def split_articles(text: str) -> list[tuple[str, str | None, str | None, str]]:
    """Split one saved page into (title, date, url, body) per article, boilerplate removed."""
    drafts: list[_Draft] = [_Draft()]
    seen: set[str] = set()
    previous_kept = ""

    for raw in text.splitlines():
        urls = _URL.findall(raw)
        line = _clean_line(raw)
        cur = drafts[-1]
        if urls and cur.url is None and not urls[0].startswith(("https://t.co", "pic.twitter")):
            cur.url = urls[0].rstrip(")」")
        if not line:
            continue

        if m := _DAY_HEADER.match(line):
            drafts.append(_Draft(date=m["date"], title_next=True))
            continue
        if m := _TITLE_WITH_DATE.match(line):
            drafts.append(_Draft(title=m["title"], date=m["date"], lines=[m["title"]]))
            continue
        if m := _TWEET_BYLINE.match(line):
            # The tweet's headline is the line just before its byline: move it to a new article.
            headline = previous_kept
            if headline and cur.lines and cur.lines[-1] == headline:
                cur.lines.pop()
            if cur.title == headline and not cur.lines:
                cur.title = ""
            drafts.append(_Draft(title=headline, date=m["date"], lines=[headline] if headline else []))
            previous_kept = ""
            continue
        if _is_tail_marker(line):
            if not cur.skipping:
                _drop_teasers(cur)
            cur.skipping = True
            continue
        if cur.skipping or _DROP_LINE.match(line):
            continue
        if line.endswith("…") or line in seen or (len(line) >= 20 and any(line in e for e in seen)):
            # Embedded tweets show a cut preview ("…") and then the full text; pages repeat rankings.
            continue
        seen.add(line)
        cur.add(line)
        previous_kept = line

    articles = []
    for d in drafts:
        lines = d.lines[1:] if d.lines and d.lines[0] == d.title else d.lines
        body = "\n\n".join(lines).strip()
        if len(body) < MIN_ARTICLE_CHARS:
            continue
        date = normalize_date(d.date) if d.date else _first_date(d.lines[:8])
        articles.append((d.title or lines[0][:60], date, d.url, body))
    return articles


def normalize_date(text: str) -> str | None:
    """'2025年3月13日' or 'February 21, 2025' -> '2025-03-13'; None if it is not a date."""
    if m := re.search(r"(\d{4})年\s*(\d{1,2})月\s*(\d{1,2})日", text):
        y, mo, d = m.groups()
    elif (m := re.search(r"([A-Z][a-z]+) (\d{1,2}), (\d{4})", text)) and m[1] in _MONTHS:
        y, mo, d = m[3], str(_MONTHS[m[1]]), m[2]
    else:
        return None
    return f"{int(y):04d}-{int(mo):02d}-{int(d):02d}"


def _drop_teasers(draft: _Draft) -> None:
    """Drop headline-like lines between the last full sentence and a recommendation block."""
    while draft.lines and not draft.lines[-1].endswith(_PARAGRAPH_END) and draft.lines[-1] != draft.title:
        draft.lines.pop()


def _first_date(lines: list[str]) -> str | None:
    for line in lines:
        if m := _DATE_IN_TEXT.search(line):
            return normalize_date(m.group(0))
    return None


def file_sha256(path: Path) -> str:
    """Hash of a file's bytes, used to tell whether the index is stale."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def list_seed_files(seeds_dir: Path) -> list[Path]:
    """The files in a seeds folder that are read as articles, in a stable order."""
    return sorted(p for p in Path(seeds_dir).rglob("*") if p.is_file() and p.suffix.lower() in SEED_SUFFIXES)


def load_file(path: Path, *, root: Path | None = None) -> list[Document]:
    """Read one seed file into its articles; raise UnreadableFileError if it has none."""
    text = decode_text(path.read_bytes())
    source = str(path.relative_to(root)) if root else path.name
    articles = split_articles(text)
    if not articles:
        raise UnreadableFileError("no article text found (empty, or only menus and links)")
    stem = Path(source).with_suffix("").as_posix()
    return [
        Document(doc_id=f"{stem}#{i}", source=source, title=title, date=date, url=url, text=body)
        for i, (title, date, url, body) in enumerate(articles)
    ]


@dataclass(frozen=True)
class FileReading:
    """One file as read: its articles, what the cleaning dropped (and why), and its build-report numbers."""

    docs: list[Document]
    drops: list[Drop]
    report: FileReport
    encoding: str | None = None


def read_file(path: Path, *, root: Path | None = None) -> FileReading:
    """Read one seed file; a file with no usable article comes back with status "skipped" and a reason."""
    # Interim version over load_file(); the per-format readers replace it.
    source = str(path.relative_to(root)) if root else path.name
    try:
        docs = load_file(path, root=root)
    except (UnreadableFileError, OSError) as exc:
        return FileReading(docs=[], drops=[], report=FileReport(path=source, status="skipped", reason=str(exc)))
    kept = sum(len(d.text) for d in docs)
    return FileReading(docs=docs, drops=[], report=FileReport(path=source, articles=len(docs), kept_chars=kept))


def load_documents(seeds_dir: Path) -> tuple[list[Document], list[SkippedFile]]:
    """Read every .txt/.md file under seeds_dir; unreadable files are reported, not fatal."""
    docs: list[Document] = []
    skipped: list[SkippedFile] = []
    for path in list_seed_files(seeds_dir):
        try:
            docs.extend(load_file(path, root=Path(seeds_dir)))
        except (UnreadableFileError, OSError) as exc:
            skipped.append(SkippedFile(path=str(path.relative_to(seeds_dir)), reason=str(exc)))
    return docs, skipped
