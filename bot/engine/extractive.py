"""Extractive answers: the sentences that best answer a question, quoted exactly and cited."""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from bot.engine.answers import Answer, Citation
from index.chunking import fold
from index.errors import Error
from index.lexical import terms
from index.reader import Weights
from index.records import Chunk, Hit

NOT_FOUND = "The indexed documents don't answer that."
MAX_SENTENCES = 3
PASSAGES = 3  # sentences come from the best three passages only
# A sentence's score mixes its own similarity to the question, the share of the question's
# (IDF-weighted) terms it contains, and how well its passage matched. Chosen on the QA set's
# calibration split (see README, "Answer quality").
W_SENTENCE, W_WORDS, W_PASSAGE = 0.55, 0.25, 0.20
MARGIN = 0.15  # further sentences must score within this of the best one
MIN_WORDS = 4  # shorter sentences (captions such as "Image: Jeremy Corbyn.") answer nothing
# Headings ("The Four Golden Signals": short, no closing punctuation) and lead-ins ("President
# Obama also said:") never answer; a list item ("publish the viability assessment;") may.
_LEAD_IN = re.compile(r":[\"'”’)\]]*$")
_CLOSED = re.compile(r"[.!?…;,][\"'”’)\]]*(\s*\[\d+\])*$")
HEADING_WORDS = 8  # an unclosed line shorter than this is a heading
# A refusal lists the closest sentences (at most RELATED) that score within RELATED_BELOW of the
# threshold. On the QA set, on-topic questions the statement doesn't answer score 0.14-0.19 and
# small talk ("what's the capital of Australia?") at most 0.11: only the first get a list.
RELATED, RELATED_BELOW = 2, 0.08
# With the reader, a refusal lists sentences at least this similar to the question (cosine): on
# the calibrate splits, 1.7% of questions about documents not indexed and 77% of the statement's
# unanswerable ones (bench/reader_knobs.py).
RELATED_COSINE = 0.40
READER_MARGIN = 0.2  # further sentences within this of the best (key fact 53.8% at 0, 77.4%)
THRESHOLD = 0.217  # without a reader (eval --calibrate); with one, the reader's own

# Expected answer types (as in classic factoid QA): a "how many" question needs a count, a "when"
# question a time (a year from 1000 to 2099, a decade such as "1950s", or one with an era), and a
# number the question states (not one that is a name) must be there.
_NUM = (
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty"
    r"|forty|fifty|hundred|thousand|million|billion|dozen|once|twice)\b"
)
_DAYS = r"(mon|tues|wednes|thurs|fri|satur|sun)days?"
_MONTHS = r"jan(uary)?|feb(ruary)?|march|april|may|june|july|aug(ust)?|sept?(ember)?|oct(ober)?"
_MONTHS += r"|nov(ember)?|dec(ember)?"


@dataclass(frozen=True)
class Rule:
    """An expected answer type: `fits(question, sentence)` says whether it could answer."""

    name: str
    fits: Callable[[str, str], bool]


def _rule(name: str, asks: str, needs: str) -> Rule:
    """A question that matches `asks` needs a sentence that matches `needs`."""
    q, a = re.compile(asks, re.I), re.compile(needs, re.I)
    return Rule(name, lambda question, sentence: not q.search(question) or bool(a.search(sentence)))


_QUANTITY = re.compile(r"(?<![\w.,-])\d+([.,]\d+)*(?![\w-]|[.,]\d)")
_JOINS = {"in", "on", "at", "of", "to", "and", "or", "by", "for", "from", "than", "per"}


def _quantities(question: str) -> list[str]:
    """The numbers a question states as quantities or dates ("in 2019", "over 40 years" asked
    as "40?"), not those that are names: "Boeing 787", "A380", "Windows 10", "the 2019 report"."""
    out = []
    for m in _QUANTITY.finditer(question):
        before = question[: m.start()].split()
        after = question[m.end() :].split()[:1]
        if len(before) > 1 and before[-1][:1].isupper():
            continue  # Boeing 787, Firefox 70
        if after and after[0].isalpha() and after[0].islower() and after[0] not in _JOINS:
            continue  # the 2019 report
        out.append(m.group(0))
    return out


@functools.lru_cache(maxsize=256)  # asked of every candidate sentence of one question
def _stated(question: str) -> tuple[re.Pattern[str], ...]:
    return tuple(
        re.compile(rf"(?<![\d.,]){re.escape(n)}(?![\d]|[.,]\d)") for n in _quantities(question)
    )


def _same_numbers(question: str, sentence: str) -> bool:
    return all(p.search(sentence) for p in _stated(question))


