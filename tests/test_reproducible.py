"""The same question gets the same answer, whatever was asked before: real model, real index, real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.webapp import EXAMPLES
from tests.conftest import KURSK_Q, chat_server, rag_cli

pytestmark = pytest.mark.integration

# The chat page's examples and what their articles say (seeds/002 and seeds/003).
EXPECTED = {EXAMPLES[0]: "スジャ", EXAMPLES[1]: "11億ドル", EXAMPLES[2]: "15.9%"}
OTHER = "トランプ大統領がウクライナとの情報共有を中断するよう指示したと述べたCIA長官は誰ですか?"


def test_a_question_gets_byte_identical_answers_whatever_came_before(real_pipe) -> None:
    a, b, c = EXAMPLES
    first = real_pipe.ask(a)
    real_pipe.ask(b)
    again = real_pipe.ask(a)
    streamed = real_pipe.stream(c)
    "".join(streamed)
    after_stream = real_pipe.ask(a)
    follow = real_pipe.ask("その町はどこの州にありますか?", history=[(a, first.text)])
    last = real_pipe.ask(a)
    assert first.text == again.text == after_stream.text == last.text
    assert [c.chunk_id for c in first.citations] == [c.chunk_id for c in last.citations]
    assert "スジャ" in first.text and not first.refused
    assert follow.text  # a follow-up in between is answered (or refused) without disturbing the next answer


def test_stream_and_ask_give_the_same_answer(real_pipe) -> None:
    c = EXAMPLES[2]
    asked = real_pipe.ask(c)
    stream = real_pipe.stream(c)
    pieces = "".join(stream)
    assert stream.answer is not None and stream.answer.text == asked.text
    assert pieces == asked.raw_text


def test_a_fresh_process_gives_the_same_answer(real_pipe, real_index) -> None:
    in_process = real_pipe.ask(KURSK_Q).text
    out = rag_cli("ask", KURSK_Q, "--index", str(real_index.index_dir))
    assert out.returncode == 0, out.stderr
    assert out.stdout.partition("\n\n")[0].strip() == in_process


def test_chat_page_answers_every_example_correctly_after_other_questions(real_index) -> None:
    from gradio_client import Client

    with chat_server(real_index) as (_proc, port):
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict(OTHER, api_name="/chat")
        answers: dict[str, list[str]] = {}
        for question in [*reversed(EXAMPLES), *EXAMPLES]:  # each example asked twice, after different questions
            text = str(client.predict(question, api_name="/chat"))
            assert EXPECTED[question] in text, (question, text)
            answers.setdefault(question, []).append(text)
        for question, texts in answers.items():
            assert texts[0] == texts[1], question


def test_drafted_decoding_gives_the_same_answer_every_time_and_keeps_the_conversation_cached(real_pipe) -> None:
    """RAG_LOOKUP_TOKENS (prompt lookup decoding, off by default): drafts copied from the passages."""
    from rag.generation import build_messages

    b, a, _ = EXAMPLES  # the budget example first: drafting flips close choices, and the Kursk one is close
    gen = real_pipe.generator
    gen.lookup_tokens = 6
    try:
        first = real_pipe.ask(a)
        real_pipe.ask(b)
        again = real_pipe.ask(a)
        assert first.text == again.text and EXPECTED[a] in first.text
        messages = build_messages(a, real_pipe.retrieve(a))
        reply = "".join(gen.stream_chat(messages, max_tokens=128))
        assert EXPECTED[a] in reply
        # what a follow-up turn goes on from: the prompt and the answer's tokens, no rejected draft
        assert gen.llm.n_tokens == len(gen.prompt_tokens(messages)) + len(gen.last_logprobs)
    finally:
        gen.lookup_tokens = 0


def test_a_saved_instruction_prefix_answers_exactly_as_one_evaluated_and_a_damaged_one_is_replaced(
    real_pipe, real_index, tmp_path
) -> None:
    """A cold start loads the evaluated instruction prefix an earlier process saved (RAG_CACHE_DIR)."""
    from rag.factories import load_generator
    from rag.generation import build_messages

    hits = real_pipe.retrieve(KURSK_Q)
    messages = build_messages(KURSK_Q, hits)

    def answer(gen) -> tuple[str, list[float]]:
        return "".join(gen.stream_chat(messages, max_tokens=64)), list(gen.last_logprobs)

    expected = answer(real_pipe.generator)
    cached = real_index.with_overrides(cache_dir=tmp_path)
    saving = load_generator(cached)
    saved = list(tmp_path.glob("prefix-*.state"))
    assert not saving.prefix_loaded and len(saved) == 1
    assert answer(saving) == expected
    del saving
    loading = load_generator(cached)
    assert loading.prefix_loaded
    assert answer(loading) == expected  # the same tokens and the same log-probabilities, not just similar
    del loading
    saved[0].write_bytes(saved[0].read_bytes()[:1000])  # cut short, as by a full disk
    recovering = load_generator(cached)
    assert not recovering.prefix_loaded and answer(recovering) == expected
    assert saved[0].stat().st_size > 1000  # written again whole
    other = load_generator(real_index.with_overrides(cache_dir=tmp_path, n_ctx=1024))
    assert not other.prefix_loaded  # a state saved for other options is never loaded


def _resident_mb(path) -> float:
    """Megabytes of `path` this process holds in memory through its mappings (/proc/self/smaps)."""
    target, mb, inside = str(path.resolve()), 0.0, False
    for line in open("/proc/self/smaps", encoding="utf-8"):
        head = line.split(maxsplit=5)
        if not head[0].endswith(":"):  # a mapping's first line: address perms offset dev inode [path]
            inside = len(head) == 6 and head[5].rstrip("\n") == target
        elif inside and head[0] == "Rss:":
            mb += int(head[1]) / 1024
    return mb


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads /proc/self/smaps (Linux)")
def test_a_mapped_model_answers_as_one_read_into_memory_and_does_not_stay_resident_beside_its_copy(
    real_pipe, real_index, tmp_path
) -> None:
    """RAG_LLM_MMAP: llama.cpp copies the repacked weights out of the map; the pages it read go back as it loads."""
    from rag.factories import load_generator
    from rag.generation import build_messages

    messages = build_messages(KURSK_Q, real_pipe.retrieve(KURSK_Q))
    settings = real_index.with_overrides(cache_dir=tmp_path, llm_repack=True)
    model = real_pipe.generator.model_path  # mapped by real_pipe's generator too: only loading is compared
    size_mb = model.stat().st_size / 2**20
    answers, added = [], []
    for mapped in (False, True):
        before = _resident_mb(model)
        gen = load_generator(settings.with_overrides(llm_mmap=mapped))
        added.append(_resident_mb(model) - before)
        answers.append(("".join(gen.stream_chat(messages, max_tokens=64)), list(gen.last_logprobs)))
        del gen
    assert answers[0] == answers[1]  # the same tokens and log-probabilities
    assert added[0] < 1  # read: loading maps nothing
    assert added[1] < 0.2 * size_mb, added  # mapped: not the whole file resident beside the repacked copy


def test_an_answer_from_given_passages_cites_only_them(real_pipe) -> None:
    """ask(passages=...) answers from the hits it is given, as from the same hits retrieved."""
    hits = real_pipe.retrieve(KURSK_Q)
    assert real_pipe.ask(KURSK_Q, passages=hits).text == real_pipe.ask(KURSK_Q).text
    others = [h for h in hits if "スジャ" not in h.chunk.text]
    answer = real_pipe.ask(KURSK_Q, passages=others)
    assert {c.source for c in answer.citations} <= {h.chunk.source for h in others}
    assert "スジャ" not in answer.text
