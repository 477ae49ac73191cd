import asyncio
import json
import math
import threading

import numpy as np
import pytest

from bot.config import Settings
from bot.engine import Engine
from index.chunking import chunk_document
from index.errors import Error
from index.reader import card, squad, training
from index.reader.model import (
    SHIPPED,
    Reader,
    Weights,
    context,
    load_reader,
    sentence_probabilities,
    token_sentences,
)
from index.records import Document

TEXT = "Ann founded the club in 1990. It meets on Fridays. Bob chairs it."


def chunk(text=TEXT, title="Club"):
    doc = Document("club.txt", title, text, "club.txt")
    return chunk_document(doc)[0]


def test_probabilities_follow_the_span_logits_and_no_answer():
    c = chunk()
    text, prefix = context(c.title, c.text)
    # Tokens: [CLS], two question tokens, the title, then one token per word of the passage.
    words, offsets, seq = [], [(0, 0), (0, 1), (1, 2), (0, 4)], [-1, 0, 0, 1]
    pos = prefix
    for w in c.text.split():
        i = text.index(w, pos)
        offsets.append((i, i + len(w)))
        seq.append(1)
        words.append(w)
        pos = i + len(w)
    offsets, seq = np.array(offsets), np.array(seq)
    sid = token_sentences(seq, offsets, prefix, c)
    assert list(sid[:4]) == [-1, -1, -1, -1]  # [CLS], the question and the title answer nothing
    assert list(sid[4:]) == [0] * 6 + [1] * 4 + [2] * 3

    def probs(peak: int | None) -> np.ndarray:
        start, end = np.full(len(seq), -5.0), np.full(len(seq), -5.0)
        at = 0 if peak is None else 4 + peak
        start[at] = end[at] = 8.0
        return sentence_probabilities(start, end, seq, offsets, prefix, c)

    answer = probs(words.index("1990."))
    assert answer.argmax() == 0 and answer[0] > 0.95 and answer.sum() <= 1
    assert probs(words.index("Bob")).argmax() == 2
    assert probs(None).max() < 0.01  # [CLS] wins: no sentence holds the answer


def test_a_span_across_two_sentences_counts_for_neither():
    c = chunk()
    text, prefix = context(c.title, c.text)
    a, b = text.index("1990."), text.index("It meets")
    offsets = np.array([(0, 0), (a, a + 5), (b, b + 2)])
    seq = np.array([-1, 1, 1])
    start, end = np.array([-9.0, 9.0, -9.0]), np.array([-9.0, -9.0, 9.0])
    p = sentence_probabilities(start, end, seq, offsets, prefix, c)
    assert p.max() < 0.5  # the best span starts in one sentence and ends in the next


def test_shipped_reader_picks_the_answering_sentence(reader):
    c = chunk()
    (probs,) = reader.probabilities("Who chairs the club?", [c])
    assert probs.argmax() == 2 and probs[2] >= reader.card.threshold
    (probs,) = reader.probabilities("when was the club founded", [c])
    assert probs.argmax() == 0


def test_shipped_reader_refuses_what_the_passage_does_not_say(reader):
    (probs,) = reader.probabilities("How many members does the club have?", [chunk()])
    assert probs.max() < reader.card.threshold
    other = chunk("The recipe needs two eggs, flour and a pinch of salt.", "Pancakes")
    probs = reader.probabilities("Who chairs the club?", [chunk(), other])
    assert probs[0].max() > probs[1].max()


def test_reader_settings(embedder, tmp_path):
    assert load_reader("none") is None
    assert load_reader("bundled", embedder.worker).card.threshold > 0
    (tmp_path / "reader.json").write_text("{}")
    with pytest.raises(Error, match="not a reader model folder"):
        load_reader(str(tmp_path))
    with pytest.raises(Error, match="not a reader model folder"):
        load_reader(str(tmp_path / "missing"))


