"""The quality commands: measure the answers (eval), train the reader (train-reader), and
see what members asked (insights) and turn their feedback into tests (feedback export)."""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from bot.cli.corpus import Bar, load_engine
from bot.config import Settings
from index.errors import Error


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the eval, insights, feedback and train-reader subcommands."""
    p = sub.add_parser("eval", parents=[common], help="measure retrieval or answer quality")
    p.add_argument("beir", nargs="?", type=Path, help="BEIR folder (corpus, queries, qrels)")
    p.add_argument(
        "--qa",
        type=Path,
        action="append",
        help="question set: the project's JSONL or a SQuAD 2.0 JSON file (repeatable)",
    )
    p.add_argument("--split", default="test", help="split to report: test, calibrate (or all)")
    p.add_argument(
        "--calibrate", action="store_true", help="fit the threshold on the calibrate splits first"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=_eval)

    p = sub.add_parser("insights", parents=[common], help="what members asked, by server")
    p.add_argument("--guild", type=int, help="one server's id (default: every server)")
    p.add_argument("--days", type=int, default=30, help="how many days back (default 30)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--redact", action="store_true", help="show members as 'member n', not ids")
    p.set_defaults(run=_insights)

    p = sub.add_parser("feedback", parents=[common], help="turn members' feedback into tests")
    actions = p.add_subparsers(required=True, metavar="ACTION")
    p = actions.add_parser(
        "export", parents=[common], help="down-voted and unanswered questions as eval --qa rows"
    )
    p.add_argument("--out", type=Path, required=True, help="the JSONL file to write")
    p.add_argument("--guild", type=int, help="one server's id (default: every server)")
    p.add_argument("--days", type=int, help="how many days back (default: all on record)")
    p.set_defaults(run=_export)

    p = sub.add_parser(
        "train-reader", parents=[common], help="train the answer reader, calibrate and measure it"
    )
    p.add_argument("--out", type=Path, help="model folder (default index/reader/weights)")
    p.add_argument(
        "--squad",
        type=Path,
        default=Path("../shared/train/squad2"),
        help="folder of SQuAD 2.0 JSON files (default ../shared/train/squad2)",
    )
    p.add_argument(
        "--qa",
        type=Path,
        default=Path("tests/qa/statement_qa.jsonl"),
        help="the statement's question set, for calibration and figures",
    )
    p.add_argument("--layers", type=int, default=3, help="MiniLM layers kept (default 3 of 6)")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, or cuda where a GPU is lent")
    p.add_argument(
        "--calibrate-only", action="store_true", help="keep the trained model; calibrate, measure"
    )
    p.set_defaults(run=_train_reader)


def _eval(args, settings: Settings) -> int:
    from bot import evaluate

    if not args.beir and not args.qa:
        raise Error("Give a BEIR folder and/or --qa FILE.")
    if args.beir:
        bar = Bar()
        results = evaluate.beir(args.beir, settings, progress=bar)
        bar.close()
        print(evaluate.format_beir(results) if not args.json else json.dumps(results, indent=1))
    if args.qa:
        results = evaluate.evaluate(load_engine(settings), args.qa, args.split, args.calibrate)
        if args.json:
            print(json.dumps(results, indent=1, ensure_ascii=False))
        for name, r in results["sets"].items() if not args.json else ():
            print(evaluate.format_qa(f"{name} ({args.split})", r))
    return 0


def _train_reader(args, settings: Settings) -> int:
    """Train; fit the answer probability and the threshold on the calibrate splits (SQuAD's
    held-out calibrate articles and the statement's); measure the test splits; write the card."""
    import dataclasses

    from bot import evaluate
    from index.reader import SHIPPED, card, read_meta, training

    squad = sorted(args.squad.glob("*.json")) if args.squad.is_dir() else []
    if not squad:
        raise Error(f"No SQuAD 2.0 JSON files in {args.squad}.")
    out = args.out or SHIPPED
    logging.getLogger().setLevel(logging.INFO)
    if args.calibrate_only:
        info = read_meta(out)["training"]
    else:
        info = training.train(
            out,
            squad,
            layers=args.layers,
            epochs=args.epochs,
            lr=args.lr,
            seed=args.seed,
            device=args.device,
        )
        card.write_meta(out, 0.5, info)  # calibrated below
    sets = [args.qa, *(p for p in squad if card.has_held_out(p))]
    with tempfile.TemporaryDirectory() as tmp:
        local = dataclasses.replace(
            settings, reader=str(out), answer_threshold=None, state_dir=Path(tmp)
        )
        engine = load_engine(local)
        calibration = [a for p in sets for a in evaluate.question_set(engine, p, "calibrate")]
        weights = evaluate.fit_weights(calibration)
        engine.reader.card = dataclasses.replace(engine.reader.card, weights=weights)
        results = evaluate.evaluate(engine, sets, "test", calibrate=True)
    card.write_meta(out, results["threshold"], info, results, weights)
    for name, r in results["sets"].items():
        print(evaluate.format_qa(f"{name} (test)", r))
    print(f"weights {weights}; threshold {results['threshold']}; model and card in {out}")
    return 0


def _reports(args, settings: Settings, downvoted: int):
    """Insights for one server or every server on record; the model embeds the questions."""
    from bot.engine.db import Database
    from bot.engine.insights import build
    from index.embedder import Embedder

    if args.days is not None and args.days < 1:
        raise Error("--days must be at least 1.")
    path = settings.state_dir / "bot.sqlite3"
    if not path.is_file():
        raise Error(f"No bot database in {settings.state_dir}: give the bot's --state folder.")
    db = Database(path)
    guilds = [args.guild] if args.guild else db.guilds()
    encode = Embedder(settings.model).encode
    return [build(db, encode, g, args.days, downvoted=downvoted) for g in guilds]


def _insights(args, settings: Settings) -> int:
    from bot.engine.insights import format_text, to_dict

    reports = _reports(args, settings, downvoted=10)
    if args.json:
        print(json.dumps([to_dict(r, args.redact) for r in reports], ensure_ascii=False, indent=1))
    else:
        print("\n\n".join(format_text(r, args.redact) for r in reports) or "No questions yet.")
    return 0


def _export(args, settings: Settings) -> int:
    from bot.engine.insights import regression_rows

    rows = regression_rows(_reports(args, settings, downvoted=10_000))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    print(
        f'wrote {len(rows)} questions to {args.out}: fill in "answerable" (true/false) and, '
        f'for answerable ones, "key_fact" and "gold"; then '
        f"`statement-bot eval --qa {args.out}`"
    )
    return 0