# Kept: each refused more unanswerable questions than it cost answerable ones on the calibrate
# splits (bench/type_rules.py, which also holds the rules that did not: age, money, frequency,
# duration, and the old "every digit of the question" and "a number before the counted word").
RULES = (
    Rule("numbers", _same_numbers),
    _rule("count", r"\bhow many\b", _NUM),
    _rule(
        "time",
        r"^\W*when\b|\bwhat (year|date|time|day)\b|\bdeadline\b",
        r"\b(1\d|20)\d\d(s|'s)?\b|\b\d{1,4} ?(AD|BC|BCE|CE)\b|\d(st|nd|rd|th)\b|\d[/.:]\d"
        r"|\b\d+ ?[ap]\.?m\b|\b(today|tonight|yesterday|tomorrow|ago|since|until|weekly|monthly"
        r"|annually|daily|every|each|(last|next"
        rf"|this|that|the following) (year|month|week|spring|summer|autumn|winter)|{_MONTHS}"
        rf"|{_DAYS}|(morning|afternoon|evening|night)s?)\b",
    ),
)


# A question asking for an amount ("how long", "how heavy", "what percentage") prefers a sentence
# with a number of its own, not one of the question's words ("LGP-30"): one without scores
# NO_NUMBER less. As hard rules (bench/type_rules.py: duration, money, age) these refused more
# answerable questions than unanswerable ones; as a preference it chose the right sentence more
# often on the calibrate pages, and refused more of their unanswerable ones (bench/answer_knobs.py).
# ("How often" and "how soon" are left out: "every Thursday" and "next week" answer them.)
_AMOUNT = re.compile(
    r"\bhow (much|long|big|large|heavy|far|old|fast|quickly|tall|high|deep|wide|small|short)\b"
    r"|\bwhat (percentage|percent|share|proportion|number|size|price|amount|age)\b"
    r"|\bat what (age|speed|price|rate)\b",
    re.I,
)
_A_NUMBER = re.compile(_NUM, re.I)
NO_NUMBER = 0.15


def _a_number(sentence: str, asked: set[str]) -> bool:
    """Whether a sentence holds a number beyond the question's own words ("LGP-30")."""
    return any(_A_NUMBER.search(w) for w in _words(sentence) if w not in asked)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+(?:[-./,]\w+)*", text.casefold())


class QuestionError(Error):
    """The question cannot be answered as asked (empty, too long, no words)."""


@dataclass(frozen=True)
class Candidate:
    chunk: Chunk
    start: int
    end: int
    score: float
    evidence: tuple[float, ...] = ()  # with a reader: its probability, and the sentence's cosine

    @property
    def text(self) -> str:
        return self.chunk.text[self.start - self.chunk.start : self.end - self.chunk.start]


def clean_question(text: str, max_chars: int) -> str:
    """The question as plain text, or a QuestionError saying what is wrong with it."""
    text = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        raise QuestionError("Please ask a question: the text was empty.")
    if len(text) > max_chars:
        raise QuestionError(
            f"That question is {len(text):,} characters long; please keep it under {max_chars:,}."
        )
    if not any(c.isalnum() for c in text):
        raise QuestionError("Please ask a question in words: that had only symbols or emoji.")
    return text


def fits_type(question: str, sentence: str, rules: tuple[Rule, ...] = RULES) -> bool:
    """Whether a sentence could answer the kind of question asked (counts, times, amounts)."""
    return all(rule.fits(question, sentence) for rule in rules)


def one_document(hits: list[Hit]) -> list[Hit]:
    """The best passages that come from the best one's document: an answer quotes one document,
    and the best passage names it more reliably than the best sentence. On the calibrate splits,
    answers from another page 6.1% -> 3.0%, unanswerable refused 15% -> 31%, right sentences
    unchanged (bench/answer_knobs.py); with the reader, another page 6.1% -> 3.0%, questions
    about SQuAD articles not indexed refused 50.1% -> 53.4%, key facts unchanged or up."""
    return [h for h in hits[:PASSAGES] if h.chunk.doc_id == hits[0].chunk.doc_id]


def scored(
    question: str, hits: list[Hit], idf: Callable[[str], float] | None = None
) -> list[Candidate]:
    """Without a reader: the sentences of `hits` scored by similarity, best first."""
    wanted = set(terms(fold(question)))
    weight = {t: idf(t) if idf else 1.0 for t in wanted}
    total = sum(weight.values())
    asked = set(_words(question)) if _AMOUNT.search(question) else None
    out = []
    for hit in hits:
        chunk, passage = hit.chunk, hit.dense_score or 0.0
        for (a, b), similarity in zip(chunk.sentences, hit.sentence_scores, strict=True):
            text = chunk.text[a - chunk.start : b - chunk.start]
            found = wanted & set(terms(fold(text)))
            words = sum(weight[t] for t in found) / total if total else 0.0
            score = W_SENTENCE * similarity + W_WORDS * words + W_PASSAGE * passage
            if asked is not None and not _a_number(text, asked):
                score -= NO_NUMBER
            out.append(Candidate(chunk, a, b, score))
    return _best(out)


def read(hits: list[Hit], probabilities: list, weights: Weights) -> list[Candidate]:
    """With a reader: sentences of the passages it read, by the probability that each answers,
    best first. The reader's probability and the sentence's cosine to the question are combined
    by the logistic weights calibrated with the reader (`Weights`)."""
    out = []
    for hit, probs in zip(hits, probabilities, strict=True):
        for (a, b), p, cos in zip(hit.chunk.sentences, probs, hit.sentence_scores, strict=True):
            out.append(Candidate(hit.chunk, a, b, weights.probability(p, cos), (float(p), cos)))
    return _best(out)


