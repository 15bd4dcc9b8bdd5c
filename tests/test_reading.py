"""Files a user saves, written by the tests themselves in every supported format and encoding."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.documents import (
    detect_encoding,
    format_reading,
    list_seed_files,
    load_documents,
    read_file,
    summarize_skipped,
)
from rag.text import char_bigrams, split_sentences
from rag.types import SkippedFile

BODY = "13日の東京外国為替市場で円相場が急落し、1ドル=160円台をつけた。\n\n市場関係者は「介入への警戒感が強まっている」と話した。"
SENTENCES = split_sentences(BODY)


def _read(tmp_path: Path, name: str, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return read_file(path, root=tmp_path)


def _all_text(reading) -> str:
    return "\n".join(f"{d.title}\n{d.text}" for d in reading.docs)


def test_short_title_then_one_paragraph(tmp_path: Path) -> None:
    reading = _read(tmp_path, "tokyo.txt", "東京都\n\n都は新しい条例を発表した。")
    [doc] = reading.docs
    assert doc.title == "東京都"
    assert doc.text == "都は新しい条例を発表した。"


def test_markdown_heading_is_the_title_and_every_paragraph_is_body(tmp_path: Path) -> None:
    [doc] = _read(tmp_path, "yen.md", "# 円相場が急落\n\n" + BODY + "\n").docs
    assert doc.title == "円相場が急落"
    assert all(s in doc.text for s in SENTENCES)


def test_markdown_subheadings_stay_inside_the_article(tmp_path: Path) -> None:
    text = "# 円相場が急落\n\n## 背景\n\n" + BODY + "\n\n## 今後\n\n日銀の対応が焦点になる。\n"
    [doc] = _read(tmp_path, "yen.md", text).docs
    assert "背景" in doc.text and "日銀の対応が焦点になる。" in doc.text


def test_one_paragraph_without_title(tmp_path: Path) -> None:
    [doc] = _read(tmp_path, "one.txt", SENTENCES[0]).docs
    assert doc.text == SENTENCES[0]
    assert doc.title and SENTENCES[0].startswith(doc.title)


def test_articles_separated_by_a_dash_line(tmp_path: Path) -> None:
    text = "円相場が急落\n\n" + BODY + "\n---\n東京都\n\n都は新しい条例を発表した。\n"
    docs = _read(tmp_path, "two.txt", text).docs
    assert [d.title for d in docs] == ["円相場が急落", "東京都"]
    assert docs[1].text == "都は新しい条例を発表した。"


def test_crlf_line_ends(tmp_path: Path) -> None:
    [doc] = _read(tmp_path, "crlf.txt", ("円相場が急落\n\n" + BODY).replace("\n", "\r\n")).docs
    assert doc.title == "円相場が急落" and "\r" not in doc.text
    assert all(s in doc.text for s in SENTENCES)


def test_a_sentence_is_never_dropped_for_its_first_word(tmp_path: Path) -> None:
    text = (
        "円相場が急落\n\n"
        + BODY
        + "\n\nコメントを求められた財務省の幹部は「注視している」と述べた。\n\n関連記事の多い日だった。\n"
    )
    [doc] = _read(tmp_path, "comment.txt", text).docs
    assert "コメントを求められた財務省の幹部は「注視している」と述べた。" in doc.text
    assert "関連記事の多い日だった。" in doc.text


# (encoding to write with, name the reader reports). Shift_JIS bytes are cp932's too.
ENCODINGS = [
    ("utf-8", "utf_8"),
    ("utf-8-sig", "utf_8_sig"),
    ("utf-16", "utf_16"),
    ("cp932", "cp932"),
    ("shift_jis", "cp932"),
    ("euc_jp", "euc"),
    ("iso2022_jp", "iso2022_jp"),
]


@pytest.mark.parametrize(("encoding", "reported"), ENCODINGS)
@pytest.mark.parametrize(
    "text",
    [
        "東京都\n\n都は新しい条例を発表した。",  # very short: detectors guess worst here
        "円相場が急落\n\n" + BODY,
        "# 円相場が急落\r\n\r\n" + BODY.replace("\n", "\r\n"),
    ],
)
def test_every_encoding_is_decoded(tmp_path: Path, encoding: str, reported: str, text: str) -> None:
    reading = _read(tmp_path, "enc.md", text.encode(encoding))
    assert reading.encoding and reading.encoding.startswith(reported)
    body = text.replace("\r\n", "\n").split("\n\n", 1)[1]
    assert all(s in _all_text(reading) for s in split_sentences(body))


HTML_PAGE = """<!DOCTYPE html>
<html lang="ja"><head><meta charset="{charset}">
<title>円相場が急落 | 経済ニュース</title>
<meta property="og:title" content="円相場が急落">
<meta property="og:url" content="https://example.jp/news/1">
<meta property="article:published_time" content="2025-03-13T10:00:00+09:00">
</head><body>
<header><nav><ul><li><a href="/">ホーム</a></li><li><a href="/eco">経済</a></li><li><a href="/int">国際</a></li></ul></nav></header>
<main><article><h1>円相場が急落</h1>
<p>13日の東京外国為替市場で円相場が急落し、1ドル=160円台をつけた。</p>
<p>市場関係者は「介入への警戒感が強まっている」と話した。</p>
<p>コメントを求められた財務省の幹部は「注視している」と述べた。</p>
</article></main>
<aside><h2>人気ランキング</h2><ol><li><a href="/a">大阪で新しい美術館が開館</a></li><li><a href="/b">東京の桜、開花予想</a></li><li><a href="/c">奈良の鹿が話題に</a></li></ol></aside>
<footer><a href="/about">会社概要</a> | <a href="/privacy">プライバシーポリシー</a> | <a href="/contact">お問い合わせ</a></footer>
</body></html>"""


@pytest.mark.parametrize(("suffix", "charset"), [(".html", "utf-8"), (".htm", "shift_jis")])
def test_saved_html_page_gives_main_text_and_metadata(tmp_path: Path, suffix: str, charset: str) -> None:
    page = HTML_PAGE.format(charset=charset)
    reading = _read(tmp_path, "page" + suffix, page.encode("cp932" if charset == "shift_jis" else "utf-8"))
    [doc] = reading.docs
    assert doc.title == "円相場が急落"
    assert doc.url == "https://example.jp/news/1"
    assert doc.date == "2025-03-13"
    for s in [*SENTENCES, "コメントを求められた財務省の幹部は「注視している」と述べた。"]:
        assert s in doc.text
    for junk in ("会社概要", "プライバシーポリシー", "奈良の鹿"):
        assert junk not in doc.text


def test_seed_listing_reads_html_and_ignores_hidden_files(tmp_path: Path) -> None:
    for name in ("a.txt", "b.md", "c.html", "d.HTM", ".hidden.txt", "e.png", ".git/x.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("東京都\n\n都は新しい条例を発表した。", encoding="utf-8")
    assert [p.name for p in list_seed_files(tmp_path)] == ["a.txt", "b.md", "c.html", "d.HTM"]


def test_menus_and_link_lists_are_dropped_and_recorded(tmp_path: Path) -> None:
    text = (
        "ホーム\nニュース\n円相場が急落\n\n"
        + BODY
        + "\n\nあわせて読みたい\n  • 大阪で新しい美術館が開館\n  • 東京の桜、開花予想\n人気ランキング\n  • 1\n    奈良の鹿が話題に\n"
    )
    reading = _read(tmp_path, "page.txt", text)
    [doc] = reading.docs
    assert doc.title == "円相場が急落"
    dropped = {d.text: d for d in reading.drops}
    for junk in ("ホーム", "ニュース", "あわせて読みたい", "• 東京の桜、開花予想", "奈良の鹿が話題に"):
        assert junk not in doc.text
        assert junk in dropped and dropped[junk].line_no > 0 and dropped[junk].rule
    assert reading.report.kept_chars == len(doc.text)
    assert reading.report.dropped_chars == sum(len(d.text) for d in reading.drops)
    shown = format_reading(reading)
    assert "円相場が急落" in shown and "奈良の鹿が話題に" in shown and "[link list]" in shown


def test_skipped_files_are_summarized_in_one_paragraph() -> None:
    skipped = [SkippedFile(f"f{i}.txt", "no article text found") for i in range(1159)]
    skipped.append(SkippedFile("bin.txt", "binary file"))
    text = summarize_skipped(skipped, limit=3)
    assert "1160" in text and "1159 件" in text and "f0.txt, f1.txt, f2.txt ほか 1156 件" in text
    assert "f3.txt" not in text and "\n" not in text
    assert summarize_skipped(skipped, full_list="index/manifest.json").endswith("index/manifest.json")
    assert summarize_skipped([]) == ""


def test_an_empty_file_is_skipped_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    docs, skipped = load_documents(tmp_path)
    assert docs == [] and [s.path for s in skipped] == ["empty.txt"]


def test_reading_is_linear_in_file_size(tmp_path: Path) -> None:
    # 40,000 distinct lines: the old "line in any seen line" check took minutes on this.
    lines = [f"第{i}項では、{i * 7}件の報告があったと市は発表した。" for i in range(40_000)]
    path = tmp_path / "big.txt"
    path.write_text("大きな記録\n\n" + "\n".join(lines), encoding="utf-8")
    started = time.perf_counter()
    [doc] = read_file(path).docs
    assert time.perf_counter() - started < 10
    assert doc.text.count("\n\n") == len(lines) - 1


def test_text_helpers() -> None:
    assert split_sentences("「はい。」と話した。次だ！\n終わり") == ["「はい。」", "と話した。", "次だ！", "終わり"]
    assert char_bigrams("東 京都") == {"東京", "京都"}


# ---- property: whatever the layout, every sentence of every article is read, and every line is accounted for

_JA = st.text(alphabet="あいうえおかきくけこさしすせそたちつてとアイウエオカキクケコ東京都市国会議員円相場日本", min_size=2, max_size=25)
_sentence = _JA.map(lambda s: s + "。")
_paragraph = st.lists(_sentence, min_size=1, max_size=3).map("".join)
_title = st.one_of(st.none(), _JA.filter(lambda s: len(s) <= 30))
_article = st.tuples(_title, st.lists(_paragraph, min_size=1, max_size=4), st.booleans())


# database=None: no .hypothesis folder in the repository; the examples are re-drawn each run.
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(articles=st.lists(_article, min_size=1, max_size=3), crlf=st.booleans(), menus=st.booleans())
def test_property_every_sentence_is_read_and_every_line_accounted_for(
    tmp_path: Path, articles: list, crlf: bool, menus: bool
) -> None:
    parts = []
    for title, paragraphs, markdown in articles:
        head = ""
        if title:
            head = f"# {title}\n\n" if markdown else f"{title}\n\n"
        tail = "\n\nあわせて読みたい\n• 大阪の話題\n• 京都の話題\n• 奈良の話題\n" if menus else ""
        parts.append(head + "\n\n".join(paragraphs) + tail)
    text = "\n\n---\n\n".join(parts)
    if crlf:
        text = text.replace("\n", "\r\n")
    reading = _read(tmp_path, "prop.md", text)
    read_text = _all_text(reading)
    for _, paragraphs, _ in articles:
        for sentence in split_sentences("\n".join(paragraphs)):
            assert sentence in read_text
    kept = {line for d in reading.docs for line in [d.title, *d.text.split("\n\n")]}
    dropped = {d.text for d in reading.drops}
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.strip().lstrip("# ").strip()
        if line and line != "---":
            assert line in kept or line in dropped, line


def test_addresses_and_hashtags_inside_sentences_stay(tmp_path: Path) -> None:
    text = (
        "検索サービス\n\n日本語版は https://www.google.co.jpでアクセス可能。\n\n"
        "ハッシュタグ #MeToo 運動が広がった。\n\nhttps://example.jp/source\n"
    )
    reading = _read(tmp_path, "web.txt", text)
    [doc] = reading.docs
    assert "日本語版は https://www.google.co.jpでアクセス可能。" in doc.text
    assert "ハッシュタグ #MeToo 運動が広がった。" in doc.text
    assert doc.url == "https://www.google.co.jp"
    assert [(d.line_no, d.rule) for d in reading.drops] == [(7, "url")]


@pytest.mark.parametrize("encoding", ["cp932", "euc_jp", "iso2022_jp", "utf-16"])
@pytest.mark.parametrize("word", ["東京都", "経済", "円相場が急落", "国会議員選挙", "日本銀行"])
def test_very_short_legacy_texts_are_not_taken_for_korean_or_chinese(encoding: str, word: str) -> None:
    # charset-normalizer alone says cp949 or Big5 for several of these (bench/reading.py --encodings).
    text, _ = detect_encoding(word.encode(encoding))
    assert text == word


def test_rag_inspect_prints_articles_and_drops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rag.cli import main

    path = tmp_path / "page.txt"
    path.write_text("ホーム\nニュース\n円相場が急落\n\n" + BODY + "\n", encoding="utf-8")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "=== 記事 1: 円相場が急落" in out and SENTENCES[1] in out
    assert "1行 [menu] ホーム" in out
    assert main(["inspect", str(tmp_path / "missing.txt")]) == 2


def test_short_title_above_a_date_line_stays_the_title(tmp_path: Path) -> None:
    [doc] = _read(tmp_path, "dated.txt", "第3回の調査結果\n\n2025年1月1日\n\n" + BODY).docs
    assert (doc.title, doc.date) == ("第3回の調査結果", "2025-01-01")
    assert all(s in doc.text for s in SENTENCES)


def test_menu_links_trafilatura_lets_in_above_a_short_page_are_dropped(tmp_path: Path) -> None:
    page = (
        '<html><head><meta charset="utf-8"><title>東京都</title></head><body>'
        '<nav><a href="/">ホーム</a> <a href="/n">ニュース</a></nav>'
        '<div class="c"><p>都は新しい条例を発表した。</p></div><footer><a href="/a">会社概要</a></footer></body></html>'
    )
    reading = _read(tmp_path, "tokyo.html", page)
    [doc] = reading.docs
    assert (doc.title, doc.text) == ("東京都", "都は新しい条例を発表した。")
    assert {d.text for d in reading.drops} >= {"ホーム", "ニュース"}


def test_markdown_link_keeps_its_text(tmp_path: Path) -> None:
    reading = _read(tmp_path, "link.md", "# 円相場\n\n[財務省の発表](https://example.jp/mof)によると、介入はなかった。\n")
    [doc] = reading.docs
    assert doc.text == "財務省の発表によると、介入はなかった。"
    assert [(d.text, d.rule) for d in reading.drops] == [("https://example.jp/mof", "url")]


def test_a_typed_list_of_facts_is_content(tmp_path: Path) -> None:
    text = "# 説明会のお知らせ\n\n市は説明会を開く。\n\n- 日時: 3月1日\n- 場所: 市役所\n- 料金: 無料\n\n申し込みは不要だ。\n"
    [doc] = _read(tmp_path, "list.md", text).docs
    for item in ("- 日時: 3月1日", "- 場所: 市役所", "- 料金: 無料"):
        assert item in doc.text
