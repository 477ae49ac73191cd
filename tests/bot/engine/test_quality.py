"""Answer quality on the project's own question set: regression floors under the README figures."""

from bot.evaluate import evaluate
from tests.conftest import ROOT

QA = ROOT / "tests" / "qa" / "statement_qa.jsonl"


def test_quality_on_the_test_split(engine):
    r = evaluate(engine, [QA], "test", calibrate=False)["sets"][str(QA)]
    assert r["answerable"] >= 50 and r["unanswerable"] >= 20
    assert r["quotes_exact"] == 1.0 and r["quotes"] > 30  # never a misquote
    assert r["false_refusals"] <= 0.05
    assert r["key_fact"] >= 0.65
    assert r["refused_unanswerable"] >= 0.30
    assert r["recall@3"] >= 0.80


def test_quality_of_the_shipped_reader_on_the_test_split(make_engine):
    """READER=bundled at its own calibrated threshold (README: 68.4% key fact, 1.8% refused)."""
    engine = make_engine(reader="bundled")
    r = evaluate(engine, [QA], "test", calibrate=False)["sets"][str(QA)]
    assert engine.threshold == engine.reader.card.threshold
    assert r["quotes_exact"] == 1.0 and r["quotes"] > 30
    assert r["false_refusals"] <= 0.05
    assert r["key_fact"] >= 0.60
