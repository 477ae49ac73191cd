from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app.render import (
    CONTENT_LIMIT,
    DESCRIPTION_LIMIT,
    fit_answer,
    render_answer,
    render_documents,
    shorten,
)
from bot.engine.answers import Answer, Citation
from index.records import Chunk


def cite(n: int, quote: str, title: str = "Title", doc: str = "d.txt", **kw) -> Citation:
    chunk = Chunk(doc, title, 0, len(quote), quote, f"¶{n}", ((0, len(quote)),))
    return Citation(n, chunk, quote, 0, len(quote), 0.5, **kw)


def answer_with(quotes: list[str], title: str = "Title") -> Answer:
    """An extractive answer as the engine writes one: a lead, then each quote and its marker."""
    citations = tuple(cite(n, q, title) for n, q in enumerate(quotes, 1))
    body = " ".join(f"{c.quote} [{c.n}]" for c in citations)
    return Answer("q", f"According to “{title}”: {body}", citations, True)


def shown(out) -> str:
    return out.content + "\n" + (out.embed.description if out.embed else "")


def test_short_answer_is_stated_once_and_its_source_listed_once():
    quote = "Keir *alone* bears responsibility."
    out = render_answer(answer_with([quote]))
    assert out.content == "According to “Title”: Keir \\*alone\\* bears responsibility. [1]"
    assert out.embed.title == "Sources"
    assert out.embed.description == "**Title**\n[1] ¶1"
    assert shown(out).count("bears responsibility") == 1


def test_sources_list_each_document_once_and_each_citation_once():
    a, b, c = "First point made here.", "Second point made here.", "Other document speaks."
    citations = (cite(1, a), cite(2, b), cite(3, c, "Other", "o.txt"))
    text = f"According to the documents: {a} [1] {b} [2] {c} [3]"
    out = render_answer(Answer("q", text, citations, True))
    assert out.content == text
    assert out.embed.description == "**Title**\n[1] ¶1 · [2] ¶2\n**Other**\n[3] ¶3"


def test_a_citation_with_an_address_links_its_location():
    quote = "The council met on Monday evening."
    url = "https://example.org/minutes (draft)#:~:text=The%20council"
    out = render_answer(Answer("q", f"{quote} [1]", (cite(1, quote, url=url),), True))
    link = "[¶1](https://example.org/minutes%20%28draft%29#:~:text=The%20council)"
    assert out.embed.description == f"**Title**\n[1] {link}"


def test_long_answer_keeps_its_lead_here_and_its_quotes_in_the_embed():
    quotes = [f"{word} " * 400 + "end." for word in ("alpha", "beta", "gamma")]
    out = render_answer(answer_with([q.strip() for q in quotes]))
    assert out.content == "According to “Title”: [1] [2] [3]"
    description = out.embed.description
    assert len(description) <= DESCRIPTION_LIMIT
    for word in ("alpha", "beta", "gamma"):
        assert description.count(f"> {word} {word}") == 1 and word not in out.content
    assert "…" in description  # quotes of 2,000 characters and more had to be shortened
    assert description.count("**Title**") == 1


def test_refusal_has_no_embed():
    out = render_answer(Answer("q", "The indexed documents don't answer that.", (), False))
    assert out.embed is None and out.content == "The indexed documents don't answer that."


def test_refusal_lists_what_might_be_related_once_with_its_quote():
    quote = "Kate Dove, Momentum Chair said: it is a mess."
    text = "The indexed documents don't answer that. These passages might be related: [1]."
    out = render_answer(Answer("q", text, (cite(1, quote),), False))
    assert out.content == text
    assert out.embed.title == "Might be related"
    assert out.embed.description == f"**Title**\n[1] ¶1\n> {quote}"


def test_generated_answer_shows_the_exact_quotes_it_rests_on():
    quote = "Jeremy Corbyn has served Islington North for over 40 years.\nHe ran again."
    text = "Corbyn has been the MP there for more than four decades [1]."
    out = render_answer(Answer("q", text, (cite(1, quote),), True))
    assert out.content == text
    assert out.embed.description.endswith(
        "[1] ¶1\n> Jeremy Corbyn has served Islington North for over 40 years.\n> He ran again."
    )


def test_mentions_are_left_as_text():
    out = render_answer(answer_with(["Hello @everyone and <@&123>"]))
    assert "@everyone" in out.content  # shown, but sent with AllowedMentions.none()


def test_document_list_fits_one_message():
    rows = [(f"uploads/{i}.txt", f"Document {i}", i, "2026-11-29T00:00:00", "") for i in range(200)]
    text = render_documents(rows)
    assert len(text) <= CONTENT_LIMIT and text.endswith("more.")
    assert render_documents([]) == "No documents are indexed yet."


def test_shorten_cuts_at_a_word():
    assert shorten("alpha beta gamma delta", 12) == "alpha beta…"
    assert shorten("short", 12) == "short"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.text(min_size=1, max_size=3000), min_size=1, max_size=6),
    st.text(max_size=300),
    st.booleans(),
)
def test_any_answer_fits_discord_limits(quotes, title, extractive):
    answer = answer_with(quotes, title or "t")
    if not extractive:  # a generated answer: its own words, the quotes only in the sources
        answer = Answer("q", " ".join(f"Claim {n} [{n}]." for n in range(1, len(quotes) + 1)),
                        answer.citations, True)  # fmt: skip
    out = render_answer(answer)
    assert len(out.content) <= CONTENT_LIMIT
    assert len(out.embed.description) <= DESCRIPTION_LIMIT and len(out.embed) <= 6000
    for n in range(1, len(quotes) + 1):
        assert f"[{n}]" in out.content and f"[{n}] ¶{n}" in out.embed.description


def test_fit_answer_is_identity_for_plain_short_text():
    assert fit_answer("Plain text [1]") == "Plain text [1]"
