import json
import math

import numpy as np
import pytest

from bot.config import Settings
from bot.engine.extractive import Candidate, Ranking
from bot.evaluate import (
    Asked,
    beir,
    fit_weights,
    metrics,
    question_set,
    report,
    threshold_for,
)
from index.records import Chunk


def test_metrics_by_hand():
    m = metrics(["x", "a", "y", "b"], {"a": 1, "b": 1, "c": 1})
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@10"] == pytest.approx(dcg / idcg)
    assert m["recall@10"] == pytest.approx(2 / 3)
    assert m["mrr@10"] == pytest.approx(1 / 2)
    assert metrics(["z"], {"a": 1}) == {"ndcg@10": 0, "recall@10": 0, "recall@100": 0, "mrr@10": 0}


def test_tiny_beir_fixture_with_known_answers(tmp_path, embedder):
    folder = tmp_path / "tiny"
    (folder / "qrels").mkdir(parents=True)
    docs = {
        "d1": ("Volcanoes", "Magma rises through the crust and erupts as lava from volcanoes."),
        "d2": ("Bees", "Honey bees pollinate flowers and produce honey in their hives."),
        "d3": ("Tides", "The moon's gravity pulls the oceans, causing the tides twice a day."),
        "d4": ("Chess", "A chess game ends when a king is checkmated."),
    }
    with open(folder / "corpus.jsonl", "w") as f:
        for i, (title, text) in docs.items():
            f.write(json.dumps({"_id": i, "title": title, "text": text}) + "\n")
    queries = {
        "q1": "What causes ocean tides?",
        "q2": "Which insects make honey?",
        "q3": "How does lava come out of a volcano?",
    }
    with open(folder / "queries.jsonl", "w") as f:
        for i, text in queries.items():
            f.write(json.dumps({"_id": i, "text": text}) + "\n")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td3\t1\nq2\td2\t1\nq3\td1\t1\n"
    )
    results = beir(folder, Settings(state_dir=tmp_path / "state"), embedder)
    assert results["queries"] == 3 and results["chunks"] == 4
    for mode in ("dense", "lexical", "hybrid"):
        assert results["modes"][mode]["mrr@10"] == 1.0, mode
        assert results["modes"][mode]["recall@100"] == 1.0


ARTICLES = {
    "Volcano": [
        "Mount Alda is a volcano in Norland. It last erupted in 1912, burying the village of Hesk.",
        "The volcano is 2,310 metres high. Its crater holds a green lake.",
    ],
    "Bees": [
        "Honey bees live in hives of up to 60,000 workers. The queen lays the eggs.",
        "Beekeepers harvest honey in late summer. A hive can make 25 kilograms a year.",
    ],
}
QUESTIONS = {
    "Volcano": [("When did Mount Alda last erupt?", "1912"), ("Who climbed Alda first?", None)],
    "Bees": [("Who lays the eggs in a hive?", "The queen"), ("How long does a queen live?", None)],
}


def squad_file(tmp_path):
    data = []
    for title, paragraphs in ARTICLES.items():
        qas = [
            {
                "id": f"{title}{i}",
                "question": q,
                "is_impossible": a is None,
                "answers": []
                if a is None
                else [{"text": a, "answer_start": paragraphs[0].index(a)}],
            }
            for i, (q, a) in enumerate(QUESTIONS[title])
        ]
        ps = [{"context": paragraphs[0], "qas": qas}, {"context": paragraphs[1], "qas": []}]
        data.append({"title": title, "paragraphs": ps})
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({"version": "v2.0", "data": data}))
    return path


def test_squad_articles_are_indexed_in_halves_and_other_questions_are_off_topic(
    tmp_path, make_engine
):
    # The reader scores every sentence it reads, so threshold 0 answers everything (without it,
    # sentences of the wrong answer type are dropped before any threshold).
    engine = make_engine(reader="bundled")
    asked = question_set(engine, squad_file(tmp_path), "all")
    rows = {(a.row["id"], a.row["off_topic"]) for a in asked}
    # Each article's own questions, and the other article's answerable one as off-topic.
    assert rows == {
        ("Volcano0", False),
        ("Volcano1", False),
        ("Bees0", False),
        ("Bees1", False),
        ("Volcano0", True),
        ("Bees0", True),
    }
    own = {a.row["id"]: a for a in asked if not a.row["off_topic"]}
    assert "1912" in own["Volcano0"].ranking.candidates[0].text
    r = report(asked, threshold=0.0)  # answers everything: the answerable ones hold the fact
    assert (r["answerable"], r["unanswerable"], r["off_topic"]) == (2, 2, 2)
    assert r["key_fact"] == 1.0 and r["quotes_exact"] == 1.0
    assert r["refused_off_topic"] == 0.0 and r["false_refusals"] == 0.0
    strict = report(asked, threshold=1.01)  # refuses everything
    assert strict["false_refusals"] == 1.0 and strict["refused_off_topic"] == 1.0


def _asked(score: float, answerable: bool, fact: str = "x", text: str = "x is here ok"):
    c = Chunk("d", "D", 0, len(text), text, "¶1", ((0, len(text)),))
    cand = Candidate(c, 0, len(text), score, (score, 0.5))
    row = {"id": "q", "question": "?", "answerable": answerable, "key_fact": fact}
    return Asked(row, [], Ranking((cand,), (), 0.1))


def test_threshold_keeps_false_refusals_within_the_bound():
    asked = [_asked(s, True) for s in (0.2, 0.5, 0.6, 0.7, 0.8, 0.9, 0.91, 0.92, 0.93, 0.94)]
    asked += [_asked(s, False) for s in (0.1, 0.3, 0.55)]
    t = threshold_for(asked, 0.10)  # one of ten answerable may fall below
    assert 0.3 < t <= 0.5
    assert report(asked, t)["false_refusals"] == 0.1


def test_fitted_weights_follow_the_evidence():
    rng = np.random.default_rng(0)
    asked = []
    for _ in range(400):
        p = float(rng.uniform(0.01, 0.99))
        holds = rng.uniform() < p  # the reader's probability is calibrated: weight ~1, bias ~0
        asked.append(_asked(p, True, fact="x" if holds else "absent"))
    w = fit_weights(asked)
    assert 0.7 < w.reader < 1.4 and abs(w.bias) < 0.8