def by_topic(hits: list[Hit]) -> list[Candidate]:
    """Sentences of `hits` by their similarity to the question alone."""
    out = [
        Candidate(hit.chunk, a, b, s)
        for hit in hits
        for (a, b), s in zip(hit.chunk.sentences, hit.sentence_scores, strict=True)
    ]
    return _best(out)


def _best(found: list[Candidate]) -> list[Candidate]:
    """Best first; headings, lead-ins and very short sentences dropped; a sentence that
    overlapping chunks both hold counted once, at its best score."""
    kept: dict[tuple[str, int], Candidate] = {}
    for c in found:
        key = (c.chunk.doc_id, c.start)
        if _answers(c.text) and (key not in kept or kept[key].score < c.score):
            kept[key] = c
    return sorted(kept.values(), key=lambda c: -c.score)


def _answers(sentence: str) -> bool:
    words = len(sentence.split())
    heading = words < HEADING_WORDS and not _CLOSED.search(sentence)
    return words >= MIN_WORDS and not heading and not _LEAD_IN.search(sentence)


def of_type(
    question: str, ranked: list[Candidate] | tuple[Candidate, ...], rules: tuple[Rule, ...] = RULES
) -> list[Candidate]:
    """The candidates that could answer the kind of question asked."""
    return [c for c in ranked if fits_type(question, c.text, rules)]


def bm25_idf(df: int, n: int) -> float:
    """BM25's inverse document frequency: rare terms weigh more, unseen ones most."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


@dataclass(frozen=True)
class Ranking:
    """The sentences that may answer a question, best first, and those a refusal points at."""

    candidates: tuple[Candidate, ...]
    related: tuple[Candidate, ...]  # the closest by topic, whatever the kind of answer asked
    margin: float  # further sentences must score within this of the best one
    untyped: tuple[Candidate, ...] = ()  # every candidate, before the answer-type rules

    @property
    def best(self) -> float:
        return self.candidates[0].score if self.candidates else 0.0


def by_similarity(
    question: str,
    hits: list[Hit],
    threshold: float,
    idf: Callable[[str], float] | None = None,
) -> Ranking:
    """Without a reader (READER=none): similarity, word overlap and answer types."""
    ranked = scored(question, one_document(hits), idf)
    related = [c for c in ranked[:RELATED] if c.score >= threshold - RELATED_BELOW]
    return Ranking(tuple(of_type(question, ranked)), tuple(related), MARGIN, tuple(ranked))


def by_reader(hits: list[Hit], reader: Callable[[list[Chunk]], list], weights: Weights) -> Ranking:
    """From the reader's probabilities (`reader(chunks)`: one array of sentence probabilities
    per chunk) for the best passages of the best one's document."""
    hits = one_document(hits)
    related = [c for c in by_topic(hits)[:RELATED] if c.score >= RELATED_COSINE]
    ranked = read(hits, reader([h.chunk for h in hits]), weights)
    return Ranking(tuple(ranked), tuple(related), READER_MARGIN)


def compose(question: str, ranking: Ranking, threshold: float) -> Answer:
    """The answer: the best sentence and those within the margin of it (at most three, all of one
    document as the rankings keep them), quoted exactly with citations; or, below `threshold`,
    a plain refusal that may point at the related sentences."""
    ranked = ranking.candidates
    if not ranked or ranking.best < threshold:
        cited = tuple(
            Citation(n, c.chunk, c.text, c.start, c.end, c.score)
            for n, c in enumerate(ranking.related, 1)
        )
        markers = ", ".join(f"[{c.n}]" for c in cited)
        text = f"{NOT_FOUND} These passages might be related: {markers}." if cited else NOT_FOUND
        return Answer(question, text, cited, False)
    floor = max(threshold, ranking.best - ranking.margin)
    chosen = [c for c in ranked if c.score >= floor]
    chosen = sorted(chosen[:MAX_SENTENCES], key=lambda c: c.start)
    citations: list[Citation] = []
    for c in chosen:
        last = citations[-1] if citations else None
        gap = _between(last, c) if last else None
        if last and gap is not None and not gap.strip():
            # Adjacent sentences read better as one quote: extend the previous citation.
            citations[-1] = Citation(
                last.n,
                c.chunk,
                last.quote + gap + c.text,
                last.start,
                c.end,
                max(last.score, c.score),
            )
        else:
            citations.append(Citation(len(citations) + 1, c.chunk, c.text, c.start, c.end, c.score))
    lead = f"According to “{citations[0].chunk.title}”:"
    body = " ".join(f"{c.quote} [{c.n}]" for c in citations)
    return Answer(question, f"{lead} {body}", tuple(citations), True)


def _between(last: Citation, c: Candidate) -> str | None:
    """The document text between a citation and the next sentence, if the sentence's chunk
    holds both (so that the joined quote is a slice of it)."""
    chunk = c.chunk
    if last.chunk.doc_id == chunk.doc_id and chunk.start <= last.start <= last.end <= c.start:
        return chunk.text[last.end - chunk.start : c.start - chunk.start]
    return None
