"""The console script: one real subprocess, the rest in-process with the session's model."""

import json
import os
import subprocess
import sys

import pytest

import bot.engine.answering
from bot.cli import main
from tests.conftest import ROOT, STATEMENT


@pytest.fixture
def cli(tmp_path, embedder, monkeypatch, capsys):
    # the session's model, not a second one: `bot.engine.start` builds its embedder by this name
    monkeypatch.setattr(bot.engine.answering, "Embedder", lambda name="bundled": embedder)
    monkeypatch.chdir(tmp_path)  # no stray state/ or .env from the checkout

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--data", str(ROOT / "data"), "--state", str(tmp_path / "state"), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_quick_start_command_builds_and_searches(tmp_path):
    env = {**os.environ, "STATE_DIR": str(tmp_path / "state"), "DATA_DIR": str(ROOT / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "search", "Why is Corbyn standing as an independent?"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "1. cosine 0." in done.stdout and "statement.txt ¶" in done.stdout
    assert "independent" in done.stdout


def test_search_json_and_batch(cli, tmp_path):
    code, out, _ = cli("search", "Diane Abbott", "--k", "2", "--json")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 2
    text = STATEMENT.read_text(encoding="utf-8")
    assert all(text[h["start"] : h["end"]] == h["text"] for h in hits)

    queries = tmp_path / "q.jsonl"
    queries.write_text(
        "\n".join(
            json.dumps({"id": i, "text": t})
            for i, t in enumerate(["Diane Abbott", "Momentum", "trade union"])
        )
    )
    code, out, _ = cli("search", "--queries", str(queries), "--k", "3")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2]
    assert all(len(r["hits"]) == 3 for r in rows)
    assert set(rows[0]["hits"][0]) >= {"doc_id", "title", "text", "start", "end", "score"}


def test_search_shows_cosine_and_retrievers_not_the_fused_score(cli):
    _, out, _ = cli("search", "Why is Corbyn standing as an independent?", "--json")
    hits = json.loads(out)
    _, out, _ = cli("search", "Why is Corbyn standing as an independent?")
    heads = [line for line in out.splitlines() if line[:1].isdigit()]
    assert len(heads) == len(hits) == 5
    for n, (head, hit) in enumerate(zip(heads, hits, strict=True), 1):
        ranks = [
            f"{name} #{hit[key]}"
            for name, key in (("dense", "dense_rank"), ("BM25", "lexical_rank"))
            if hit[key]
        ]
        assert head == f"{n}. cosine {hit['cosine']:.2f} · found by {' and '.join(ranks)}"
        assert f"{hit['score']:.4f}" not in out and 0 < hit["score"] <= 1  # JSON only
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert any(" and " in head for head in heads)  # found by both retrievers
    _, out, _ = cli("search", "Diane Abbott trailblazer", "--mode", "lexical", "--k", "1")
    assert out.startswith("1. cosine 0.") and "found by BM25 #1\n" in out


def test_ask_json_batch_and_exit_codes(cli, tmp_path):
    code, out, _ = cli("ask", "Who called Diane Abbott a trailblazer?", "--json")
    data = json.loads(out)
    assert code == 0 and data["found"] and "Keir Starmer" in data["answer"]

    code, out, _ = cli("ask", "Who called Diane Abbott a trailblazer?")
    assert code == 0 and out.startswith("According to “Jeremy Corbyn will run")
    title = "Jeremy Corbyn will run as an independent in Islington North"
    assert f"\n[1] {title} — statement.txt ¶5" in out
    assert out.count("‘trailblazer’") == 1  # the quote is the answer: not printed again below

    code, out, _ = cli("ask", "What is the capital of Peru?")
    assert code == 1 and out.strip() == "The indexed documents don't answer that."

    questions = tmp_path / "q.jsonl"
    questions.write_text(
        '{"id": "a", "text": "How long was he an MP?"}\n{"id": "b", "text": "  "}\n'
    )
    code, out, _ = cli("ask", "--questions", str(questions), "--json")
    a, b = (json.loads(line) for line in out.splitlines())
    assert a["id"] == "a" and a["found"] and b["id"] == "b" and "empty" in b["error"]


def test_index_reports_and_skips_nothing_when_unchanged(cli):
    code, out, _ = cli("index")
    assert code == 0 and "documents: 1" in out
    code, out, _ = cli("index")
    assert "re-embedded: 0" in out


def test_errors_are_one_clean_line(cli):
    code, _, err = cli("search")
    assert code == 2 and err.startswith("error: Give a query")
    code, _, err = cli("run")
    assert code == 2 and "DISCORD_TOKEN is not set" in err
