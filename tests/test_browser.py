"""The chat page in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by selenium.

A real `rag serve` process answers from a copy of the real index; the test types an example
question, waits for the streamed answer with its [n] marker, opens the sources panel and finds the
highlighted passage; then uploads an article (a PDF) through the page and asks about it.
`make test` installs chromium and chromium-driver when they are missing (the `browser` target).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.config import Settings
from rag.webapp import EXAMPLES, UPLOAD_LABEL
from tests.conftest import REPO, free_port, run_env, stop_process
from tests.office_files import make_pdf

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Without the background-networking flags Chromium keeps dialling Google's hosts, which this
# offline machine refuses; a fresh profile keeps runs independent.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,2000",
]
ANSWER_WAIT = 900  # seconds: the model writes on 2 shared cores; a wait, not a speed assertion
SERVER_WAIT = 900  # loading both models on a busy machine has taken over 300 s
MARKER = re.compile(r"\[\d+\]")

NEW_ARTICLE = "otaru_yukiakari.pdf"  # a press release as a two-page PDF (Japanese CID font, header, page numbers)
NEW_TITLE = "小樽市で雪あかりの路、来場者は約12万人"
NEW_PARAGRAPHS = [
    "2026年2月16日(月)10時00分",
    "北海道小樽市で開かれた冬の催し「小樽雪あかりの路」には、10日間で約12万人が訪れたと実行委員会が発表した。",
    "運河沿いには約3万本のろうそくが並んだ。",
]
NEW_QUESTION = "小樽雪あかりの路には10日間で何人が訪れましたか?"


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Chromium is not installed: run `make browser` (apt-get install chromium chromium-driver).")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="kiji-qa-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver: Any, condition: Callable[[Any], Any], timeout: float, what: str) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        # The chat re-renders its messages while an answer streams: an element read mid-update goes
        # stale, and the next poll reads the new one.
        wait = WebDriverWait(driver, timeout, poll_frequency=0.5, ignored_exceptions=(StaleElementReferenceException,))
        return wait.until(condition)
    except TimeoutException:
        pytest.fail(f"waited {timeout} s for {what}; page text: {driver.find_element('tag name', 'body').text[-800:]}")


def _ask(driver: Any, question: str) -> tuple[str, Any]:
    """Type a question, wait for its streamed answer and sources panel, check its [n] marker; (answer, panel)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    before = len(driver.find_elements(By.CSS_SELECTOR, ".thought"))
    box = driver.find_element(By.CSS_SELECTOR, "textarea")
    box.send_keys(question)
    box.send_keys(Keys.ENTER)

    def answered(d: Any) -> tuple[str, Any] | None:
        # The sources panel comes with the final, checked answer (also under a refusal).
        panels = d.find_elements(By.CSS_SELECTOR, ".thought")
        bots = [m.text for m in d.find_elements(By.CSS_SELECTOR, ".message.bot")]
        if len(panels) > before and bots:
            return bots[-1], panels[-1]
        return None

    text, panel = _wait(driver, answered, ANSWER_WAIT, f"the answer to {question!r}")
    assert MARKER.search(text), f"no [n] marker in the answer to {question!r}: {text}"
    return text, panel


def _open_sources(driver: Any, panel: Any) -> str:
    """Open a collapsed sources panel; return its text once the passage is shown."""
    from selenium.webdriver.common.by import By

    panel.find_element(By.CSS_SELECTOR, ".title").click()
    return _wait(
        driver,
        # textContent: .text leaves out what is still sliding open (the file names came back empty).
        lambda d: panel.find_elements(By.CSS_SELECTOR, "mark") and panel.get_attribute("textContent"),
        60,
        "the sources panel to open",
    )


@pytest.fixture
def served(real_index: Settings, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real `rag serve` process on a copy of the real seeds and index (an upload changes only the copy)."""
    seeds, index_dir = tmp_path / "seeds", tmp_path / "index"
    shutil.copytree(real_index.seeds_dir, seeds)
    shutil.copytree(real_index.index_dir, index_dir)
    port = free_port()
    log = open(tmp_path / "serve.log", "w+", encoding="utf-8")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rag.cli",
            "serve",
            "--index",
            str(index_dir),
            "--seeds",
            str(seeds),
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=run_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + SERVER_WAIT
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"rag serve exited: {log.read()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.time() > deadline:
                pytest.fail(f"rag serve did not listen within {SERVER_WAIT} s")
            time.sleep(1)
        yield port, seeds
    finally:
        stop_process(proc, timeout=30)
        log.close()


def test_browser_asks_an_example_opens_its_source_then_uploads_an_article_and_asks_about_it(
    served: tuple[int, Path], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    port, seeds = served
    browser.get(f"http://127.0.0.1:{port}/")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "textarea"), 120, "the chat page to load")

    # 1. An example question: streamed answer with a marker, then the highlighted passage in its source.
    text, panel = _ask(browser, EXAMPLES[0])
    assert "スジャ" in text
    sources = _open_sources(browser, panel)
    # Every cited passage has its own highlight; one of them holds the answer. textContent, as .text
    # is empty for a highlight still scrolling or fading in while the panel opens.
    marks = [m.get_attribute("textContent").strip() for m in panel.find_elements(By.CSS_SELECTOR, "mark")]
    quote = next((m for m in marks if "スジャ" in m), "")
    assert quote, f"no highlighted passage holds the answer: {marks}"
    cited_files = re.findall(r"\d{3}_[0-9a-f]+\.txt", sources)
    assert cited_files and any(
        quote in " ".join((seeds / f).read_text(encoding="utf-8").split()) for f in cited_files
    )  # the quoted passage is really in the cited article

    # 2. Upload an article through the page's control, then ask about it.
    article = tmp_path / NEW_ARTICLE
    make_pdf(article, NEW_PARAGRAPHS, title=NEW_TITLE, headline=NEW_TITLE, lines_per_column=2)
    [accordion] = [b for b in browser.find_elements(By.CSS_SELECTOR, "button.label-wrap") if UPLOAD_LABEL in b.text]
    accordion.click()
    file_input = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"), 30, "the file input")
    file_input[0].send_keys(str(article))
    # Gradio shows the attached file's stem and suffix in separate elements.
    stem = Path(NEW_ARTICLE).stem
    _wait(browser, lambda d: stem in d.find_element(By.TAG_NAME, "body").text, 60, "the file to be attached")
    [button] = [
        b
        for b in browser.find_elements(By.CSS_SELECTOR, "button")
        if b.text.strip() == UPLOAD_LABEL and "label-wrap" not in (b.get_attribute("class") or "")
    ]
    button.click()
    _wait(
        browser, lambda d: "記事を追加しました" in d.find_element(By.TAG_NAME, "body").text, ANSWER_WAIT, "the upload"
    )
    assert (seeds / NEW_ARTICLE).is_file()

    text, panel = _ask(browser, NEW_QUESTION)
    assert "12万人" in text
    sources = _open_sources(browser, panel)
    assert NEW_ARTICLE in sources and "p. 1" in sources  # the answer cites the uploaded PDF, with its page
