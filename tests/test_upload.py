"""Adding articles: `rag.add_documents`, `rag add`, the chat page's upload handler, hot reload."""

from __future__ import annotations

from pathlib import Path

import pytest

import rag
from rag import cli
from rag.factories import load_pipeline
from rag.ingest import add_documents, build_index
from rag.upload import MAX_UPLOAD_BYTES, safe_name
from rag.versions import read_manifest
from rag.webapp import upload_articles
from tests.conftest import HashingEmbedder, RecordingGenerator
from tests.test_index import NEW_ARTICLE, NoEmbedder


@pytest.fixture
def built(settings, embedder):
    build_index(settings=settings, embedder=embedder)
    return settings


@pytest.fixture
def article(tmp_path: Path) -> Path:
    path = tmp_path / "upload" / "雪まつり.txt"
    path.parent.mkdir()
    path.write_text(NEW_ARTICLE, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("given", "saved"),
    [
        ("../../etc/evil.txt", "evil.txt"),
        ("C:\\Users\\me\\記事 一覧.md", "記事_一覧.md"),
        (".hidden.txt", "hidden.txt"),
        ("..", "article"),
        ("a\x00b<c>.TXT", "a_b_c.txt"),
        ("ニュース.html", "ニュース.html"),
    ],
)
def test_safe_name_keeps_files_inside_the_seeds_folder(given: str, saved: str) -> None:
    assert safe_name(given) == saved


def test_add_documents_copies_and_indexes_only_the_new_file(built, article: Path) -> None:
    result = rag.add_documents([article], settings=built, embedder=HashingEmbedder())
    assert isinstance(result, rag.AddReport) and result.saved == ["雪まつり.txt"]
    assert (built.seeds_dir / "雪まつり.txt").read_text(encoding="utf-8") == NEW_ARTICLE
    statuses = {f.path: f.status for f in result.build.files}
    assert statuses == {"blog.txt": "unchanged", "kyoto.txt": "unchanged", "雪まつり.txt": "added"}
    assert 0 < result.build.embedded < result.build.chunks
    assert "雪まつり.txt" in read_manifest(built.index_dir).sources


def test_a_running_pipeline_answers_from_the_added_article_without_restart(built, article: Path) -> None:
    pipe = load_pipeline(settings=built, embedder=HashingEmbedder(), generator=RecordingGenerator())
    assert all(h.chunk.source != "雪まつり.txt" for h in pipe.retrieve("雪まつりの雪像は何基?", k=4))
    add_documents([article], settings=built, embedder=HashingEmbedder())  # as another process would
    answer = pipe.ask("雪まつりの雪像は何基?")
    assert answer.citations and answer.citations[0].source == "雪まつり.txt"
    assert "150基" in answer.citations[0].text


@pytest.mark.parametrize(
    ("name", "content", "code", "message"),
    [
        ("report.xls", b"\xd0\xcf\x11\xe0", "type", r"only \.txt, \.md, \.html, \.htm, \.pdf, \.docx"),
        ("report.pdf", b"%PDF-1.4", "unreadable", "PDFとして読めません"),
        ("old.doc", b"\xd0\xcf\x11\xe0", "doc", r"\.docx として保存し直してください"),
        ("empty.txt", b"", "empty", "empty"),
        ("binary.txt", b"\x00\x01\x02", "unreadable", "binary.txt"),
    ],
)
def test_refused_files_change_nothing(built, tmp_path: Path, name, content, code, message) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    good = tmp_path / "good.txt"
    good.write_text(NEW_ARTICLE, encoding="utf-8")
    before = sorted(p.name for p in built.seeds_dir.iterdir())
    with pytest.raises(rag.UploadError, match=message) as info:
        add_documents([good, bad], settings=built, embedder=NoEmbedder())
    assert info.value.code == code and info.value.filename == name
    assert sorted(p.name for p in built.seeds_dir.iterdir()) == before  # not even the good one


