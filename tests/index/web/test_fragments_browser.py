"""Citation links opened in a real browser: headless Chromium, over the DevTools protocol, must
scroll to and highlight exactly the quoted passage (tests/chromium.py says how it is read).

Each page is fetched from a local server with index.web.fetch, extracted with
index.web.pages, and each link built with index.web.fragments.quote_url: the path a citation
takes. Quotes come from the saved
real-world pages (one each) and from a statement written to be hard: commas, dashes, curly
quotes, no-break spaces, `&`, a pull quote that repeats a sentence, and repeated phrases; and
the same words as a plain-text file wrapped at 60 columns (quotes across line breaks).

`python bench/fragments.py` prints the same check link by link (`--all`: every sentence).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from index.chunking import paragraphs, sentences
from index.records import Document
from index.web.fetch import fetch
from index.web.fragments import CONTEXT_CHARS, _fold, locate, misread, quote_url
from index.web.pages import load_page
from tests.chromium import TARGET_STYLE, Chromium
from tests.web_server import FIXTURES, Reply, WebServer, fixture

TRICKY = "tricky-statement"
PLAIN = "plain-text"  # the same statement's words as a text file, wrapped at 60 columns
PLAIN_TEXT = (
    "Quenville Tenants' Union: statement on the riverside estate\n\n"
    "The council has broken its promise to 412 families, and we\n"
    "will hold it to account. Homes, not profits - that is what\n"
    "we were promised in 2019, and that is what we demand today.\n\n"
    "We will not be moved. We will not be moved by consultants,\n"
    "by press releases or by promises that expire the week after\n"
    "an election. We will not be moved, and we will be heard.\n"
)
REAL = sorted(p.name.removesuffix(".html.gz") for p in FIXTURES.glob("*.html.gz"))
HARD = re.compile(r"[,“”‘’—–&\-]|\d \w")  # "35 per cent": no-break spaces on the page
# Phrases the page repeats (in the header, a pull quote, the text): every occurrence is checked.
REPEATED = (
    "We will not be moved",
    "Homes, not profits",
    "The council has broken its promise to 412 families, and we will hold it to account.",
)


@dataclass(frozen=True)
class Result:
    page: str
    quote: str
    url: str
    highlighted: str
    ok: bool


def quotes(doc: Document, every: bool) -> list[tuple[int, int]]:
    """The passages to check on a page: its sentences (all, or the hard ones / one), and for the
    hard page also whole paragraphs (an answer joins adjacent sentences into one quote)."""
    spans = [s for a, b in paragraphs(doc.text) for s in sentences(doc.text, a, b)]
    if every:
        return spans
    if doc.doc_id == PLAIN:
        return spans
    if doc.doc_id != TRICKY:
        return [max(spans[1:-1] or spans, key=lambda s: s[1] - s[0])]  # the longest, mid-page
    hard = [s for s in spans if HARD.search(doc.text[s[0] : s[1]])]
    whole = [p for p in paragraphs(doc.text) if len(sentences(doc.text, *p)) > 1][:3]
    repeated = [m.span() for p in REPEATED for m in re.finditer(re.escape(p), doc.text)]
    return hard + whole + repeated


def load(web: WebServer, name: str) -> Document:
    path = "/statement.txt" if name == PLAIN else f"/fixture/{name}"
    page = fetch(web.url(path), max_bytes=5_000_000, allow_loopback=True)
    return load_page(page, name)


def exact(doc: Document, start: int, end: int, seen) -> bool:
    """The browser highlighted this passage: the same text, and the same occurrence of it."""
    bare = re.compile(r"\s+")
    quote = bare.sub("", doc.text[start:end])
    if seen.highlighted != quote or not seen.contiguous:
        return False
    where = locate(
        doc.page_text,
        doc.text[start:end],
        doc.text[max(0, start - CONTEXT_CHARS) : start],
        doc.text[end : end + CONTEXT_CHARS],
    )
    earlier_on_page = bare.sub("", doc.page_text[: where[0]])
    return _fold(seen.before()).count(_fold(quote)) == _fold(earlier_on_page).count(_fold(quote))


async def check(every: bool = False) -> list[Result]:
    results = []
    with WebServer(inject=TARGET_STYLE) as web:
        web.routes["/statement.txt"] = Reply(
            200, PLAIN_TEXT.encode(), {"Content-Type": "text/plain; charset=utf-8"}
        )
        async with Chromium() as browser:
            for name in [TRICKY, PLAIN, *REAL]:
                doc = load(web, name)
                for start, end in quotes(doc, every):
                    url = quote_url(doc, start, end)
                    seen = await browser.open(url)
                    ok = bool(seen.marked) and exact(doc, start, end, seen)
                    results.append(Result(name, doc.text[start:end], url, seen.highlighted, ok))
    return results


async def test_citation_links_open_on_the_exact_passage_in_chromium() -> None:
    results = await check()
    assert len(results) >= 20 and sum(r.page == TRICKY for r in results) >= 10
    assert {r.page for r in results} == {TRICKY, PLAIN, *REAL}
    failed = [(r.page, r.quote, r.url, r.highlighted) for r in results if not r.ok]
    assert not failed, failed
    hard = [r.quote for r in results if r.page == TRICKY]
    html = fixture(TRICKY).decode()
    assert "35&nbsp;per&nbsp;cent" in html and "Block\u00a0C for 22\u00a0years" in html
    for case in ("“", "—", "–", "’", ",", "&", "35 per cent", "Block C for 22", *REPEATED):
        assert any(case in q for q in hard), case
    for phrase in REPEATED:  # on the page more than once: the link must skip the others
        assert html.count(phrase) >= 2 and phrase in hard, phrase


# Served with no charset anywhere: the bot reads the UTF-8 bytes as UTF-8, Chromium as
# windows-1252, so it shows "councilâ€™s" and a term holding "council’s" would match nothing.
NO_CHARSET = (
    "<html><head><title>Riverside estate</title>" + TARGET_STYLE + "</head><body><article>"
    "<h1>Riverside estate: the tenants’ answer</h1>"
    "<p>The council’s plan for the riverside estate was drawn up without asking a single "
    "tenant who lives there.</p>"
    "<p>“We won’t be moved,” said Mara Lindqvist, who chairs the tenants’ union, and the "
    "meeting agreed to hold a ballot in May.</p>"
    "<p>Rents for the flats in Block C would rise by a third over five years, the council’s "
    "own figures show.</p></article></body></html>"
)
NO_CHARSET_TEXT = (
    "The council’s plan for the riverside estate was drawn up\n"
    "without asking a single tenant who lives there.\n\n"
    "Rents for the flats in Block C would rise by a third over\n"
    "five years, the council’s own figures show.\n"
)


async def test_links_open_on_the_quote_on_a_page_that_declares_no_charset() -> None:
    opened = []
    with WebServer() as web:
        web.routes["/no-charset"] = Reply(200, NO_CHARSET.encode(), {"Content-Type": "text/html"})
        plain = Reply(200, NO_CHARSET_TEXT.encode(), {"Content-Type": "text/plain"})
        web.routes["/no-charset.txt"] = plain
        async with Chromium() as browser:
            for path in ("/no-charset", "/no-charset.txt"):
                page = fetch(web.url(path), max_bytes=100_000, allow_loopback=True)
                doc = load_page(page, path)
                assert page.charset is None and "council’s plan" in doc.text  # shown as written
                assert "councilâ€™s plan" in doc.page_text  # what Chromium shows
                spans = [s for a, b in paragraphs(doc.text) for s in sentences(doc.text, a, b)]
                for start, end in spans:
                    quote = doc.text[start:end]
                    if "’" not in quote:
                        continue
                    url = quote_url(doc, start, end)
                    assert unquote(url.split("#:~:text=", 1)[1]).isascii(), url  # either way
                    seen = await browser.open(url)
                    # Highlighted: the quote from its first plain-ASCII word to its last.
                    words = misread(quote).split()
                    ascii_words = [i for i, w in enumerate(words) if w.isascii()]
                    wanted = "".join(words[ascii_words[0] : ascii_words[-1] + 1])
                    assert seen.highlighted == wanted and seen.contiguous, (quote, url, seen)
                    opened.append(quote)
    assert len(opened) == 6, opened  # the page's heading and 3 sentences, 2 in the text file
