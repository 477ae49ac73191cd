"""A citation of a web document renders as a link to the quote, whatever the embed's layout."""

from __future__ import annotations

import json

from bot.app.render import render_answer, render_documents
from bot.engine.answers import Answer, Citation
from index.records import Chunk

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
