import pytest

import rag
from rag.factories import load_pipeline
from rag.ingest import build_index
from rag.question import is_follow_up
from tests.conftest import RecordingGenerator


@pytest.fixture
def pipe(settings, embedder):
    build_index(settings=settings, embedder=embedder)
    return load_pipeline(settings=settings, embedder=embedder, generator=RecordingGenerator())


def test_public_api_names() -> None:
    for name in ("build_index", "load_pipeline", "Answer", "Citation", "Hit", "BuildReport", "Settings", "RagError"):
        assert name in rag.__all__ and hasattr(rag, name)


def test_ask_returns_answer_whose_citation_holds_the_cited_text(pipe) -> None:
    answer = pipe.ask("嵐山には1日あたり何人の観光客が訪れた?")
    assert isinstance(answer, rag.Answer)
    assert answer.text.endswith("[1]。")  # the model's sentence (answer_form "sentence", the default)
    [c] = answer.citations
    assert (c.n, c.source) == (1, "kyoto.txt")
    assert "約5万人" in answer.text and "約5万人" in c.text  # the citation points at the text the answer came from
    assert "約5万人" in c.quote and c.quote in c.text
    assert len(answer.passages) == pipe.settings.top_k or len(answer.passages) >= 1
    assert answer.prompt_tokens > 0


def test_stream_yields_pieces_then_exposes_the_answer(pipe) -> None:
    stream = pipe.stream("ハヤブサ9の開発費は?")
    pieces = list(stream)
    assert len(pieces) > 1
    assert stream.answer is not None
    assert stream.answer.text.replace("[1]", "") == "".join(pieces).replace("[1]", "").strip()
    assert stream.answer.citations[0].source == "blog.txt"


def test_an_answer_no_passage_supports_becomes_the_refusal(settings, embedder) -> None:
    build_index(settings=settings, embedder=embedder)
    invented = RecordingGenerator("紅葉の見頃は11月3日です[9]。")  # a marker for no passage, a date in none
    pipe = load_pipeline(settings=settings, embedder=embedder, generator=invented, top_k=2)
    answer = pipe.ask("紅葉の見頃はいつ?")
    assert answer.refused and answer.text == "資料には記載がありません。" and answer.citations == []
    assert len(answer.passages) == 2  # the reader can still check what the model was given


def test_a_count_question_answered_without_a_count_is_refused(pipe) -> None:
    pipe.generator.reply = "嵐山は観光地です。"
    assert pipe.ask("嵐山を訪れた観光客は何人?").refused


def test_follow_up_question_retrieves_with_the_conversation(pipe) -> None:
    history = [("新型ロケット「ハヤブサ9」の打ち上げについて教えて", "9月30日に打ち上げられました。[1]")]
    alone = pipe.retrieve("次回はいつ?", k=1)
    with_history = pipe.retrieve("次回はいつ?", k=1, history=history)
    assert "次回の打ち上げは来年3月" in with_history[0].chunk.text
    assert alone[0].chunk.chunk_id != with_history[0].chunk.chunk_id or "来年3月" in alone[0].chunk.text
    answer = pipe.ask("次回はいつ?", history=history)
    assert pipe.generator.calls[-1][1]["content"] == history[0][0]
    assert answer.citations


def test_a_standalone_question_is_answered_as_if_asked_first(pipe) -> None:
    history = [("新型ロケット「ハヤブサ9」の打ち上げについて教えて", "9月30日に打ち上げられました。[1]")]
    question = "嵐山を訪れた観光客は何人?"
    alone = pipe.ask(question)
    after = pipe.ask(question, history=history)
    assert (after.text, after.passages) == (alone.text, alone.passages)
    assert pipe.generator.calls[-1] == pipe.generator.calls[-2]  # the same prompt: the earlier turn left out


@pytest.mark.parametrize(
    ("question", "follows"),
    [
        ("その町はどこの州にありますか?", True),
        ("彼が暗殺された日にモスクワに到着した米国の特使は誰ですか?", True),
        ("同社の社長は誰ですか?", True),
        ("では、ハリコフは?", True),
        ("次回はいつ?", True),
        ("ロシア軍がクルスク州で奪還を目指している要衝の町はどこですか?", False),
        ("それぞれの国の代表は何人ですか?", False),
        ("問題があれば誰に連絡しますか?", False),
        ("ゼレンスキー氏の再選を願う国民の割合は何%ですか?", False),
    ],
)
def test_follow_up_questions_are_told_from_standalone_ones(question: str, follows: bool) -> None:
    assert is_follow_up(question) is follows


def test_load_pipeline_without_index_gives_actionable_error(tmp_path, embedder) -> None:
    with pytest.raises(rag.IndexNotBuiltError, match="rag build"):
        load_pipeline(index_dir=tmp_path / "none", embedder=embedder, generator=RecordingGenerator())


def test_unknown_option_is_rejected(tmp_path, embedder) -> None:
    with pytest.raises(rag.RagError, match="Unknown setting"):
        load_pipeline(index_dir=tmp_path, embedder=embedder, generator=RecordingGenerator(), topk=3)


def test_empty_question_is_a_clear_error(pipe) -> None:
    with pytest.raises(rag.RagError, match="empty"):
        pipe.ask("   ")


