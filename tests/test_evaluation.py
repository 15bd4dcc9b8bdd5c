import json
from pathlib import Path

import pytest

from rag.errors import RagError
from rag.evaluation import (
    QAItem,
    answer_scores,
    char_f1,
    evaluate,
    load_jsonl,
    load_squad,
    normalize,
    refusal_set,
    retrieval_scores,
    score_answer,
    spread,
    write_jsonl,
    write_report,
    write_squad_files,
)
from rag.types import Answer, Chunk, Citation, Hit

DATA = Path(__file__).parent / "data"


def _hit(source: str, text: str) -> Hit:
    return Hit(Chunk(chunk_id=f"{source}/0", doc_id=source, source=source, title="t", text=text, position=0), 1.0)


def _cit(source: str, text: str) -> Citation:
    return Citation(n=1, source=source, title="t", text=text, score=1.0, chunk_id="c")


def test_squad_paragraphs_become_documents_without_the_title_prefix() -> None:
    docs, items = load_squad(DATA / "jsquad_sample.json")
    assert len(docs) == 18 and len(items) == 51
    assert docs[0].title == "梅雨" and not docs[0].text.startswith("梅雨 [SEP]")
    assert items[0].source == docs[0].doc_id and "小笠原諸島" in items[0].answers


def test_jsonl_with_answerable_unanswerable_and_follow_up(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(
        '{"id": "a", "question": "町は?", "answers": ["スジャ"], "source": "000.txt"}\n'
        '{"id": "u", "question": "人口は?", "unanswerable": true}\n'
        '{"id": "f", "history": [["q1", "a1"]], "question": "その町は?", "answers": ["x"], "source": "1.txt"}\n',
        encoding="utf-8",
    )
    a, u, f = load_jsonl(path)
    assert (a.answers, a.source, u.unanswerable, f.history) == (["スジャ"], "000.txt", True, [("q1", "a1")])
    path.write_text("not json\n")
    with pytest.raises(RagError, match=r"qa\.jsonl:1"):
        load_jsonl(path)


def test_recall_and_mrr_count_the_gold_passage_rank() -> None:
    items = [
        QAItem("1", "q", ["スジャ"], "a.txt"),
        QAItem("2", "q", ["東京"], "b.txt"),
        QAItem("3", "q", unanswerable=True),
    ]
    ranked = [[_hit("a.txt", "要衝スジャ")], [_hit("b.txt", "大阪"), _hit("b.txt", "東京都")], []]
    scores = retrieval_scores(ranked, items)
    assert scores["questions"] == 2 and scores["recall@1"] == 0.5 and scores["recall@5"] == 1.0
    assert scores["mrr"] == pytest.approx(0.75)


def test_answer_scoring_accuracy_citation_and_refusals() -> None:
    item = QAItem("1", "要衝の町は?", ["スジャ"], "a.txt")
    good = score_answer(item, Answer("q", "ｽｼﾞｬです[1]。", [_cit("a.txt", "要衝スジャ奪還")]))  # NFKC-normalized
    wrong_cite = score_answer(item, Answer("q", "スジャです[1]。", [_cit("b.txt", "別の記事")]))
    refused = score_answer(
        QAItem("u", "人口は?", unanswerable=True), Answer("q", "資料には記載がありません。", [], refused=True)
    )
    assert good.correct and good.citation_ok and not wrong_cite.citation_ok
    scores = answer_scores([good, wrong_cite, refused])
    assert scores["accuracy"] == 1.0 and scores["citation_accuracy"] == 0.5
    assert scores["refusal_rate_unanswerable"] == 1.0 and scores["false_refusal_rate"] == 0.0


def test_a_citation_whose_title_holds_the_answer_counts_but_another_article_does_not() -> None:
    item = QAItem("1", "保安の後の元号は?", ["天治"], "a.txt")
    titled = Citation(n=1, source="a.txt", title="天治", text="は、日本の元号の一つ。保安の後。", score=1.0, chunk_id="c")
    assert score_answer(item, Answer("q", "天治です[1]。", [titled])).citation_ok
    elsewhere = Citation(n=1, source="b.txt", title="天治", text="保安の後。", score=1.0, chunk_id="c")
    assert not score_answer(item, Answer("q", "天治です[1]。", [elsewhere])).citation_ok
    assert char_f1("スジャです", ["スジャ"]) == pytest.approx(2 * 0.6 * 1 / 1.6)


def test_spread_picks_evenly_and_report_files_are_written(tmp_path: Path) -> None:
    items = [QAItem(str(i), "q", ["a"], "s") for i in range(10)]
    assert [it.qid for it in spread(items, 3)] == ["0", "3", "6"]
    report = evaluate(items[:2], retrieve=lambda it: [_hit("s", "a")], qa_file="x.jsonl")
    json_path, png_path = write_report(report, tmp_path)
    assert json.loads(json_path.read_text())["retrieval"]["recall@1"] == 1.0
    assert png_path.read_bytes()[:4] == b"\x89PNG"


def test_squad_splits_are_disjoint_halves_by_article() -> None:
    _, tune = load_squad(DATA / "jsquad_sample.json", split="tune")
    _, report = load_squad(DATA / "jsquad_sample.json", split="report")
    _, everything = load_squad(DATA / "jsquad_sample.json")
    assert tune and report
    assert {i.qid for i in tune}.isdisjoint({i.qid for i in report})
    assert len(tune) + len(report) == len(everything)


def test_refusal_set_asks_only_what_the_indexed_files_cannot_answer(tmp_path: Path) -> None:
    indexed, items = refusal_set(DATA / "jsquad_sample.json", split="tune")
    files = write_squad_files(DATA / "jsquad_sample.json", tmp_path, articles=indexed)
    corpus = normalize("".join(p.read_text(encoding="utf-8") for p in tmp_path.iterdir()))
    answerable = [i for i in items if not i.unanswerable]
    assert {i.qid for i in answerable} == {f.qid for f in files}
    for item in items:
        if item.unanswerable:
            assert item.source is None and not item.answers
    # Every written file is "title", blank line, paragraph: what a user saves.
    first = sorted(tmp_path.iterdir())[0].read_text(encoding="utf-8")
    assert first.split("\n")[1] == "" and len(first.split("\n")[2]) > 20
    assert all(any(normalize(a) in corpus for a in i.answers) for i in answerable)


def test_jsonl_round_trip(tmp_path: Path) -> None:
    items = [
        QAItem(qid="1", question="q?", answers=["a"], source="f.txt", answer_in_passage=False),
        QAItem(qid="2", question="u?", unanswerable=True),
        QAItem(qid="3", question="f?", answers=["b"], source="g.txt", history=[("q?", "a")]),
    ]
    write_jsonl(items, tmp_path / "qa.jsonl")
    assert load_jsonl(tmp_path / "qa.jsonl") == items
