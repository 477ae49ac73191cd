"""Text-fragment directives: encoding, the spec's matching, and directives that find one passage."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from index.records import Document
from index.web.fetch import Page
from index.web.fragments import (
    Directive,
    directive_for,
    locate,
    misread,
    quote_url,
    resolve,
    text_fragment,
)
from index.web.pages import extract, load_page, visible_text


def test_terms_are_percent_encoded_with_the_syntax_characters() -> None:
    d = Directive("x, y & z – “q”", "end-point", prefix="pre-fix", suffix="a,b")
    assert d.encode() == (
        "text=pre%2Dfix-,x%2C%20y%20%26%20z%20%E2%80%93%20%E2%80%9Cq%E2%80%9D,end%2Dpoint,-a%2Cb"
    )
    assert Directive("tab\tand  spaces").encode() == "text=tab%20and%20spaces"
    assert Directive.parse(d.encode().removeprefix("text=")) == d


def test_terms_match_only_within_one_block() -> None:
    """The spec's example: "The quick" does not match across a block boundary."""
    split = "The\nquick brown fox\njumped over the lazy dog"
    assert resolve(split, Directive("The quick", "lazy dog")) is None
    whole = "The quick brown fox\njumped over the lazy dog"
    assert resolve(whole, Directive("The quick", "lazy dog")) == (0, len(whole))


def test_matches_are_at_word_boundaries_ignoring_case_and_accents() -> None:
    assert resolve("color orange", Directive("range")) is None
    assert resolve("forest ranger", Directive("range")) is None
    assert resolve("a mountain range", Directive("range")) == (11, 16)
    assert resolve("Le CAFÉ est ouvert", Directive("cafe est")) == (3, 11)


def test_prefix_and_suffix_may_sit_in_the_neighbouring_blocks() -> None:
    page = "We will fight\nintro\nWe will fight\nWe will fight\noutro"
    assert resolve(page, Directive("We will fight", prefix="intro")) == (20, 33)
    assert resolve(page, Directive("We will fight", suffix="outro")) == (34, 47)
    assert resolve(page, Directive("We will fight", prefix="nowhere")) is None


def test_a_repeated_passage_gets_the_context_that_makes_it_the_first_match() -> None:
    page = "Homes, not profits.\nTonight we met. Homes, not profits.\nThe end. Homes, not profits."
    assert [i for i in range(len(page)) if page.startswith("Homes", i)] == [0, 36, 65]
    for target in (0, 36, 65):
        d = directive_for(page, target, target + 18)
        assert d is not None and resolve(page, d) == (target, target + 18), (target, d)
    assert directive_for(page, 0, 18) == Directive("Homes, not profits")  # the first needs none
    assert directive_for(page, 36, 54).prefix == "met."


def test_a_long_quote_is_given_by_its_start_and_end() -> None:
    page = "Intro.\n" + " ".join(f"word{i}" for i in range(40)) + "\nOutro."
    start = page.index("word3 ")
    end = page.index("word30") + len("word30")
    d = directive_for(page, start, end)
    assert d == Directive("word3 word4 word5", "word28 word29 word30")
    assert len(d.encode()) < 60


def test_a_quote_across_blocks_has_each_end_in_its_own_block() -> None:
    page = "First block ends here.\nSecond block starts here and goes on."
    start, end = page.index("block ends"), page.index(" and goes")
    d = directive_for(page, start, end)
    assert "\n" not in d.start + (d.end or "") and resolve(page, d) == (start, end)


