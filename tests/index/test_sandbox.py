"""Untrusted documents are read in a worker process with limits (index/sandbox.py): hostile
files end within the bound with a one-line refusal, a dying worker is replaced, and no worker
outlives its parent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.hostile_files import link_page, nested_page, pdf_bomb, text_pdf, web_meta
from index import sandbox
from index.errors import DocumentError
from index.loaders import _extract, load_bytes
from index.sandbox import Limits, Sandbox
from index.web.pages import load_stored

ROOT = Path(__file__).resolve().parent.parent.parent
SMALL = Limits(cpu_s=2, wall_s=4, memory=512 << 20)
TOO_LONG = re.compile(
    r"took too long to read \(over [^)]+\); it may be built to exhaust readers\.$"
)


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> Limits:
    """The process-wide sandbox (what load_bytes and load_stored use) with small limits."""
    monkeypatch.setattr(sandbox, "LIMITS", SMALL)
    return SMALL


@pytest.fixture
def box():
    box = Sandbox(SMALL)
    yield box
    box.close()


def refusal(call, *args, **kwargs) -> tuple[str, float]:
    """The one-line DocumentError a call raises, and the seconds it took."""
    start = time.monotonic()
    with pytest.raises(DocumentError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.endswith("."), message
    return message, time.monotonic() - start


def bound(limits: Limits) -> float:
    return limits.wall_s + 3  # a (re)start of the worker and the transfers


def alive(pid: int) -> bool:
    """Running, not exited (an exited orphan can linger as a zombie if init does not reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


# -- hostile documents, through the loaders' public functions ----------------------------------


def test_pdf_bomb_is_refused_within_the_bound(small: Limits):
    data = pdf_bomb()  # 22 s of CPU in-process; ~10 s even with only its first 100 pages
    assert len(data) < 20_000
    message, seconds = refusal(load_bytes, "report.pdf", data, "report.pdf")
    assert message.startswith("report.pdf took too long to read") and TOO_LONG.search(message)
    assert seconds < bound(small)


def test_html_link_bomb_page_is_refused_within_the_bound(small: Limits):
    data = link_page()  # 5 MB: 13 s of CPU in trafilatura, in-process
    message, seconds = refusal(load_stored, data, web_meta(), "web/x.html")
    assert message.startswith("https://example.org/page took too long") and TOO_LONG.search(message)
    assert seconds < bound(small)


@pytest.mark.parametrize("as_page", [True, False], ids=["web page", "file"])
def test_deeply_nested_html_ends_within_the_bound(small: Limits, as_page: bool):
    start = time.monotonic()
    try:
        if as_page:
            doc = load_stored(nested_page(), web_meta(), "web/x.html")
        else:
            doc = load_bytes("deep.html", nested_page(), "deep.html")
        assert "deep text" in doc.text
    except DocumentError as err:
        assert "\n" not in str(err)
    assert time.monotonic() - start < bound(small)


def test_every_parser_runs_in_the_sandbox(monkeypatch: pytest.MonkeyPatch):
    """PDF, DOCX and HTML files and HTML pages are parsed in the worker; plain text is only
    decoded, in-process."""
    calls = []
    real = sandbox.run

    def spy(fn, *args, name):
        calls.append(fn.__name__)
        return real(fn, *args, name=name)

    monkeypatch.setattr(sandbox, "run", spy)
    html = b"<html><body><article><p>" + b"A statement of some length. " * 20 + b"</p>"
    from tests.index.test_loaders import make_docx

    docx = make_docx(lambda d: d.add_paragraph("Hello"))
    for name, data in [
        ("a.pdf", text_pdf(1, 1)),
        ("a.docx", docx),
        ("a.html", html),
        ("a.htm", html),
    ]:
        assert load_bytes(name, data, name).text
        assert calls == ["_extract"]
        calls.clear()
    assert load_stored(html, web_meta(), "w").text.startswith("A statement")
    assert load_stored(text_pdf(1, 1), web_meta(".pdf"), "w").text
    assert calls == ["_read_html", "_extract"]
    calls.clear()
    assert load_bytes("a.txt", b"plain", "a.txt").text == "plain"
    assert load_bytes("a.md", b"# T\n\nplain", "a.md").title == "T"
    assert load_stored(b"plain", web_meta(".txt"), "w").text == "plain"
    assert calls == []


# -- the worker: errors, limits, replacement ---------------------------------------------------


def test_a_document_error_in_the_worker_keeps_its_message(box: Sandbox):
    said, _ = refusal(box.run, _extract, "bad.pdf", ".pdf", b"%PDF-1.4 junk", name="bad.pdf")
    assert said == "bad.pdf could not be read as a PDF; it may be damaged."
    pid = box.run(os.getpid, name="x")
    said, _ = refusal(box.run, eval, "1/0", name="odd.pdf")  # any other exception
    assert said == "odd.pdf could not be read; it may be damaged."
    assert box.run(os.getpid, name="x") == pid  # an exception leaves the worker in place


@pytest.mark.parametrize(
    ("fn", "args", "expected"),
    [
        (eval, ("sum(range(10**13))",), TOO_LONG),  # CPU limit: SIGXCPU (or the wall clock)
        (time.sleep, (60,), re.compile(r"took too long to read \(over 1\.5 s\);")),
        (bytearray, (1 << 30,), re.compile(r"needed too much memory to read \(over 300 MB\);")),
        (os._exit, (3,), re.compile(r"^x\.pdf could not be read; it may be damaged\.$")),
    ],
    ids=["cpu", "wall", "memory", "exit"],
)
def test_a_worker_past_a_limit_or_dead_is_replaced(fn, args, expected: re.Pattern):
    limits = Limits(cpu_s=1, wall_s=1.5, memory=300 << 20)
    box = Sandbox(limits)
    try:
        before = box.run(os.getpid, name="x")
        message, seconds = refusal(box.run, fn, *args, name="x.pdf")
        assert message.startswith("x.pdf ") and expected.search(message), message
        assert seconds < bound(limits)
        assert not alive(before)  # killed and reaped
        after = box.run(os.getpid, name="x")  # the next call works, in a new worker
        assert after != before and alive(after)
        assert box.run(_extract, "a.pdf", ".pdf", text_pdf(1, 1), name="a.pdf")[0]
    finally:
        box.close()


def test_threads_share_the_worker_safely(box: Sandbox):
    pdfs = {n: text_pdf(1, n) for n in range(1, 7)}
    results: dict[int, list] = {}

    def work(n: int) -> None:
        got = []
        for _ in range(4):
            if n == 0:  # one thread keeps killing the worker
                got.append(refusal(box.run, os._exit, 1, name="x.pdf")[0])
            else:
                parts, _ = box.run(_extract, f"{n}.pdf", ".pdf", pdfs[n], name=f"{n}.pdf")
                got.append(parts[0].count("committee"))
        results[n] = got

    threads = [threading.Thread(target=work, args=(n,)) for n in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results[0] == ["x.pdf could not be read; it may be damaged."] * 4
    assert {n: results[n] for n in pdfs} == {n: [n] * 4 for n in pdfs}


def test_the_worker_imports_no_model_or_bot_code(box: Sandbox):
    modules = box.run(eval, "sorted(__import__('sys').modules)", name="x")
    assert "pypdf" in modules and "trafilatura" in modules and "index.web.pages" in modules
    heavy = {"torch", "bot", "discord", "faiss", "sentence_transformers", "numpy"}
    assert [m for m in modules if m.split(".")[0] in heavy] == []


# -- no worker outlives its parent --------------------------------------------------------------

PARENT = """
import os, sys, threading, time
from index import sandbox
print(sandbox.run(os.getpid, name="x"), flush=True)
if sys.argv[1] == "busy":
    threading.Thread(target=sandbox.run, args=(time.sleep, 60), kwargs={"name": "y"}).start()
    time.sleep(0.5)
if sys.argv[1] != "exit":
    os.kill(os.getpid(), 9)
"""


@pytest.mark.parametrize("how", ["exit", "killed", "busy"])
def test_the_worker_goes_with_its_parent(how: str):
    """Normal exit (atexit), the parent killed while the worker idles (EOF), and killed while
    the worker is busy (its watchdog)."""
    out = subprocess.run(
        [sys.executable, "-c", PARENT, how], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    worker = int(out.stdout.split()[0])
    deadline = time.monotonic() + 5
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(worker)


def test_close_stops_and_reaps_the_worker():
    box = Sandbox()
    pid = box.run(os.getpid, name="x")
    box.close()
    assert not Path(f"/proc/{pid}").exists()
