"""PDF and Word articles: read whole, in reading order, cited by page; odd and hostile files skipped with a reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rag
from rag import load_pipeline, office
from rag.chunking import chunk_documents
from rag.documents import PAGE_FURNITURE, format_reading, read_file
from tests.conftest import HashingEmbedder, RecordingGenerator
from tests.office_files import (
    HEADER,
    make_docx,
    make_image_pdf,
    make_inflating_pdf,
    make_many_pages_pdf,
    make_pdf,
    make_zip_bomb_docx,
)

SENTENCES = [
    "東京都は二〇二六年度の予算案を発表し、子育て支援に三千億円を充てると明らかにした。",
    "知事は記者会見で「将来世代への投資を最優先にする」と述べた。",
    "一方、野党は財源の裏付けが不十分だとして修正を求めている。",
    "予算案は来月の定例会で審議される予定で、可決されれば四月から執行される。",
    "専門家は物価高の影響を考慮した支援策の拡充が必要だと指摘している。",
    "都によると、保育所の待機児童は昨年四月時点で二百八十六人だった。",
]


def paragraphs(n: int, tag: str = "") -> list[str]:
    """n distinct paragraphs of two sentences each, numbered so each can be found again."""
    return [f"{tag}第{i + 1}項。" + SENTENCES[i % 6] + SENTENCES[(i + 3) % 6] for i in range(n)]


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def doc_text(path: Path) -> str:
    reading = read_file(path)
    assert reading.report.status != "skipped", reading.report.reason
    return "\n\n".join(d.text for d in reading.docs)


# ---------------------------------------------------------------------------------------------
# PDF


@pytest.mark.parametrize("font", ["HeiseiMin-W3", "IPAGothic"])
def test_a_multi_page_pdf_is_read_whole_with_sentences_joined_and_furniture_dropped(tmp_path: Path, font: str) -> None:
    paras = paragraphs(30)
    pdf = tmp_path / "記者発表.pdf"
    make_pdf(pdf, paras, font=font, lines_per_column=25)
    reading = read_file(pdf)
    text = "\n\n".join(d.text for d in reading.docs)
    # Every paragraph is there whole: its line breaks joined back (no newline inside it).
    for p in paras:
        assert p in text
    # The running header and the page numbers are gone, and recorded with their rule and page.
    assert HEADER not in text and not re.search(r"- \d+ -", text)
    furniture = [d for d in reading.drops if d.rule == PAGE_FURNITURE]
    pages = {d.page for d in furniture}
    assert len(pages) >= 3 and {d.text for d in furniture} >= {HEADER, "- 1 -", "- 2 -"}
    assert "p.2" in format_reading(reading) and "--- p. 2 ---" in format_reading(reading)


@pytest.mark.parametrize("row_order", [False, True])
def test_a_two_column_pdf_reads_each_column_whole(tmp_path: Path, row_order: bool) -> None:
    paras = paragraphs(24)
    pdf = tmp_path / "two.pdf"
    make_pdf(pdf, paras, columns=2, row_order=row_order, lines_per_column=30, headline="都の予算案、子育てに重点")
    text = doc_text(pdf)
    positions = [text.find(p) for p in paras]
    assert all(i >= 0 for i in positions), [p for p, i in zip(paras, positions) if i < 0]
    assert positions == sorted(positions)  # the paragraphs come back in the order they were written
    # The headline (a larger type size) is the title, not glued to the first paragraph.
    assert read_file(pdf).docs[0].title == "都の予算案、子育てに重点" and "重点第1項" not in text


def test_a_sentence_running_over_a_column_and_a_page_is_joined(tmp_path: Path) -> None:
    long = "長い段落。" + "".join(SENTENCES) * 3  # longer than one column of 12 lines
    paras = [*paragraphs(2), long, *paragraphs(2, "後")]
    pdf = tmp_path / "long.pdf"
    make_pdf(pdf, paras, columns=2, lines_per_column=12)
    assert squash(long) in squash(doc_text(pdf)).replace("", "")


def test_each_passage_keeps_its_page_through_ask_and_the_api(tmp_path: Path) -> None:
    paras = paragraphs(40)
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    starts = make_pdf(seeds / "予算.pdf", paras, lines_per_column=30)
    assert max(starts) >= 3
    reading = read_file(seeds / "予算.pdf", root=seeds)
    chunks = chunk_documents(reading.docs, chunk_size=300, chunk_overlap=50)
    for chunk in chunks:
        first = re.search(r"第(\d+)項。", chunk.text)
        if first and chunk.text.startswith(first[0]):
            assert chunk.page == starts[int(first[1]) - 1], chunk.text[:20]
    settings = rag.Settings(seeds_dir=seeds, index_dir=tmp_path / "index")
    rag.build_index(settings=settings, embedder=HashingEmbedder())
    pipe = load_pipeline(settings=settings, embedder=HashingEmbedder(), generator=RecordingGenerator())
    target = paras[35]
    answer = pipe.ask(target[:30])
    cited = [c for c in answer.passages if target[:20] in c.text]
    assert cited and cited[0].page == starts[35] and cited[0].page >= 3
    from rag.api import source_json
    from rag.webapp import format_sources

    assert source_json(cited[0])["page"] == starts[35]
    assert f"p. {starts[35]}" in format_sources(cited[:1])


def test_a_scanned_pdf_is_skipped_with_the_reason(tmp_path: Path) -> None:
    pdf = tmp_path / "scan.pdf"
    make_image_pdf(pdf)
    reading = read_file(pdf)
    assert reading.report.status == "skipped" and "文字情報のないPDF（スキャン画像）です" in reading.report.reason


def test_a_pdf_that_needs_a_password_is_skipped_with_the_reason(tmp_path: Path) -> None:
    pdf = tmp_path / "locked.pdf"
    make_pdf(pdf, paragraphs(3), encrypt="secret")
    reading = read_file(pdf)
    assert reading.report.status == "skipped" and "パスワード" in reading.report.reason


def test_a_truncated_pdf_is_skipped_and_the_other_files_are_indexed(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    make_pdf(seeds / "good.pdf", paragraphs(4))
    make_pdf(tmp_path / "whole.pdf", paragraphs(30))
    data = (tmp_path / "whole.pdf").read_bytes()
    (seeds / "cut.pdf").write_bytes(data[: len(data) // 3])
    (seeds / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    settings = rag.Settings(seeds_dir=seeds, index_dir=tmp_path / "index")
    report = rag.build_index(settings=settings, embedder=HashingEmbedder())
    skipped = {s.path: s.reason for s in report.skipped}
    assert "old.doc" in skipped and ".docx として保存" in skipped["old.doc"]
    assert "good.pdf" not in skipped and report.docs >= 1
    # A cut PDF is either skipped with a reason, or read as far as it goes: never a crash of the build.
    if "cut.pdf" in skipped:
        assert skipped["cut.pdf"]


def test_a_pdf_with_tens_of_thousands_of_pages_is_stopped_by_the_page_limit(tmp_path: Path) -> None:
    pdf = tmp_path / "huge.pdf"
    make_many_pages_pdf(pdf, office.MAX_PAGES * 10)
    reading = read_file(pdf)
    assert reading.report.status == "skipped" and "ページ数が多すぎます" in reading.report.reason


def test_a_stream_that_inflates_to_gigabytes_is_stopped_by_the_memory_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(office, "READ_MEMORY", 512 * 1024**2)
    pdf = tmp_path / "bomb.pdf"
    make_inflating_pdf(pdf, 1024 * 1024**2)
    assert pdf.stat().st_size < 5 * 1024**2
    reading = read_file(pdf)
    assert reading.report.status == "skipped" and "メモリ" in reading.report.reason


def test_reading_that_takes_too_long_is_stopped_by_the_time_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(office, "READ_SECONDS", 0.05)
    pdf = tmp_path / "slow.pdf"
    make_pdf(pdf, paragraphs(3))
    reading = read_file(pdf)
    assert reading.report.status == "skipped" and "秒で終わりませんでした" in reading.report.reason


_KANA_KANJI = (
    "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"
    "日本東京都市政府経済会議予算支援発表記者国民社会"
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sentences=st.lists(st.text(alphabet=_KANA_KANJI, min_size=4, max_size=70), min_size=1, max_size=30),
    per_para=st.integers(min_value=1, max_value=4),
    columns=st.integers(min_value=1, max_value=2),
    lines=st.integers(min_value=8, max_value=40),
    row_order=st.booleans(),
)
def test_every_sentence_written_to_a_pdf_is_read_back_or_its_drop_recorded(
    tmp_path: Path, sentences: list[str], per_para: int, columns: int, lines: int, row_order: bool
) -> None:
    written = [s + "。" for s in sentences]
    paras = ["".join(written[i : i + per_para]) for i in range(0, len(written), per_para)]
    pdf = tmp_path / "p.pdf"
    make_pdf(pdf, paras, columns=columns, lines_per_column=lines, row_order=row_order)
    reading = read_file(pdf)
    text = squash("\n".join(d.text for d in reading.docs))
    dropped = squash("\n".join(d.text for d in reading.drops))
    for s in written:
        assert s in text or s in dropped, s


# ---------------------------------------------------------------------------------------------
# DOCX


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    blocks=st.lists(
        st.tuples(
            st.sampled_from(["para", "para", "heading", "bullet", "table"]),
            st.lists(st.text(alphabet=_KANA_KANJI, min_size=4, max_size=50), min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=15,
    )
)
def test_every_sentence_written_to_a_docx_is_read_back_or_its_drop_recorded(tmp_path: Path, blocks) -> None:
    made: list[tuple[str, object]] = []
    written: list[str] = []
    for kind, texts in blocks:
        sentences = [t + "。" for t in texts]
        written += sentences
        made.append(("table", [sentences]) if kind == "table" else (kind, "".join(sentences)))
    path = tmp_path / "w.docx"
    make_docx(path, made)
    reading = read_file(path)
    text = squash("\n".join(d.title + "\n" + d.text for d in reading.docs))
    dropped = squash("\n".join(d.text for d in reading.drops))
    for sentence in written:
        assert sentence in text or sentence in dropped, sentence


def test_a_docx_is_read_with_its_heading_as_title_tables_and_lists(tmp_path: Path) -> None:
    path = tmp_path / "報告.docx"
    make_docx(
        path,
        [
            ("title", "都の予算案、子育てに重点"),
            ("para", SENTENCES[0]),
            ("heading", "主な事業"),
            ("bullet", "保育所の整備に八百億円。"),
            ("bullet", "出産費用の助成に二百億円。"),
            ("table", [["事業", "金額"], ["保育所", "800億円"], ["出産助成", "200億円"]]),
            ("para", SENTENCES[1]),
        ],
    )
    reading = read_file(path)
    doc = reading.docs[0]
    assert doc.title == "都の予算案、子育てに重点"
    for piece in (SENTENCES[0], SENTENCES[1], "主な事業", "保育所の整備に八百億円。", "| 保育所 | 800億円 |"):
        assert piece in doc.text
    assert doc.text.index(SENTENCES[0]) < doc.text.index("保育所の整備") < doc.text.index(SENTENCES[1])
    assert doc.pages == ()


def test_a_docx_title_property_wins_over_its_first_heading(tmp_path: Path) -> None:
    path = tmp_path / "a.docx"
    make_docx(path, [("heading", "はじめに"), ("para", SENTENCES[2])], core_title="野党、予算案の修正を要求")
    assert read_file(path).docs[0].title == "野党、予算案の修正を要求"


def test_a_docx_zip_bomb_and_a_broken_docx_are_skipped_with_reasons(tmp_path: Path) -> None:
    good = tmp_path / "good.docx"
    make_docx(good, [("para", SENTENCES[0])])
    bomb = tmp_path / "bomb.docx"
    make_zip_bomb_docx(bomb, good, office.MAX_DOCX_UNPACKED + (64 << 20))
    assert bomb.stat().st_size < 5 * 1024**2
    reading = read_file(bomb)
    assert reading.report.status == "skipped" and "展開後のサイズが大きすぎます" in reading.report.reason
    cut = tmp_path / "cut.docx"
    cut.write_bytes(good.read_bytes()[:2000])
    reading = read_file(cut)
    assert reading.report.status == "skipped" and "Word（.docx）として読めません" in reading.report.reason


# ---------------------------------------------------------------------------------------------
# The same paths as the other formats


def test_pdf_and_docx_are_added_and_only_a_changed_one_is_read_again(tmp_path: Path) -> None:
    settings = rag.Settings(seeds_dir=tmp_path / "seeds", index_dir=tmp_path / "index")
    (tmp_path / "seeds").mkdir()
    pdf, word = tmp_path / "発表.pdf", tmp_path / "報告.docx"
    make_pdf(pdf, paragraphs(6, "甲"))
    make_docx(word, [("title", "報告書"), *[("para", p) for p in paragraphs(3, "乙")]])
    added = rag.add_documents([pdf, word], settings=settings, embedder=HashingEmbedder())
    assert added.saved == ["発表.pdf", "報告.docx"] and added.build.count("added") == 2
    make_pdf(pdf, paragraphs(7, "甲"))
    again = rag.add_documents([pdf], settings=settings, embedder=HashingEmbedder(), replace=True)
    status = {f.path: f.status for f in again.build.files}
    assert status == {"発表.pdf": "changed", "報告.docx": "unchanged"}
    pipe = load_pipeline(settings=settings, embedder=HashingEmbedder(), generator=RecordingGenerator())
    hits = pipe.retrieve("甲第7項。", k=3)
    assert hits[0].chunk.source == "発表.pdf" and hits[0].chunk.page == 1


def test_a_pdf_over_50_mb_is_refused_and_one_under_it_is_not_for_its_size(tmp_path: Path) -> None:
    from rag.upload import MAX_PAGED_UPLOAD_BYTES

    settings = rag.Settings(seeds_dir=tmp_path / "seeds", index_dir=tmp_path / "index")
    big = tmp_path / "big.pdf"
    with open(big, "wb") as fh:
        fh.truncate(MAX_PAGED_UPLOAD_BYTES + 1)
    with pytest.raises(rag.UploadError, match=r"\.pdf files up to 50 MB"):
        rag.add_documents([big], settings=settings, embedder=HashingEmbedder())
    mid = tmp_path / "mid.pdf"
    with open(mid, "wb") as fh:
        fh.truncate(20 * 1024 * 1024)
    with pytest.raises(rag.UploadError) as info:
        rag.add_documents([mid], settings=settings, embedder=HashingEmbedder())
    assert info.value.code == "unreadable"  # read (and found broken), not refused for its size