def test_a_file_over_the_size_limit_is_refused_with_the_limit(built, tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with open(big, "wb") as fh:
        fh.truncate(MAX_UPLOAD_BYTES + 1)  # sparse: no 10 MB written
    with pytest.raises(rag.UploadError, match=r"big\.txt is 10\.5 MB; \.txt files up to 10 MB"):
        add_documents([big], settings=built, embedder=NoEmbedder())


def test_an_existing_name_is_refused_unless_replace(built, article: Path) -> None:
    add_documents([article], settings=built, embedder=HashingEmbedder())
    again = add_documents([article], settings=built, embedder=NoEmbedder())  # same bytes: nothing to do
    assert again.unchanged == ["雪まつり.txt"] and not again.build.rebuilt
    article.write_text(NEW_ARTICLE.replace("150基", "160基"), encoding="utf-8")
    with pytest.raises(rag.UploadError, match=r"already exists.*--replace") as info:
        add_documents([article], settings=built, embedder=NoEmbedder())
    assert info.value.code == "exists"
    report = add_documents([article], settings=built, embedder=HashingEmbedder(), replace=True)
    assert {f.path: f.status for f in report.build.files}["雪まつり.txt"] == "changed"
    assert "160基" in (built.seeds_dir / "雪まつり.txt").read_text(encoding="utf-8")


def test_two_files_with_the_same_safe_name_are_refused(built, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "x.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    with pytest.raises(rag.UploadError, match=r"both be saved as x\.txt"):
        add_documents([tmp_path / "a" / "x.txt", tmp_path / "b" / "x.txt"], settings=built, embedder=NoEmbedder())


def test_a_failed_index_update_takes_the_files_out_again(built, article: Path) -> None:
    class Exploding(HashingEmbedder):
        def embed_passages(self, texts, *, show_progress=False):
            raise RuntimeError("out of memory while embedding")

    kyoto_before = (built.seeds_dir / "kyoto.txt").read_bytes()
    replacement = article.with_name("kyoto.txt")
    replacement.write_text(NEW_ARTICLE, encoding="utf-8")
    with pytest.raises(RuntimeError):
        add_documents([article, replacement], settings=built, embedder=Exploding(), replace=True)
    assert not (built.seeds_dir / "雪まつり.txt").exists()
    assert (built.seeds_dir / "kyoto.txt").read_bytes() == kyoto_before
    assert read_manifest(built.index_dir).docs == 3


@pytest.fixture
def cli_args(settings, monkeypatch, capsys) -> list[str]:
    """`--seeds --index` of a tmp index built by `rag build` itself (so with the CLI's chunking settings)."""
    monkeypatch.setattr("rag.ingest.lazy_embedder", lambda settings: HashingEmbedder())
    where = ["--seeds", str(settings.seeds_dir), "--index", str(settings.index_dir), "--quiet"]
    assert cli.main(["build", *where]) == 0
    assert "完了: 3 記事" in capsys.readouterr().out
    return where


def test_rag_add_cli(cli_args, article: Path, capsys) -> None:
    assert cli.main(["add", str(article), *cli_args]) == 0
    out = capsys.readouterr().out
    assert "雪まつり.txt" in out and "追加 1" in out and "変更なし 2" in out
    assert cli.main(["add", str(article.with_name("nothing.pdf")), *cli_args]) == 2
    err = capsys.readouterr().err
    assert "nothing.pdf" in err and "Traceback" not in err


def test_rag_build_prints_what_changed(settings, cli_args, capsys) -> None:
    (settings.seeds_dir / "blog.txt").unlink()
    assert cli.main(["build", *cli_args]) == 0
    out = capsys.readouterr().out
    assert "削除 1" in out and "削除: blog.txt" in out and "新たに埋め込み 0" in out
    assert cli.main(["build", *cli_args]) == 0
    assert "最新" in capsys.readouterr().out
    assert cli.main(["build", "--full", *cli_args]) == 0
    assert "完了: 1 記事" in capsys.readouterr().out


def test_chat_page_upload_reports_in_japanese(built, article: Path, tmp_path: Path) -> None:
    pipe = load_pipeline(settings=built, embedder=HashingEmbedder(), generator=RecordingGenerator())
    message = upload_articles(pipe, [str(article)])
    assert "記事を追加しました" in message and "雪まつり.txt" in message
    assert pipe.retrieve("雪まつりの雪像は何基?", k=1)[0].chunk.source == "雪まつり.txt"
    sheet = tmp_path / "a.xls"
    sheet.write_bytes(b"\xd0\xcf\x11\xe0")
    refused = upload_articles(pipe, [str(sheet)])
    assert "追加しませんでした" in refused and "a.xls" in refused and ".txt" in refused and ".pdf" in refused
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(b"%PDF")
    refused = upload_articles(pipe, [str(pdf)])
    assert "追加しませんでした" in refused and "a.pdf" in refused and "PDFとして読めません" in refused
    article.write_text(NEW_ARTICLE.replace("150基", "160基"), encoding="utf-8")
    assert "置き換える" in upload_articles(pipe, [str(article)])
    assert "記事を追加しました" in upload_articles(pipe, [str(article)], replace=True)
    assert upload_articles(pipe, []) == "追加するファイルを選んでください。"


def test_adding_to_an_index_built_from_another_folder_is_refused(built, article: Path, tmp_path: Path) -> None:
    other = tmp_path / "other_seeds"
    other.mkdir()
    with pytest.raises(rag.SeedsError, match=r"blog\.txt, kyoto\.txt.*built from another folder"):
        add_documents([article], settings=built, seeds_dir=other, embedder=NoEmbedder())
    assert list(other.iterdir()) == [] and read_manifest(built.index_dir).docs == 3
