import numpy as np
import pytest

from bot.engine.answers import Answer
from bot.engine.extractive import (
    NOT_FOUND,
    QuestionError,
    by_reader,
    by_similarity,
    clean_question,
    compose,
    fits_type,
)
from index.reader import Weights
from index.records import Chunk, Hit

TEXT = "Alpha is the first. Beta is the second.\n\nGamma is the third."


def chunk(a, b, sents):
    return Chunk("doc.txt", "Doc", a, b, TEXT[a:b], "¶1", tuple(sents))


ONE = chunk(0, 39, [(0, 19), (20, 39)])
TWO = chunk(41, 60, [(41, 60)])


def similar(question, hits, threshold):
    return compose(question, by_similarity(question, hits, threshold), threshold)


def test_adjacent_sentences_merge_into_one_exact_quote():
    hits = [Hit(ONE, 1.0, 0.9, 1, 1, (0.9, 0.88)), Hit(TWO, 0.5, 0.2, 2, None, (0.1,))]
    answer = similar("What are alpha and beta?", hits, threshold=0.3)
    assert answer.found
    assert [c.quote for c in answer.citations] == ["Alpha is the first. Beta is the second."]
    c = answer.citations[0]
    assert TEXT[c.start : c.end] == c.quote and c.n == 1
    assert answer.text == "According to “Doc”: Alpha is the first. Beta is the second. [1]"


def test_sentences_keep_document_order_and_numbering():
    hits = [Hit(TWO, 1.0, 0.9, 1, 1, (0.95,)), Hit(ONE, 0.9, 0.9, 2, 2, (0.9, 0.1))]
    answer = similar("alpha gamma", hits, threshold=0.3)
    assert [c.quote for c in answer.citations] == ["Alpha is the first.", "Gamma is the third."]
    assert answer.text.endswith("Alpha is the first. [1] Gamma is the third. [2]")


def test_an_answer_quotes_the_best_passages_document_only():
    # Another document's sentence matches the question more closely, but its passage ranked
    # second: the answer stays with the best passage's document (it names it more reliably).
    other = Chunk("other.txt", "Other", 0, 19, TEXT[:19], "¶1", ((0, 19),))
    hits = [Hit(TWO, 1.0, 0.6, 1, 1, (0.6,)), Hit(other, 0.9, 0.6, 2, 2, (0.95,))]
    answer = similar("alpha gamma", hits, threshold=0.3)
    assert [(c.chunk.doc_id, c.quote) for c in answer.citations] == [
        ("doc.txt", "Gamma is the third.")
    ]


def test_a_question_asking_for_an_amount_prefers_a_sentence_with_a_number():
    text = "The LGP-30 was a desk computer. This desk computer weighed some 800 pounds."
    passage = Chunk("doc.txt", "Doc", 0, len(text), text, "¶1", ((0, 31), (32, len(text))))
    hits = [Hit(passage, 1.0, 0.6, 1, 1, (0.45, 0.6))]  # the first holds the question's words

    def best(question):
        return by_similarity(question, hits, 0.0).candidates[0].text

    assert best("How heavy was the LGP-30?") == text[32:]  # "30" is the question's own
    assert best("What was the LGP-30?") == text[:31]
    assert best("How often was the LGP-30 used?") == text[:31]  # "every week" answers that


def test_captions_are_never_answers():
    caption = Chunk("doc.txt", "Doc", 0, 12, "Image: Alpha", "¶1", ((0, 12),))
    assert similar("alpha", [Hit(caption, 1.0, 0.9, 1, 1, (0.99,))], threshold=0.1).found is False


def test_a_near_miss_refusal_lists_the_closest_passages_whatever_their_type():
    # "When…" needs a time, which no sentence has; the closest by topic are listed instead.
    hits = [Hit(ONE, 1.0, 0.5, 1, 1, (0.5, 0.6)), Hit(TWO, 0.5, 0.2, 2, None, (0.1,))]
    answer = similar("When was alpha first?", hits, threshold=0.5)
    assert not answer.found
    assert answer.text == f"{NOT_FOUND} These passages might be related: [1], [2]."
    assert [c.quote for c in answer.citations] == ["Alpha is the first.", "Beta is the second."]
    assert all(TEXT[c.start : c.end] == c.quote for c in answer.citations)
    assert similar("When was alpha first?", hits, threshold=0.9).text == NOT_FOUND  # far off


def test_below_threshold_refuses_plainly():
    hits = [Hit(ONE, 1.0, 0.1, 1, None, (0.1, 0.05))]
    answer = similar("Who won the cup?", hits, threshold=0.5)
    assert answer == Answer("Who won the cup?", NOT_FOUND, (), False)
    assert similar("anything", [], threshold=0.0).found is False


@pytest.mark.parametrize(
    "question, message",
    [("", "empty"), ("   \n\t ", "empty"), ("?!… 🙂🙂", "only symbols"), ("x" * 1001, "1,001")],
)
def test_bad_questions_get_specific_errors(question, message):
    with pytest.raises(QuestionError, match=message):
        clean_question(question, 1000)