def test_a_too_long_question_gets_a_clear_message_and_control_characters_are_ignored(pipe) -> None:
    with pytest.raises(rag.RagError, match="1000"):
        pipe.ask("嵐山" * 600)
    clean = pipe.ask("嵐山を訪れた\x00観光客は\x1b何人?")
    assert clean.question == "嵐山を訪れた観光客は何人?"


def test_a_long_conversation_drops_its_oldest_turns_instead_of_failing(settings, embedder) -> None:
    build_index(settings=settings, embedder=embedder)
    gen = RecordingGenerator()  # counts one token per character
    pipe = load_pipeline(settings=settings, embedder=embedder, generator=gen, n_ctx=900, max_tokens=100)
    old = [("その前の話は?" + "長い" * 150, "前の答え。" * 40)] * 2
    answer = pipe.ask("その打ち上げは次回いつ?", history=old)
    assert answer.text
    assert sum(len(m["content"]) for m in gen.calls[-1]) + 100 <= 900  # fits: old turns left out


class PhraseReader(RecordingGenerator):
    """A fake reader: names the first of `phrases` written in the one passage it is given, else 「なし」."""

    def __init__(self, *phrases: str) -> None:
        super().__init__()
        self.phrases = phrases

    def stream_chat(self, messages, *, max_tokens: int):
        self.calls.append(messages)
        passage = messages[-1]["content"].split("質問:")[0]
        yield next((p for p in self.phrases if p in passage), "なし")


def test_reading_passages_one_at_a_time_answers_with_the_phrase_and_its_sentence(settings, embedder) -> None:
    build_index(settings=settings, embedder=embedder)
    reader = PhraseReader("約5万人")
    pipe = load_pipeline(settings=settings, embedder=embedder, generator=reader, reader="passages")
    answer = pipe.ask("嵐山には1日あたり何人の観光客が訪れた?")
    [c] = answer.citations
    assert answer.text == f"約5万人[{c.n}]" and c.source == "kyoto.txt"
    assert "約5万人" in c.quote and c.quote in c.text and c.quote.endswith("。")
    assert len(reader.calls) == c.n  # passages after the one that answered are not read
    assert all(m[0]["content"].startswith("あなたはニュース記事を注意深く読む") for m in reader.calls)


def test_a_reading_of_the_wrong_kind_is_passed_over_and_no_answer_is_the_refusal(settings, embedder) -> None:
    build_index(settings=settings, embedder=embedder)
    reader = PhraseReader("京都市")  # a place, for a question that asks how many
    pipe = load_pipeline(settings=settings, embedder=embedder, generator=reader, reader="passages", top_k=3)
    answer = pipe.ask("嵐山には1日あたり何人の観光客が訪れた?")
    assert answer.refused and answer.text == "資料には記載がありません。" and answer.citations == []
    assert len(reader.calls) == 3 and len(answer.passages) == 3
    assert "何人" in answer.refusal_reason


class FollowUpGenerator(RecordingGenerator):
    """Answers with a clause, and names the phrase when asked once more (as the real model's follow_up does)."""

    def __init__(self, reply: str, phrase: str) -> None:
        super().__init__(reply)
        self.phrase = phrase
        self.follow_ups: list[str] = []

    def follow_up(self, text: str, *, max_tokens: int):
        self.follow_ups.append(text)
        yield self.phrase


def test_a_clause_for_a_question_about_a_person_becomes_the_name_the_model_names_when_asked_again(
    settings, embedder
) -> None:
    build_index(settings=settings, embedder=embedder)
    settings = settings.with_overrides(answer_form="phrase")
    clause = "観光協会の会長は、朝早い時間の来訪をお願いしたいと話した山田太郎会長[1]。"
    gen = FollowUpGenerator(clause, "山田太郎会長")
    answer = load_pipeline(settings=settings, embedder=embedder, generator=gen).ask("観光協会の会長は誰ですか?")
    assert answer.text == "山田太郎会長[1]" and answer.raw_text == clause
    assert len(gen.follow_ups) == 1 and "山田太郎会長" in answer.citations[0].quote

    # A short answer is not asked again; a reply the answer did not say is not shown.
    gen = FollowUpGenerator("山田太郎会長[1]", "ignored")
    assert load_pipeline(settings=settings, embedder=embedder, generator=gen).ask("観光協会の会長は誰ですか?").text == (
        "山田太郎会長[1]"
    )
    assert gen.follow_ups == []
    gen = FollowUpGenerator(clause, "鈴木花子会長")
    answer = load_pipeline(settings=settings, embedder=embedder, generator=gen).ask("観光協会の会長は誰ですか?")
    assert "鈴木" not in answer.text and "山田太郎会長" in answer.text


def test_without_a_follow_up_method_the_conversation_is_sent_again_with_one_more_turn(settings, embedder) -> None:
    build_index(settings=settings, embedder=embedder)
    settings = settings.with_overrides(answer_form="phrase")
    clause = "観光協会の会長は、朝早い時間の来訪をお願いしたいと話した山田太郎会長[1]。"
    gen = RecordingGenerator(clause)
    load_pipeline(settings=settings, embedder=embedder, generator=gen).ask("観光協会の会長は誰ですか?")
    first, again = gen.calls
    assert again[: len(first)] == first and [m["role"] for m in again[len(first) :]] == ["assistant", "user"]
