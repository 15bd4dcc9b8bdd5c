from rag.types import Answer, Citation
from rag.webapp import answer_messages, format_sources, history_pairs


def _cit(n: int, quote: str = "") -> Citation:
    return Citation(n=n, source="000_a.txt", title="クルスク情勢", text="前文。要衝スジャ奪還を目指す。後文。",
                    score=0.9, chunk_id="a#0/0", date="2025-03-13", quote=quote)


def test_sources_show_number_title_date_file_passage_and_highlight() -> None:
    md = format_sources([_cit(1, quote="要衝スジャ奪還を目指す。")])
    assert "**[1] クルスク情勢**" in md and "2025-03-13" in md and "`000_a.txt`" in md
    assert "<mark>要衝スジャ奪還を目指す。</mark>" in md and "前文。" in md


def test_answer_then_collapsible_sources_message() -> None:
    answer = Answer(question="q", text="スジャです[1]。", citations=[_cit(1)], passages=[_cit(1), _cit(2)])
    first, sources = answer_messages(answer)
    assert first == {"role": "assistant", "content": "スジャです[1]。"}
    assert sources["metadata"]["title"] == "出典 (1件)"


def test_refusal_still_shows_the_closest_passages() -> None:
    answer = Answer(question="q", text="資料には記載がありません。", citations=[], passages=[_cit(1)], refused=True)
    _, sources = answer_messages(answer)
    assert "近かった資料" in sources["metadata"]["title"]


def test_history_pairs_skip_sources_messages() -> None:
    history = [
        {"role": "user", "content": "要衝の町は?"},
        {"role": "assistant", "content": "スジャです[1]。"},
        {"role": "assistant", "content": "**[1]** ...", "metadata": {"title": "出典 (1件)"}},
        {"role": "user", "content": [{"type": "text", "text": "その町はどこの州?"}]},
        {"role": "assistant", "content": "クルスク州です[1]。"},
    ]
    assert history_pairs(history) == [("要衝の町は?", "スジャです[1]。"), ("その町はどこの州?", "クルスク州です[1]。")]


def test_chat_page_has_the_upload_control(settings, embedder) -> None:
    from rag.factories import load_pipeline
    from rag.ingest import build_index
    from rag.webapp import UPLOAD_LABEL, build_app
    from tests.conftest import RecordingGenerator

    build_index(settings=settings, embedder=embedder)
    app = build_app(load_pipeline(settings=settings, embedder=embedder, generator=RecordingGenerator()))
    config = app.get_config_file()
    labels = {str(c.get("props", {}).get("label")) for c in config["components"]}
    assert UPLOAD_LABEL in labels and "同じ名前の記事を置き換える" in labels
    assert any(label.startswith("記事ファイル（.txt") for label in labels)
    api_names = {d.get("api_name") for d in config["dependencies"]}
    assert {"chat", "add_articles"} <= api_names


def test_the_sentence_stating_the_answer_is_quoted_under_it_and_left_out_of_the_history() -> None:
    answer = Answer(question="要衝の町は?", text="スジャ[1]", citations=[_cit(1, quote="要衝スジャ奪還を目指す。")])
    first, _ = answer_messages(answer)
    assert first["content"].startswith("スジャ[1]\n\n> 出典の文")
    assert "[1] <mark>要衝スジャ奪還を目指す。</mark>" in first["content"]
    history = [{"role": "user", "content": "要衝の町は?"}, first]
    assert history_pairs(history) == [("要衝の町は?", "スジャ[1]")]


def test_an_answer_stated_only_in_the_title_highlights_the_title() -> None:
    cit = Citation(n=1, source="b.txt", title="再選を願う国民の割合は15.9%", text="政権は57%の支持率を疑問視している。",
                   score=0.5, chunk_id="b#0/0", quote="再選を願う国民の割合は15.9%")
    md = format_sources([cit])
    assert "**[1] <mark>再選を願う国民の割合は15.9%</mark>**" in md and "<mark>" not in md.split("**", 2)[2]
