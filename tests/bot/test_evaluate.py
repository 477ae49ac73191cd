import json
import math

import pytest

from bot.config import Settings
from bot.evaluate import beir, metrics


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