vocabulary = st.sampled_from(["we", "will", "fight", "homes", "not", "profits,", "now", "—"])
blocks = st.lists(st.lists(vocabulary, min_size=1, max_size=12), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(blocks, st.data())
def test_any_directive_built_resolves_to_its_own_passage(page_blocks, data) -> None:
    """On pages made of a few repeated words, whatever passage is asked for, a directive is
    either found that the matching algorithm maps to exactly that passage, or none at all."""
    page = "\n".join(" ".join(words) for words in page_blocks)
    b = data.draw(st.integers(0, len(page_blocks) - 1))
    words = page_blocks[b]
    i = data.draw(st.integers(0, len(words) - 1))
    j = data.draw(st.integers(i + 1, len(words)))
    offset = sum(len(" ".join(w)) + 1 for w in page_blocks[:b])
    start = offset + len(" ".join(words[:i])) + (1 if i else 0)
    end = offset + len(" ".join(words[:j]))
    d = directive_for(page, start, end)
    assert d is None or resolve(page, d) == (start, end)


def test_locate_tells_repeated_passages_apart_by_their_context() -> None:
    page = (
        "Nav: Homes, not profits.\nWe met tonight. Homes, not profits.\nLater. Homes, not profits."
    )
    quote = "Homes, not profits."
    assert locate(page, quote, before="We met tonight. ") == (41, 60)
    assert locate(page, quote, before="Later. ") == (68, 87)
    assert locate(page, "not on the page") is None


PULL_QUOTE_PAGE = """<html><body>
<nav><a href="/">Home</a> <a href="/news">News</a></nav>
<aside><p>“We will hold the council to account.”</p></aside>
<article><h1>Tenants meet</h1>
<p>Tonight the tenants met in the hall, and more than three hundred came to the meeting.
The secretary said: “We will hold the council to account.” The vote was unanimous.</p>
<p>The next meeting is in March, and everyone is welcome to come along.</p>
</article></body></html>"""


def test_links_are_built_on_the_rendered_page_not_the_extracted_text() -> None:
    """The extracted text drops the pull quote; the browser does not. A fragment made from the
    extracted text alone would highlight the pull quote; one made on the page's rendered text
    highlights the sentence in the article."""
    text = extract(PULL_QUOTE_PAGE)[0]
    page = visible_text(PULL_QUOTE_PAGE)
    quote = "“We will hold the council to account.”"
    assert text.count(quote) == 1 and page.count(quote) == 2
    start = text.index(quote)
    naive = text_fragment(text, quote)
    assert resolve(page, naive) == (page.index(quote), page.index(quote) + len(quote))  # wrong
    doc = Document("d", "Tenants meet", text, "d.html", url="https://example.org/t", page_text=page)
    link = quote_url(doc, start, start + len(quote))
    assert link.startswith("https://example.org/t#:~:text=")
    article = page.index(quote, page.index(quote) + 1)
    assert resolve(page, text_fragment(page, quote, text[:start])) == (
        article,
        article + len(quote),
    )
    assert "said%3A-," in link  # the prefix that skips the pull quote


def test_quote_urls_by_kind_of_document() -> None:
    text = "Page one text.\n\nPage two text."
    pdf = Document("r.pdf", "R", text, "r.pdf", (0, 16), url="https://example.org/r.pdf#x")
    assert quote_url(pdf, 16, 30) == "https://example.org/r.pdf#page=2"
    docx = Document("r.docx", "R", text, "r.docx", url="https://example.org/r.docx")
    assert quote_url(docx, 0, 14) == "https://example.org/r.docx"  # browsers download it
    plain = Document("s.txt", "S", text, "s.txt")
    assert quote_url(plain, 0, 14) is None  # not from the web: no link
    page = "Page one text.\nPage two text."
    web = Document("p.html", "P", text, "p", url="https://example.org/p#top", page_text=page)
    assert quote_url(web, 16, 30) == "https://example.org/p#:~:text=Page%20two%20text."


NO_CHARSET_PAGE = (
    "<html><head><title>Estate</title>{meta}</head><body><article><h1>The riverside estate</h1>"
    "<p>The council’s plan for the estate was drawn up without asking a single tenant.</p>"
    "<p>“We won’t be moved,” said Mara Lindqvist, and the meeting agreed to a ballot in May.</p>"
    "</article></body></html>"
)


def test_a_page_without_a_charset_is_linked_in_ascii_terms_on_the_page_the_browser_shows() -> None:
    """Served with no charset, UTF-8 is shown by browsers as windows-1252 ("councilâ€™s", where
    "council" ends no word); tests/index/web/test_fragments_browser.py opens these in Chromium."""

    def load(meta: str = "", charset: str | None = None) -> Document:
        data = NO_CHARSET_PAGE.format(meta=meta).encode()
        url = "https://example.org/estate"
        return load_page(Page(url, url, data, ".html", charset, None, None, "now"), "e.html")

    assert "council’s plan" in load(charset="utf-8").page_text  # declared: read as declared
    assert "council’s plan" in load('<meta charset="utf-8">').page_text
    doc = load()
    assert "council’s plan" in doc.text and "councilâ€™s plan" in doc.page_text
    assert misread("won’t “") == "wonâ€™t â€œ"
    for sentence, highlighted in [
        (
            "The council’s",
            "The council’s plan for the estate was drawn up without asking a single tenant.",
        ),
        ("“We won’t", "be moved,” said Mara Lindqvist, and the meeting agreed to a ballot in May."),
    ]:  # the second from its first plain-ASCII word
        start = doc.text.index(sentence)
        end = doc.text.index(".", start) + 1
        link = quote_url(doc, start, end)
        directive = Directive.parse(link.split("#:~:text=", 1)[1])
        assert all(t is None or t.isascii() for t in vars(directive).values()), link
        a, b = resolve(doc.page_text, directive)  # as the browser finds it, on what it shows
        assert doc.page_text[a:b] == misread(highlighted), link
