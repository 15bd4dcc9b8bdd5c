"""How long reading one big seed file takes: generated 1/10/50 MB text files and a large HTML page.

Reading must be linear in the file size (the old boilerplate check compared every line with every
earlier line). Run: `PYTHONPATH=. python bench/reading.py [--sizes 1 10 50] [--html-mb 5]`.

With --jsquad FILE it also checks generality on text nobody tuned the rules on: JSQuAD paragraphs
written as files (one per paragraph, and grouped per article) are read back, and each paragraph
must be found whole in the documents of its file.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import unicodedata
from pathlib import Path

from rag.documents import load_documents, read_file
from rag.evaluation import write_squad_files

ARTICLE = (
    "最新記事\nニュース\n\n第{n}回の調査結果、{k}件の報告\n\n{date}\n\n"
    "市によると、第{n}回の調査では{k}件の報告があり、前回より{d}件多かった。\n\n"
    "担当者は「{n}回目の結果を詳しく分析したい」と話した。対象は{k}世帯で、回答率は{p}%だった。\n\n"
    "コメントを求められた市長は「結果を重く受け止める」と述べた。\n\n"
    "あわせて読みたい\n  • 関連記事{n}A\n  • 関連記事{n}B\n人気ランキング\n  • 1\n    話題の記事{k}\n---\n"
)


def article(n: int) -> str:
    """One generated article with a site menu, dated body and a link list; every number differs."""
    return ARTICLE.format(n=n, k=n * 7 % 1000 + n, d=n % 13, p=n % 100, date=f"2025年{n % 12 + 1}月{n % 28 + 1}日")


PROSE = (
    "{title}\n\n{date}\n\n"
    + "\n\n".join(
        f"第{{n}}回の調査{i}では、市内の{{k}}世帯のうち{{p}}%が回答し、前回より{{d}}件多い報告があった。"
        "担当者は「結果を詳しく分析し、来年度の計画に反映したい」と話しており、詳しい内容は今月末に公表される予定だ。"
        for i in range(6)
    )
    + "\n---\n"
)


def prose_article(n: int) -> str:
    """A generated article shaped like the seed pages' text: a title, a date, long paragraphs."""
    return PROSE.format(
        title=f"第{n}回の調査結果", n=n, k=n * 7 % 1000 + n, d=n % 13, p=n % 100, date=f"2025年{n % 12 + 1}月{n % 28 + 1}日"
    )


def text_of_size(mb: float, *, kind: str = "menus") -> str:
    """Generated articles adding up to about mb megabytes of UTF-8.

    kind="menus": short lines, half of them menus and link lists (about 36,000 lines per MB, a worst
    case for per-line work); kind="prose": long paragraphs (about 6,000 lines per MB, like the seeds).
    """
    make = article if kind == "menus" else prose_article
    parts, size, n = [], 0, 0
    target = int(mb * 1_000_000)
    while size < target:
        a = make(n)
        parts.append(a)
        size += len(a.encode("utf-8"))
        n += 1
    return "".join(parts)


def html_of_size(mb: float) -> str:
    """One saved page whose article has about mb megabytes of paragraphs, with nav and footer."""
    paras, size, n = [], 0, 0
    while size < mb * 1_000_000:
        p = f"<p>市によると、第{n}回の調査では{n * 7}件の報告があり、前回より{n % 13}件多かった。</p>\n"
        paras.append(p)
        size += len(p.encode("utf-8"))
        n += 1
    nav = "".join(f'<li><a href="/c{i}">カテゴリ{i}</a></li>' for i in range(50))
    return (
        '<html><head><meta charset="utf-8"><title>大きな記事</title></head><body>'
        f"<nav><ul>{nav}</ul></nav><article><h1>大きな記事</h1>{''.join(paras)}</article>"
        "<footer><a href='/about'>会社概要</a></footer></body></html>"
    )


def _as_read(text: str) -> str:
    """A paragraph as the reader normalizes lines (NFC, ideographic space, trimmed)."""
    lines = unicodedata.normalize("NFC", text).replace("\u3000", " ").splitlines()
    return "\n\n".join(line.strip() for line in lines if line.strip())


