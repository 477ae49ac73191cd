"""Malformed and mutated files, through the sandboxed loaders: each ends, within the bound, as a
Document or a one-line DocumentError, never anything else."""

from __future__ import annotations

import io
import logging
import time
import zipfile
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.hostile_files import web_meta
from index import sandbox
from index.errors import DocumentError
from index.loaders import load_bytes
from index.records import Document
from index.sandbox import Limits
from index.web.pages import load_stored
from tests.index.test_loaders import make_docx, make_pdf

LIMITS = Limits(cpu_s=5, wall_s=8, memory=1 << 30)
BOUND = LIMITS.wall_s + 3  # seconds: a worker restart and the transfers on top
FUZZ = settings(
    max_examples=800,
    deadline=None,  # the bound is checked in the test: a deadline would re-run slow examples
    derandomize=True,  # the same examples on every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _docx() -> bytes:
    def build(document):
        document.add_heading("Minutes", 1)
        document.add_paragraph("The committee met on Tuesday.")
        table = document.add_table(rows=1, cols=2)
        table.cell(0, 0).text, table.cell(0, 1).text = "Budget", "Approved"

    return make_docx(build)


SEEDS = {
    "a.pdf": make_pdf(["The committee met on Tuesday.", "The budget was approved."], "Minutes"),
    "a.docx": _docx(),
    "a.html": b"<html><head><title>Minutes</title></head><body><h1>Minutes</h1><p>The "
    b"committee met on <b>Tuesday</b>.</p><table><tr><td>Budget</td><td>Approved</td></tr>"
    b"</table><pre>  kept  </pre></body></html>",
    "a.txt": "The committee met on Tuesday.\nCaf\u00e9 \u2014 budget approved.\n".encode(),
    "a.md": b"# Minutes\n\n```\n# not a title\n```\n\nThe committee met on *Tuesday*.\n",
}


class Failures(logging.Handler):
    """What the sandbox logs when a reader raised something other than DocumentError: the
    caller sees "could not be read", but for the fuzzer it is a bug."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


FAILURES = Failures()


@pytest.fixture(scope="module", autouse=True)
def small_limits():
    saved, sandbox.LIMITS = sandbox.LIMITS, LIMITS
    logging.getLogger("index.sandbox").addHandler(FAILURES)
    yield
    logging.getLogger("index.sandbox").removeHandler(FAILURES)
    sandbox.LIMITS = saved


def mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` with a few bytes flipped, inserted, deleted, or the end cut off."""
    at = st.integers(0, len(data))
    edit = st.one_of(
        st.tuples(st.just("flip"), at, st.integers(1, 255)),
        st.tuples(st.just("insert"), at, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("insert"), at, st.sampled_from([b"(", b"<<", b"obj", b"<div>", b"\x00"])),
        st.tuples(st.just("delete"), at, st.integers(1, 64)),
        st.tuples(st.just("cut"), at, st.just(0)),
    )

    def apply(edits) -> bytes:
        out = bytearray(data)
        for kind, pos, arg in edits:
            pos = min(pos, len(out))
            if kind == "flip" and pos < len(out):
                out[pos] ^= arg
            elif kind == "insert":
                out[pos:pos] = arg
            elif kind == "delete":
                del out[pos : pos + arg]
            elif kind == "cut":
                del out[pos:]
        return bytes(out)

    return st.lists(edit, min_size=1, max_size=6).map(apply)


def rezipped(docx: bytes) -> st.SearchStrategy[bytes]:
    """The DOCX with its document.xml mutated and the archive rebuilt (valid CRCs), so the
    damage reaches python-docx and lxml rather than stopping at zipfile."""
    with zipfile.ZipFile(io.BytesIO(docx)) as archive:
        entries = {i.filename: archive.read(i) for i in archive.infolist()}

    def build(xml: bytes) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, body in entries.items():
                archive.writestr(name, xml if name == "word/document.xml" else body)
        return out.getvalue()

    return mutated(entries["word/document.xml"]).map(build)


def check(call, *args) -> None:
    FAILURES.seen.clear()
    start = time.monotonic()
    try:
        doc = call(*args)
        assert isinstance(doc, Document) and doc.text
    except DocumentError as err:
        assert "\n" not in str(err) and str(err), repr(str(err))
    assert time.monotonic() - start < BOUND
    assert FAILURES.seen == []


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seeds_read(name: str):
    assert "committee" in load_bytes(name, SEEDS[name], name).text


@FUZZ
@given(data=st.data())
@pytest.mark.parametrize("name", sorted(SEEDS))
def test_mutated_files_read_or_are_refused(name: str, data: st.DataObject):
    check(load_bytes, name, data.draw(mutated(SEEDS[name])), name)


@FUZZ
@given(docx=rezipped(SEEDS["a.docx"]))
def test_docx_with_damaged_xml_reads_or_is_refused(docx: bytes):
    check(load_bytes, "a.docx", docx, "a.docx")


CHARSETS = ["undefined", "utf-8", "latin-1", "base64", "utf-7", "idna", "x\x00y", "utf-16", "?"]


@FUZZ
@example(page=SEEDS["a.html"] + b"\xff", charset="undefined", kind=".html")
@example(page=b"plain \xff", charset="undefined", kind=".txt")
@given(
    page=st.one_of(mutated(SEEDS["a.html"]), mutated(SEEDS["a.txt"]), st.binary(max_size=64)),
    charset=st.one_of(st.none(), st.sampled_from(CHARSETS), st.text(max_size=12)),
    kind=st.sampled_from([".html", ".txt", ".md"]),
)
def test_web_pages_with_any_declared_charset_read_or_are_refused(page, charset, kind):
    check(load_stored, page, replace(web_meta(kind), charset=charset), "web/page")


def test_undefined_charset_falls_back_to_utf8():
    meta = replace(web_meta(), charset="undefined")
    assert "committee met on Tuesday." in load_stored(SEEDS["a.html"], meta, "web/page").page_text
    meta = replace(web_meta(".txt"), charset="undefined")
    assert load_stored("Caf\u00e9".encode(), meta, "web/t").text == "Caf\u00e9"
