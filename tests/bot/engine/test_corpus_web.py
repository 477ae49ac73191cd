"""The engine's web pages: leftovers of interrupted writes, and data/sources.txt's syntax."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime, timedelta

import pytest

from index.errors import DocumentError, Error
from index.web.pages import read_meta, write_meta
from index.web.sources import read_sources
from tests.web_server import Reply, WebServer, fixture


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


def test_a_slow_page_never_holds_up_another_servers_upload(make_engine, tmp_path) -> None:
    """A re-index fetches its pages before it takes the write lock: while one drips for 4 s,
    an upload elsewhere is stored and answered at once."""
    engine = make_engine(fetch_allow_loopback=True, fetch_timeout=4.0)
    reports = []
    with WebServer() as web:
        (tmp_path / "data" / "sources.txt").write_text(web.url("/drip") + "\n")
        reindex = threading.Thread(target=lambda: reports.append(engine.reindex()))
        reindex.start()
        while not web.hits("/drip"):
            time.sleep(0.05)
        started = time.monotonic()
        engine.add_document(7, "quorum.txt", b"The harbour board's quorum is twelve members.", 1)
        took = time.monotonic() - started
        assert reindex.is_alive()  # still fetching when the upload was done
        reindex.join()
    assert took < 3, f"the upload waited {took:.1f} s for a page being fetched"
    assert engine.ask("What is the harbour board's quorum?", guild_id=7).found
    [(url, outcome)] = reports[0][0].fetched
    assert outcome == f"{url} did not answer completely within 4 s."


def test_each_server_is_held_to_its_quotas(make_engine) -> None:
    engine = make_engine(max_documents_per_server=2, max_bytes_per_server=1_000)
    engine.add_document(7, "a.txt", b"The allotment society meets on Mondays.", 1)
    engine.add_document(7, "b.txt", b"The library society meets on Tuesdays.", 1)
    docs = engine.settings.state_dir / "guilds" / "7" / "docs"
    with pytest.raises(DocumentError, match=r"^This server already has 2 documents, the most"):
        engine.add_document(7, "c.txt", b"The harbour society meets on Fridays.", 1)
    engine.add_document(8, "c.txt", b"The harbour society meets on Fridays.", 1)  # not 7's quota
    engine.remove_document(7, "uploads/b.txt")
    with pytest.raises(DocumentError, match=r"would pass its limit of 1,000 bytes"):
        engine.add_document(7, "big.txt", b"The choir sings on Sundays. " * 40, 1)
    assert sorted(p.name for p in docs.iterdir()) == ["a.txt"]
    assert sorted(engine.indexes["7"].infos) == ["uploads/a.txt"]


def test_the_listing_says_how_many_days_ago_a_page_was_fetched(make_engine, tmp_path) -> None:
    """README: `/docs list` shows "fetched N days ago" and the date the page gives (its rows
    are Engine.listing's); a re-fetch the server answers with 304 makes it today's again."""
    engine = make_engine(fetch_allow_loopback=True)
    with WebServer() as web:
        url = web.url("/fixture/tricky-statement")
        _, doc = engine.add_url(7, url, 1)
        body = tmp_path / "state" / "guilds" / "7" / "docs" / doc.doc_id.removeprefix("uploads/")
        fetched = read_meta(body)
        earlier = datetime.fromisoformat(fetched.fetched_at) - timedelta(days=3, hours=1)
        at = earlier.isoformat(timespec="seconds")
        write_meta(body, dataclasses.replace(fetched, fetched_at=at))  # as three days ago
        notes = {info.doc_id: note for info, note in engine.listing(7)}
        assert notes == {
            "statement.txt": "",  # a file, not a page
            doc.doc_id: f"from <{url}>, fetched 3 days ago, dated 2024-03-14",
        }
        (_, report) = engine.reindex(7)
        assert report.fetched == ((doc.doc_id, "unchanged"),)  # 304 Not Modified
        assert web.requests[-1][1].get("If-None-Match")  # asked conditionally
    notes = {info.doc_id: note for info, note in engine.listing(7)}
    assert notes[doc.doc_id] == f"from <{url}>, fetched today, dated 2024-03-14"


def test_a_reindex_tells_of_pages_whose_text_came_out_thin(make_engine, tmp_path) -> None:
    """README: a re-index flags a page it fetched with little text, as adding one does (for the
    shared pages and a server's); a page read whole, or not changed since, is not flagged."""
    engine = make_engine(fetch_allow_loopback=True)
    with WebServer() as web:
        teaser = fixture("script-drawn-article").replace(b'"articleBody"', b'"description"')
        web.routes["/teaser"] = Reply(200, teaser)  # its article only drawn by scripts
        url, whole = web.url("/teaser"), web.url("/fixture/script-drawn-article")
        (tmp_path / "data" / "sources.txt").write_text(f"{url}\n{whole}\n", encoding="utf-8")
        _, doc = engine.add_url(7, url, 1)
        note = (
            "only 306 characters of text found on it; the page may need a browser (its text may "
            "be drawn by scripts), so few answers can come from it."
        )
        shared, own = engine.reindex(7)
        assert [o for _, o in shared.fetched] == ["added", "added"]
        assert shared.warnings == (("web/127-0-0-1-teaser.html", note),)
        assert own.fetched == ((doc.doc_id, "unchanged"),) and own.warnings == ()
        web.routes["/teaser"] = Reply(200, teaser + b"<!-- changed -->")  # still thin
        shared, own = engine.reindex(7)
        assert own.fetched == ((doc.doc_id, "changed"),) and own.warnings == ((doc.doc_id, note),)