def jsquad_check(path: Path, tmp: Path) -> None:
    """Write JSQuAD paragraphs as seed files both ways and count the paragraphs read back whole."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    paragraphs = []  # (title, body) per paragraph, in file order
    for article in data:
        for p in article["paragraphs"]:
            title, sep, body = p["context"].partition(" [SEP] ")
            paragraphs.append((title, body) if sep else (article.get("title", ""), p["context"]))
    for per in ("paragraph", "article"):
        out = tmp / f"jsquad_{per}"
        write_squad_files(path, out, per=per)
        started = time.perf_counter()
        docs, skipped = load_documents(out)
        seconds = time.perf_counter() - started
        texts = [d.text for d in docs]
        titled = {(d.title, d.text) for d in docs}
        whole = [any(_as_read(body) in t for t in texts) for _, body in paragraphs]
        # Whole and under its own title (the title is embedded with every passage).
        with_title = sum(1 for (title, body) in paragraphs if (_as_read(title), _as_read(body)) in titled)
        missing = [body[:40] for (_, body), ok in zip(paragraphs, whole) if not ok]
        print(
            f"JSQuAD per {per}: {len(list(out.iterdir()))} files, {len(docs)} documents, {len(skipped)} skipped, "
            f"{sum(whole)}/{len(paragraphs)} paragraphs found whole, {with_title} as a document with their title "
            f"({seconds:.1f} s)"
        )
        for m in missing[:5]:
            print(f"  not whole: {m}…")


ENCODING_TEXTS = {
    "title only": "円相場が急落",
    "short": "東京都\n\n都は新しい条例を発表した。",
    "paragraph": "円相場が急落\n\n13日の東京外国為替市場で円相場が急落し、1ドル=160円台をつけた。市場関係者は「介入への警戒感が強まっている」と話した。",
}
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "cp932", "shift_jis", "euc_jp", "iso2022_jp")


def encoding_table() -> None:
    """charset-normalizer's best guess alone vs detect_encoding (with its help) on short Japanese texts."""
    from charset_normalizer import from_bytes

    from rag.documents import detect_encoding

    print(f"{'text':<11}{'written as':<12}{'charset-normalizer':<22}{'detect_encoding':<18}")
    for name, text in ENCODING_TEXTS.items():
        for enc in ENCODINGS:
            data = text.encode(enc)
            best = from_bytes(data).best()
            alone = "ok" if best is not None and str(best) == text else "WRONG"
            guess = f"{best.encoding if best else None} {alone}"
            decoded, used = detect_encoding(data)
            ours = f"{used} {'ok' if decoded == text else 'WRONG'}"
            print(f"{name:<11}{enc:<12}{guess:<22}{ours:<18}")


def main() -> None:
    """Write the files to a temporary folder, read each once and print the times."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=float, nargs="*", default=[1, 10, 50], help="text file sizes in MB")
    parser.add_argument("--html-mb", type=float, default=5, help="size of the HTML page in MB (0: none)")
    parser.add_argument("--encoding", default="utf-8", help="encoding of the text files (e.g. cp932)")
    parser.add_argument("--jsquad", type=Path, help="a SQuAD-format JSON file (JSQuAD valid) to read back as files")
    parser.add_argument("--encodings", action="store_true", help="print the encoding detection table first")
    args = parser.parse_args()
    if args.encodings:
        encoding_table()
    with tempfile.TemporaryDirectory() as tmp:
        if args.jsquad:
            jsquad_check(args.jsquad, Path(tmp))
        files = []
        for kind in ("prose", "menus"):
            for mb in args.sizes:
                path = Path(tmp) / f"{kind}_{mb:g}mb.txt"
                path.write_bytes(text_of_size(mb, kind=kind).encode(args.encoding))
                files.append(path)
        if args.html_mb:
            path = Path(tmp) / f"page_{args.html_mb:g}mb.html"
            path.write_text(html_of_size(args.html_mb), encoding="utf-8")
            files.append(path)
        print(f"{'file':<22}{'MB':>8}{'lines':>10}{'seconds':>10}{'articles':>10}{'kept chars':>12}{'dropped':>10}  encoding")
        for path in files:
            started = time.perf_counter()
            reading = read_file(path)
            seconds = time.perf_counter() - started
            r = reading.report
            mb = path.stat().st_size / 1e6
            lines = path.read_bytes().count(b"\n")
            print(
                f"{path.name:<22}{mb:>8.1f}{lines:>10}{seconds:>10.2f}{r.articles:>10}{r.kept_chars:>12}{r.dropped_chars:>10}"
                f"  {reading.encoding}"
            )


if __name__ == "__main__":
    main()