def test_every_model_and_search_call_runs_on_the_one_worker_thread(embedder, reader, tmp_path):
    """Questions from an event loop, the terminal path and a re-index in another thread."""
    seen: set[int] = set()
    hooks = [
        m.register_forward_pre_hook(lambda *_: seen.add(threading.get_ident()))
        for m in (embedder.model, reader.model)
    ]
    data = tmp_path / "data"
    data.mkdir()
    (data / "club.txt").write_text(TEXT)
    engine = Engine(Settings(data_dir=data, state_dir=tmp_path / "state"), embedder, reader=reader)
    try:
        engine.open()
        indexing = threading.Thread(target=engine.reindex, kwargs={"rebuild": True})
        indexing.start()
        answer, _ = asyncio.run(engine.answer("Who chairs the club?"))
        assert engine.ask("Who chairs the club?") == answer and answer.found
        indexing.join()
    finally:
        for h in hooks:
            h.remove()
    assert seen == {embedder.worker.call(threading.get_ident)}


def test_training_writes_a_model_the_bot_loads(tmp_path, embedder):
    """A tiny run of the real training code: one article, one layer, a few steps."""
    paragraphs = [
        {
            "context": TEXT,
            "qas": [
                {
                    "id": "1",
                    "question": "Who chairs the club?",
                    "is_impossible": False,
                    "answers": [{"text": "Bob", "answer_start": TEXT.index("Bob")}],
                },
                {
                    "id": "2",
                    "question": "How big is the club?",
                    "is_impossible": True,
                    "answers": [],
                },
            ],
        }
    ]
    squad = tmp_path / "tiny.json"
    squad.write_text(json.dumps({"data": [{"title": "Club", "paragraphs": paragraphs}]}))
    out = tmp_path / "model"
    info = training.train(
        out, [squad], layers=1, epochs=1, batch_size=2, written=None, embedder=embedder
    )
    assert info["train_questions"] == 2 and info["examples"] >= 2
    card.write_meta(out, 0.3, info)
    trained = Reader(out, embedder.worker)
    assert trained.card.layers == 1 and trained.card.threshold == 0.3
    (probs,) = trained.probabilities("Who chairs the club?", [chunk()])
    assert probs.shape == (3,) and 0 <= probs.min() and probs.sum() <= 1


def test_squad_articles_become_documents_with_exact_answer_offsets():
    articles = squad.read_squad(squad.WRITTEN)
    assert len(articles) >= 20
    raw = json.loads(squad.WRITTEN.read_text())["data"]
    for article, item in zip(articles, raw, strict=True):
        qas = [qa for p in item["paragraphs"] for qa in p["qas"]]
        for q, qa in zip(article.questions, qas, strict=True):
            a, b = q.paragraph
            assert article.doc.text[a:b] == next(
                p["context"].strip() for p in item["paragraphs"] if qa in p["qas"]
            )
            if q.answer:
                assert article.doc.text[q.answer[0] : q.answer[1]] == qa["answers"][0]["text"]
    held_out = set(squad.CALIBRATE + squad.TEST)
    assert not held_out & {a.doc.doc_id for a in squad.split_articles(articles)["train"]}


def test_shipped_model_is_small_and_calibrated():
    meta = json.loads((SHIPPED / "reader.json").read_text())
    assert 0 < meta["threshold"] < 1
    assert (SHIPPED / "model.safetensors").stat().st_size < 50e6
    assert set(meta["held_out"]) and all("false_refusals" in r for r in meta["held_out"].values())


def test_without_a_reader_answers_fall_back_to_similarity(make_engine):
    engine = make_engine(reader="none")
    assert engine.reader is None and engine.threshold == 0.217
    answer = engine.ask("Who called Diane Abbott a trailblazer?")
    assert answer.found and "trailblazer" in answer.citations[0].quote
    assert not engine.ask("What is the recipe for lasagne?").found


def test_answer_probability_holds_with_extreme_fitted_weights():
    """Weights fitted on a few separable calibrate questions can be huge (train-reader on a
    tiny set gave reader 54725, cosine -6805, bias -31000): no overflow, the same sigmoid."""
    extreme = Weights(54725.0, -6804.7, -31000.0)
    assert extreme.probability(0.2, 0.5) == 0.0 and extreme.probability(0.9, 0.5) == 1.0
    mild = Weights(0.3, 7.6, -2.0)
    for p, cosine in ((0.01, 0.1), (0.5, 0.3), (0.99, 0.8)):
        z = 0.3 * math.log(p / (1 - p)) + 7.6 * cosine - 2.0
        assert mild.probability(p, cosine) == pytest.approx(1 / (1 + math.exp(-z)))
