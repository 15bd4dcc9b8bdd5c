"""End to end on the real parts: converted e5, FAISS, the real seeds, the default GGUF, Gradio."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rag.config import Settings
from rag.versions import version_dir
from tests.conftest import KURSK_FILE, KURSK_Q, REPO, chat_server, rag_cli

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("question", "source", "needle"),
    [
        (KURSK_Q, KURSK_FILE, "スジャ"),
        ("在日米軍の強化計画を中止すると、どれくらいの予算を削減できますか?", "002_579c7d98fbda4370.txt", "11億ドル"),
        ("ゼレンスキー氏の再選を願う国民の割合は何%ですか?", "003_966971cbe43363d3.txt", "15.9%"),
        ("情報共有の中断を指示したと報じられたのは誰の発言ですか?", "001_7343ce0dbd00ab2d.txt", "ラトクリフ"),
    ],
)
def test_real_retrieval_finds_the_passage_with_the_answer(real_pipe, question, source, needle) -> None:
    hits = real_pipe.retrieve(question, k=4)
    assert any(h.chunk.source == source and needle in h.chunk.text for h in hits), [h.chunk.text[:40] for h in hits]


def test_rag_build_cli_on_real_seeds(tmp_path: Path) -> None:
    out = rag_cli("build", "--seeds", str(REPO / "seeds"), "--index", str(tmp_path / "idx"), "--quiet")
    assert out.returncode == 0, out.stderr
    assert re.search(r"完了: \d+ 記事, \d+ passages", out.stdout)
    assert (version_dir(tmp_path / "idx") / "manifest.json").is_file()
    again = rag_cli("build", "--seeds", str(REPO / "seeds"), "--index", str(tmp_path / "idx"), "--if-stale", "--quiet")
    assert again.returncode == 0 and "最新" in again.stdout


def test_rag_ask_answers_suja_and_cites_its_file(real_index: Settings) -> None:
    out = rag_cli("ask", KURSK_Q, "--index", str(real_index.index_dir))
    assert out.returncode == 0, out.stderr
    answer, _, sources = out.stdout.partition("出典:")
    assert "スジャ" in answer
    assert re.search(r"\[\d\]", answer), answer
    assert KURSK_FILE in sources


def test_api_stream_and_follow_up(real_pipe) -> None:
    stream = real_pipe.stream(KURSK_Q)
    pieces = list(stream)
    answer = stream.answer
    assert len(pieces) > 1 and "スジャ" in answer.text
    assert any(c.source == KURSK_FILE and "スジャ" in c.text for c in answer.citations)
    follow = real_pipe.retrieve("その町を拠点にしているのはどちらの軍ですか?", history=[(KURSK_Q, answer.text)])
    assert any(h.chunk.source == KURSK_FILE for h in follow)


def test_missing_index_gives_a_clear_cli_error(tmp_path: Path) -> None:
    out = rag_cli("ask", KURSK_Q, "--index", str(tmp_path / "none"))
    assert out.returncode == 2
    assert "rag build" in out.stderr and "Traceback" not in out.stderr


def test_gradio_page_answers_through_the_api(real_index: Settings) -> None:
    from gradio_client import Client

    with chat_server(real_index) as (proc, port):
        # Listening on loopback only, so nobody else on the network reaches the page.
        import psutil

        listening = [
            c.laddr
            for c in psutil.Process(proc.pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        result = client.predict(KURSK_Q, api_name="/chat")
        text = str(result)
        assert "スジャ" in text
        assert KURSK_FILE in text  # the sources panel names the seed file
        assert "出典" in text


def test_rag_eval_on_jsquad_sample_retrieval(tmp_path: Path) -> None:
    out = rag_cli(
        "eval", str(REPO / "tests" / "data" / "jsquad_sample.json"), "--retrieval-only", "--out", str(tmp_path)
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["retrieval"]["questions"] == 51
    assert report["retrieval"]["recall@5"] >= 0.9  # 18 paragraphs: a broken tokenizer or index drops far below
    assert (tmp_path / "report.png").stat().st_size > 1000
    assert "recall@5" in out.stdout


def test_rag_eval_answers_a_few_seed_questions(real_index: Settings, tmp_path: Path) -> None:
    out = rag_cli(
        "eval",
        str(REPO / "eval" / "seed_qa.jsonl"),
        "--index",
        str(real_index.index_dir),
        "--limit",
        "4",
        "--out",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    answers = json.loads((tmp_path / "report.json").read_text())["answers"]
    assert answers["answered"] == 4
    assert answers["accuracy"] >= 0.5 and answers["ttft_p50"] > 0 and answers["prompt_tokens_p50"] > 0


@pytest.mark.parametrize(
    ("question", "phrase"),
    [
        (KURSK_Q, "スジャ"),
        ("在日米軍の強化計画を中止すると、どれくらいの予算を削減できますか?", "約11億ドル(約1600億円)"),
        ("ゼレンスキー氏の再選を願う国民の割合は何%ですか?", "15.9%"),
    ],
)
def test_page_examples_answer_first_with_the_phrase_and_the_sentence_that_holds_it(
    real_pipe, real_index: Settings, question: str, phrase: str
) -> None:
    from rag.factories import load_pipeline
    from rag.webapp import EXAMPLES

    assert question in EXAMPLES
    phrase_first = load_pipeline(
        settings=real_index.with_overrides(answer_form="phrase"),
        embedder=real_pipe.retriever.embedder,
        generator=real_pipe.generator,  # the same model: its follow-up turn runs in the same cache
    )
    answer = phrase_first.ask(question)
    # The answer is the phrase and its passage, not a copied clause around it ("…要衝スジャ奪還に向けて…").
    assert re.fullmatch(re.escape(phrase) + r"\[\d\]", answer.text), answer.text
    [cited] = answer.citations
    assert phrase in cited.quote and cited.quote in cited.text  # what the reader opens states the answer
    phrase_first.ask("トランプ大統領がウクライナとの情報共有を中断するよう指示したと述べたCIA長官は誰ですか?")
    assert phrase_first.ask(question).text == answer.text  # the follow-up turn too: same answer after another
