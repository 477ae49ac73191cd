from hypothesis import given, settings
from hypothesis import strategies as st

from bot.records import Answer, Citation
from bot.render import (
    CONTENT_LIMIT,
    EMBED_TOTAL_LIMIT,
    FIELD_VALUE_LIMIT,
    fit_answer,
    render_answer,
    render_documents,
    shorten,
)
from index.records import Chunk


def answer_with(quotes: list[str], title: str = "Title") -> Answer:
    citations = tuple(
        Citation(n, Chunk("d.txt", title, 0, len(q), q, "¶1", ((0, len(q)),)), q, 0, len(q), 0.5)
        for n, q in enumerate(quotes, 1)
    )
    body = " ".join(f"{q} [{c.n}]" for q, c in zip(quotes, citations, strict=True))
    text = "According to “Title”: " + body
    return Answer("q", text, citations, True)


def test_short_answer_is_kept_whole_and_escaped():
    out = render_answer(answer_with(["Keir *alone* bears responsibility."]))
    assert out.content == "According to “Title”: Keir \\*alone\\* bears responsibility. [1]"
    assert out.embed.fields[0].name == "[1] Title · ¶1"
    assert out.embed.fields[0].value == "> Keir \\*alone\\* bears responsibility."


def test_long_answer_shortens_quotes_but_keeps_every_marker():
    quotes = ["word " * 400, "other " * 500, "third " * 300]
    out = render_answer(answer_with(quotes))
    assert len(out.content) <= CONTENT_LIMIT
    for n in (1, 2, 3):
        assert out.content.count(f"[{n}]") == 1
    assert "…" in out.content
    assert all(len(f.value) <= FIELD_VALUE_LIMIT for f in out.embed.fields)
    assert len(out.embed) <= EMBED_TOTAL_LIMIT


def test_mentions_are_left_as_text():
    out = render_answer(answer_with(["Hello @everyone and <@&123>"]))
    assert "@everyone" in out.content  # shown, but sent with AllowedMentions.none()


def test_refusal_has_no_embed():
    out = render_answer(Answer("q", "The indexed documents don't answer that.", (), False))
    assert out.embed is None and out.content == "The indexed documents don't answer that."


def test_refusal_with_related_passages_titles_them_so():
    related = answer_with(["Kate Dove, Momentum Chair said: it is a mess."])
    text = "The indexed documents don't answer that. These passages might be related: [1]."
    out = render_answer(Answer("q", text, related.citations, False))
    assert out.content == text
    assert out.embed.title == "Might be related" and "Kate Dove" in out.embed.fields[0].value


def test_document_list_fits_one_message():
    rows = [(f"uploads/{i}.txt", f"Document {i}", i, "2026-11-29T00:00:00", "") for i in range(200)]
    text = render_documents(rows)
    assert len(text) <= CONTENT_LIMIT and text.endswith("more.")
    assert render_documents([]) == "No documents are indexed yet."


def test_shorten_cuts_at_a_word():
    assert shorten("alpha beta gamma delta", 12) == "alpha beta…"
    assert shorten("short", 12) == "short"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=3000), min_size=1, max_size=6), st.text(max_size=300))
def test_any_answer_fits_discord_limits(quotes, title):
    out = render_answer(answer_with(quotes, title or "t"))
    assert len(out.content) <= CONTENT_LIMIT
    assert len(out.embed) <= EMBED_TOTAL_LIMIT
    assert all(len(f.name) <= 256 and len(f.value) <= FIELD_VALUE_LIMIT for f in out.embed.fields)
    for n in range(1, len(quotes) + 1):
        assert f"[{n}]" in out.content


def test_fit_answer_is_identity_for_plain_short_text():
    assert fit_answer("Plain text [1]") == "Plain text [1]"
