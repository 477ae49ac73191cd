"""Many questions at once while an admin re-indexes: every one acknowledged within 1 s and
answered, none lost or starved (bench/load.py, smaller: the bench prints the figures)."""

from __future__ import annotations

import shutil

from bench.load import ACK_BOUND, QUESTIONS, more_documents, run_load
from bot.config import Settings
from bot.engine import Engine
from tests.conftest import STATEMENT


async def test_questions_during_a_reindex_are_all_acknowledged_and_answered(tmp_path, embedder):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(STATEMENT, data)
    settings = Settings(data_dir=data, state_dir=tmp_path / "state")
    engine = Engine(settings, embedder)
    engine.open()
    engine.ask(QUESTIONS[0])  # the model is warm, as it is in a running bot

    result = await run_load(
        engine,
        settings,
        asks=60,
        concurrency=20,
        before_reindex=lambda: more_documents(data, 12),  # ~240 chunks to embed meanwhile
    )
    print(result.report())

    assert result.violations == []
    assert len(result.asks) >= 60
    assert all(a.acked - a.sent <= ACK_BOUND for a in result.asks)  # also in violations
    assert all(a.messages == 1 and a.content for a in result.asks)
    # The questions really ran alongside the re-index, which then swapped its index in.
    assert sum(a.sent < result.reindex_done for a in result.asks) >= 60
    assert len(engine.documents()) == 13 and "load-1-003.txt" in [
        d.doc_id for d in engine.documents()
    ]


def test_the_load_checks_can_fail():
    """Late, missing, duplicated and starved answers are each reported as broken."""
    from bench.load import Asked, Result

    def result(asks: list[Asked], summary: str = "Indexed 5 documents") -> Result:
        return Result(asks, 2, 1.0, 0.0, 1.0, summary, [], 500.0, 520.0, 0.0, 0.0)

    ok = [Asked(n, n * 0.1, f"t{n}", n * 0.1 + 0.05, n * 0.1 + 0.3, "answer", 1) for n in range(8)]
    assert result(ok).check() == []
    late = ok[:7] + [Asked(7, 0.7, "t7", 1.8, 2.0, "answer", 1)]
    lost = ok[:7] + [Asked(7, 0.7, "t7", 0.75)]
    twice = ok[:7] + [Asked(7, 0.7, "t7", 0.75, 1.0, "answer", 2)]
    starved = [Asked(0, 0.0, "t0", 0.05, 9.0, "answer", 1)] + ok[1:]
    for broken, words in (
        (late, "acknowledged"),
        (lost, "never answered"),
        (twice, "duplicated"),
        (starved, "overtaken"),
    ):
        assert any(words in v for v in result(broken).check()), words
    assert any("re-index" in v for v in result(ok, "(no final message)").check())
