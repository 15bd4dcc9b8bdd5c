from pathlib import Path

import pytest

from rag.documents import decode_text, load_documents, load_file, normalize_date, split_articles

REPO = Path(__file__).resolve().parent.parent


def test_news_page_keeps_article_and_drops_menus_and_rankings(corpus: Path) -> None:
    [doc] = load_file(corpus / "kyoto.txt")
    assert doc.title == "京都で紅葉の見頃、観光客が過去最多に"
    assert doc.date == "2025-11-20"
    assert "嵐山には1日あたり約5万人" in doc.text
    assert "山田太郎会長" in doc.text
    for junk in ("スキップ", "あわせて読みたい", "大阪で新しい美術館", "奈良の鹿", "人気ランキング"):
        assert junk not in doc.text


def test_blog_page_is_split_into_dated_posts(corpus: Path) -> None:
    docs = load_file(corpus / "blog.txt")
    assert [(d.title, d.date) for d in docs] == [
        ("新型ロケット「ハヤブサ9」の打ち上げに成功", "2025-10-01"),
        ("北海道の新しい鉄道路線が開業", "2025-09-15"),
    ]
    assert "札幌" not in docs[0].text and "種子島" not in docs[1].text
    assert all("投稿を表示" not in d.text for d in docs)
    assert docs[0].doc_id != docs[1].doc_id


@pytest.mark.parametrize("encoding", ["shift_jis", "cp932", "euc_jp", "utf-8-sig"])
def test_legacy_japanese_encodings_are_decoded(corpus: Path, encoding: str) -> None:
    text = (corpus / "kyoto.txt").read_text(encoding="utf-8").replace("•", "・")  # '•' has no Shift_JIS code
    (corpus / "kyoto.txt").write_bytes(text.encode(encoding))
    [doc] = load_file(corpus / "kyoto.txt")
    assert "嵐山" in doc.text


def test_broken_files_are_reported_by_name_and_skipped(corpus: Path) -> None:
    (corpus / "broken.txt").write_bytes(b"\x00\x01\x02binary\xff\xfe")
    (corpus / "menu_only.txt").write_text("あわせて読みたい\n  • 記事A\n  • 記事B\n", encoding="utf-8")
    (corpus / "image.png").write_bytes(b"\x89PNG")  # not a .txt/.md: ignored, not reported
    docs, skipped = load_documents(corpus)
    assert {s.path for s in skipped} == {"broken.txt", "menu_only.txt"}
    assert all(s.reason for s in skipped)
    assert {d.source for d in docs} == {"kyoto.txt", "blog.txt"}


def test_undecodable_bytes_raise_a_clear_error() -> None:
    with pytest.raises(ValueError, match="UTF-8, Shift_JIS or EUC-JP"):
        decode_text(b"\x80\x80\x80\xff\xff")


def test_embedded_tweets_become_articles_without_repeated_text() -> None:
    page = (
        "ロシア軍高官、クルスク州の64%を奪還と主張https://t.co/abc #nhk_news\n"
        "— NHKニュース (@nhk_news) February 20, 2025\n"
        "ロシア軍の参謀本部の高官は、クルスク州について64%を奪還したと述べました。…\n"
        "ロシア軍の参謀本部の高官は、クルスク州について64%を奪還したと述べました。作戦は続いています。\n"
    )
    [(title, date, _url, body)] = split_articles(page)
    assert title == "ロシア軍高官、クルスク州の64%を奪還と主張"
    assert date == "2025-02-20"
    assert body.count("参謀本部") == 1 and "t.co" not in body and "@nhk_news" not in body


def test_normalize_date() -> None:
    assert normalize_date("2025年3月13日(木)17時27分") == "2025-03-13"
    assert normalize_date("February 21, 2025") == "2025-02-21"
    assert normalize_date("3月13日") is None


def test_real_seeds_read_as_articles_not_menus() -> None:
    docs, skipped = load_documents(REPO / "seeds")
    assert skipped == []
    by_source: dict[str, list] = {}
    for d in docs:
        by_source.setdefault(d.source, []).append(d)
    assert len(by_source) == 5
    # The blog pages hold several dated posts each.
    assert len(by_source["002_579c7d98fbda4370.txt"]) == 5
    assert len(by_source["004_189449dff0a142e3.txt"]) == 5
    [kursk] = by_source["000_b6beab82226e0b33.txt"]
    assert kursk.date == "2025-03-13" and "要衝スジャ奪還" in kursk.text
    everything = "\n".join(d.text for d in docs)
    for junk in (
        "あわせて読みたい",
        "人気ランキング",
        "こんな記事も読まれています",
        "メインメニューへスキップ",
        "岡田准一",
        "投稿を表示しています",
        "pic.twitter.com",
        "(@nhk_news)",
        "opens new tab",
    ):
        assert junk not in everything, junk
