"""A citation of a web document renders as a link to the quote, whatever the embed's layout."""

from __future__ import annotations

import json

from bot.app.exts.docs import summary
from bot.app.render import render_answer, render_documents
from bot.app.render_admin import render_added_url
from bot.engine.answers import Answer, Citation
from index.indexer import Report
from index.records import Chunk
from index.web.fetch import Page
from index.web.pages import load_page, warning
from tests.web_server import fixture

QUOTE = "Rents for those flats would rise by 35 per cent."


def answer(url: str | None) -> Answer:
    chunk = Chunk("uploads/p.html", "Riverside (statement)", 0, 48, QUOTE, "¶4", ((0, 48),))
    citation = Citation(1, chunk, QUOTE, 0, 48, 0.6, url)
    return Answer("q", f"According to “Riverside (statement)”: {QUOTE} [1]", (citation,), True)


def test_a_web_citation_links_to_the_quote_with_parentheses_encoded() -> None:
    url = "https://example.org/a_(b)#:~:text=Rents%20for%20those,35%20per%20cent."
    embed = json.dumps(render_answer(answer(url)).embed.to_dict(), ensure_ascii=False)
    assert "](https://example.org/a_%28b%29#:~:text=Rents%20for%20those,35%20per%20cent.)" in embed


def test_a_citation_without_url_has_no_link() -> None:
    embed = json.dumps(render_answer(answer(None)).embed.to_dict(), ensure_ascii=False)
    assert "](" not in embed


def test_the_document_list_adds_a_web_pages_note() -> None:
    note = "from <https://example.org/p>, fetched 3 days ago, dated 2024-05-24"
    rows = [("uploads/p.html", "P", 4, "2024-06-01T00:00:00", note), ("a.txt", "A", 1, "x", "")]
    lines = render_documents(rows).splitlines()
    assert lines[0].endswith("4 chunks, indexed 2024-06-01; " + note)
    assert lines[1].endswith("1 chunks, indexed x")


def test_adding_a_page_with_little_text_says_so() -> None:
    """/docs add url: on a page whose article its scripts would draw (no JSON-LD body)."""
    url = "https://courier.example/news/riverside_(vote)"
    html = fixture("script-drawn-article").replace(b'"articleBody"', b'"description"')
    doc = load_page(Page(url, url, html, ".html", None, None, None, "2024-06-01"), "uploads/c.html")
    report = Report(2, 5, 3, (), 0.42, True)
    shown = "<https://courier.example/news/riverside_%28vote%29>"
    assert render_added_url(report, doc).splitlines() == [
        f"Added `uploads/c.html` from {shown}: “Quenville council votes to sell the riverside "
        "estate” (Mara Lindqvist, dated 2024-03-14), 3 chunks indexed in 0.4 s. Ask away!",
        f"⚠️ Only 306 characters of text found on {shown}; the page may need a browser (its "
        "text may be drawn by scripts), so few answers can come from it.",
    ]
    whole = load_page(
        Page(url, url, fixture("script-drawn-article"), ".html", None, None, None, "2024-06-01"),
        "uploads/c.html",
    )
    assert "\n" not in render_added_url(report, whole)


def test_a_reindex_summary_tells_of_pages_whose_text_came_out_thin() -> None:
    """/reindex: a page it fetched with little text is named beside the note."""
    url = "https://courier.example/news/riverside_(vote)"
    html = fixture("script-drawn-article").replace(b'"articleBody"', b'"description"')
    doc = load_page(Page(url, url, html, ".html", None, None, None, "2024-06-01"), "uploads/c.html")
    fetched = (("uploads/c.html", "changed"),)
    report = Report(2, 5, 3, (), 0.42, True, fetched, (("uploads/c.html", warning(doc, "it")),))
    assert summary([report]).splitlines() == [
        "Indexed 2 documents, 5 chunks (3 re-embedded) in 0.4 s.",
        "Web pages: 1 changed.",
        "Warning `uploads/c.html`: only 306 characters of text found on it; the page may need a "
        "browser (its text may be drawn by scripts), so few answers can come from it.",
    ]