def test_control_characters_and_markup_stay_plain_text():
    assert clean_question("what\x00about\x1b[31m `@everyone`?\n", 100) == (
        "what about [31m `@everyone`?"
    )


@pytest.mark.parametrize(
    "question, sentence, fits",
    [
        ("How many candidates are there?", "A shortlist of just two candidates.", True),
        ("How many votes did he get?", "He got a lot of support.", False),
        ("When does it meet?", "It meets every second Tuesday.", True),
        ("When does the society meet?", "It meets on Thursdays at the old chapel.", True),
        ("When is the election?", "The election will be divisive.", False),
        ("What happened in 2019?", "In 2017 he did well.", False),
        ("Who is to blame?", "Starmer alone bears responsibility.", True),
        ("When did the NEC vote?", "The NEC passed it last year.", True),
        ("When was it?", "It was on 3rd June 2017.", True),
        ("How many members does it have?", "It has 40,000 members.", True),
        # Numbers that are names are not quantities the answer must repeat.
        ("How much is Emirates' Boeing 787 order worth?", "The order is worth $15.1bn.", True),
        ("How many A380s does Emirates have?", "It has 123 of the planes in its fleet.", True),
        ("What did the 2019 report find?", "The report found emissions fell.", True),
        ("Did sales pass 40,000 in 2019?", "Sales passed 40,000 in 2018.", False),
        # "How many" no longer needs its number right before the counted word.
        ("How many A380s does Emirates have?", "Of its A380s, it flies 123 today.", True),
        # Years before 1500, decades and eras are times too.
        ("When did Kublai move the capital?", "Kublai moved it to Khanbaliq in 1264.", True),
        ("When was neon discovered?", "Neon lights spread in the 1920s.", True),
        ("When was the city founded?", "It was founded around 300 BC.", True),
        ("When was the city founded?", "It was founded by 300 settlers.", False),
    ],
)
def test_answer_type_must_fit_the_question(question, sentence, fits):
    assert fits_type(question, sentence) is fits


def test_reader_probabilities_choose_the_sentences_and_topic_lists_refusals():
    hits = [Hit(ONE, 1.0, 0.9, 1, 1, (0.9, 0.7)), Hit(TWO, 0.5, 0.2, 2, None, (0.2,))]
    ranking = by_reader(hits, lambda _: [np.array([0.05, 0.9]), np.array([0.75])], Weights())
    answer = compose("which is second?", ranking, threshold=0.3)
    assert [c.quote for c in answer.citations] == ["Beta is the second.", "Gamma is the third."]
    assert [c.score for c in answer.citations] == pytest.approx([0.9, 0.75])
    refusal = compose("which is second?", ranking, threshold=0.95)
    assert not refusal.found  # the best probability is under the threshold
    assert [c.quote for c in refusal.citations] == ["Alpha is the first.", "Beta is the second."]
    assert refusal.text == f"{NOT_FOUND} These passages might be related: [1], [2]."
    far = [Hit(ONE, 1.0, 0.1, 1, 1, (0.1, 0.1))]  # nothing on topic: a plain refusal
    assert (
        compose("x", by_reader(far, lambda _: [np.array([0.0, 0.0])], Weights()), 0.3).text
        == NOT_FOUND
    )


def test_the_reader_reads_and_quotes_the_best_passages_document_only():
    other = Chunk("other.txt", "Other", 0, 19, TEXT[:19], "¶1", ((0, 19),))
    hits = [
        Hit(TWO, 1.0, 0.6, 1, 1, (0.6,)),
        Hit(other, 0.9, 0.6, 2, 2, (0.6,)),
        Hit(ONE, 0.8, 0.6, 3, 3, (0.6, 0.6)),
    ]
    read = []

    def reader(chunks):  # the other document's sentence would be its surest answer
        read.append([c.doc_id for c in chunks])
        return [np.full(len(c.sentences), 0.99 if c is other else 0.6) for c in chunks]

    answer = compose("which is third?", by_reader(hits, reader, Weights()), threshold=0.3)
    assert read == [["doc.txt", "doc.txt"]]
    assert answer.found and {c.chunk.doc_id for c in answer.citations} == {"doc.txt"}


def test_a_quote_joined_across_overlapping_chunks_is_a_slice_of_its_chunk():
    text = "Alpha is the first. Beta is the second. Gamma is the third."
    a = Chunk("d.txt", "D", 0, 39, text[0:39], "¶1", ((0, 19), (20, 39)))
    b = Chunk("d.txt", "D", 20, 59, text[20:59], "¶1", ((20, 39), (40, 59)))
    hits = [Hit(a, 1.0, 0.9, 1, 1, (0.1, 0.9)), Hit(b, 0.9, 0.8, 2, 2, (0.5, 0.8))]
    ranking = by_reader(hits, lambda _: [np.array([0.1, 0.9]), np.array([0.5, 0.85])], Weights())
    (c,) = compose("beta and gamma?", ranking, threshold=0.3).citations
    assert c.quote == "Beta is the second. Gamma is the third." == text[c.start : c.end]
    assert c.chunk.text[c.start - c.chunk.start : c.end - c.chunk.start] == c.quote
