from hypothesis import given, settings
from hypothesis import strategies as st

from index.chunking import chunk_document, fold, paragraphs, sentences
from index.records import Document
from tests.conftest import STATEMENT

TEXT = STATEMENT.read_text(encoding="utf-8")


def doc(text: str, pages: tuple[int, ...] = ()) -> Document:
    return Document("d.txt", "Title", text, "d.txt", pages)


def test_every_chunk_and_sentence_is_an_exact_slice():
    chunks = chunk_document(doc(TEXT), size=300, overlap=1)
    assert len(chunks) > 10
    for c in chunks:
        assert c.text == TEXT[c.start : c.end]
        assert c.sentences[0][0] == c.start and c.sentences[-1][1] == c.end
        for a, b in c.sentences:
            assert TEXT[a:b].strip() == TEXT[a:b] and TEXT[a:b]


def test_sentences_split_at_full_stops_and_closing_quotes():
    text = "He said: “It is a mess.” Then he left. Mr. Smith stayed! Did he? Yes."
    got = [text[a:b] for a, b in sentences(text, 0, len(text))]
    assert got == [
        "He said: “It is a mess.”",
        "Then he left.",
        "Mr. Smith stayed!",
        "Did he?",
        "Yes.",
    ]


def test_chunks_respect_paragraphs_and_number_them():
    text = "First paragraph here.\n\nSecond one. It has two sentences.\n \n\nThird."
    chunks = chunk_document(doc(text), size=800)
    assert [c.text for c in chunks] == [
        "First paragraph here.",
        "Second one. It has two sentences.",
        "Third.",
    ]
    assert [c.location for c in chunks] == ["¶1", "¶2", "¶3"]


def test_long_paragraph_overlaps_by_one_sentence():
    text = " ".join(f"Sentence number {i} is here." for i in range(30))
    chunks = chunk_document(doc(text), size=200, overlap=1)
    assert len(chunks) > 3
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.sentences[-1] == b.sentences[0]
        assert len(a.text) <= 200


def test_sentence_without_full_stops_is_split_at_spaces():
    text = "word " * 1000
    chunks = chunk_document(doc(text.strip()), size=300, overlap=0)
    assert all(len(c.text) <= 300 for c in chunks)
    assert "".join(c.text + " " for c in chunks).strip() == text.strip()


def test_pdf_pages_appear_in_locations():
    text = "Page one text.\n\nPage two text."
    chunks = chunk_document(doc(text, pages=(0, 16)))
    assert [c.location for c in chunks] == ["p. 1, ¶1", "p. 2, ¶2"]


def test_fold_keeps_length_and_straightens_quotes():
    assert len(fold(TEXT)) == len(TEXT)
    assert fold("“Starmer’s\u00a0friend” – café") == '"Starmer\'s friend" - café'
    assert fold("ﬁ") == "ﬁ"  # NFKC would make two characters of one: left alone


def test_paragraphs_skip_blank_runs():
    assert paragraphs("\n\n a \n\n\n\n b\n") == [(3, 4), (10, 11)]


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("ab .!?\n“”’\u00a0A1"), max_size=600),
    st.integers(20, 400),
    st.integers(0, 2),
)
def test_offsets_hold_for_any_text(text, size, overlap):
    for c in chunk_document(doc(text), size=size, overlap=overlap):
        assert c.text == text[c.start : c.end] and c.text.strip()
        assert all(c.start <= a < b <= c.end for a, b in c.sentences)


def test_sentences_are_cut_where_a_reader_would():
    # Abbreviations, initials and quotes that the old pattern cut, a heading and a list kept
    # inside one block by trafilatura, and a hard-wrapped line that goes on in lower case.
    cases = [
        ["The U.S. Environmental Protection Agency said emissions fell.", "Others disagreed."],
        ["Mr. J. R. R. Tolkien wrote it in 1937.", "It sold well."],
        ["“Are you coming?” he asked.", "She nodded."],
        ["He was born c. 1950 in St. Albans.", "He moved in Jan. 1970."],
    ]
    for want in cases:
        text = " ".join(want)
        assert [text[a:b] for a, b in sentences(text, 0, len(text))] == want
    text = "Delivery latency\n95% of tasks begin within five seconds.\n- one item\n- another"
    assert [text[a:b] for a, b in sentences(text, 0, len(text))] == [
        "Delivery latency",
        "95% of tasks begin within five seconds.",
        "- one item",
        "- another",
    ]
    text = "Note\nthat length is measured in octets, not in\ncharacters. Next."
    assert [text[a:b] for a, b in sentences(text, 0, len(text))] == [text[:-6], "Next."]


def test_captions_credits_and_teasers_are_not_chunked():
    kept = "Jeremy Corbyn will stand as an independent in Islington North."
    left_out = [
        "Image: Jeremy Corbyn. Source: Author: Richard Townsend, licensed under the Creative "
        "Commons Attribution 3.0 Unported license.",
        "Read more: The best laptops of 2019",
        "Related: Chicago is America's most segregated city",
        "Photograph: Reuters",
        '^ "Top 5 Browsers". StatCounter.',
        "This article originally appeared on The Atlantic.",
        "Heba Habib contributed to this report.",
        "941 comments",
    ]
    text = "\n\n".join([kept, *left_out, "Source code is open to all, and anyone may read it."])
    chunks = chunk_document(doc(text))
    assert [c.text for c in chunks] == [kept, "Source code is open to all, and anyone may read it."]
    assert [c.location for c in chunks] == ["¶1", "¶10"]  # paragraphs keep their numbers
