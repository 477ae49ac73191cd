"""The engine's web pages: leftovers of interrupted writes, and data/sources.txt's syntax."""

from __future__ import annotations

import pytest

from bot.web import read_sources
from index.errors import Error
from tests.web_server import WebServer


def test_an_interrupted_store_or_removal_is_cleaned_up_at_start(make_engine, tmp_path) -> None:
    engine = make_engine(fetch_allow_loopback=True)
    with WebServer() as web:
        _, doc = engine.add_url(7, web.url("/fixture/tricky-statement"), 1)
    docs = tmp_path / "state" / "guilds" / "7" / "docs"
    body = docs / doc.doc_id.removeprefix("uploads/")
    (docs / ".half-written.html.part").write_bytes(b"<html>")
    (docs / "gone.html.web.json").write_text("{}")  # its body was removed, then the process died
    engine = make_engine(fetch_allow_loopback=True)  # a restart; the server loads on first use
    assert engine.documents(7)
    assert sorted(p.name for p in docs.iterdir()) == [body.name, body.name + ".web.json"]
    assert doc.doc_id in engine.indexes["7"].infos


def test_the_sources_file_takes_urls_titles_and_comments(tmp_path) -> None:
    listing = tmp_path / "sources.txt"
    listing.write_text(
        "# comment\n\nhttps://example.org/a\n  https://example.org/b   The B page  \n",
        encoding="utf-8",
    )
    assert read_sources(listing) == {
        "https://example.org/a": None,
        "https://example.org/b": "The B page",
    }
    listing.write_text("https://example.org/a\nfile:///etc/passwd\n", encoding="utf-8")
    with pytest.raises(Error, match=r"sources.txt:2: Only http:// and https:// links"):
        read_sources(listing)
    assert read_sources(tmp_path / "missing.txt") == {}
