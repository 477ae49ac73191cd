"""`statement-bot`: search, ask, index, eval, insights, feedback and run, from one engine."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bot.config import Settings
from index.errors import Error

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.load(
            data_dir=getattr(args, "data", None), state_dir=getattr(args, "state", None)
        )
        level = settings.log_level or ("INFO" if args.run is _run else "WARNING")
        logging.basicConfig(
            level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        for noisy in ("discord.http", "bm25s", "faiss.loader", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        return args.run(args, settings) or 0
    except Error as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader (e.g. `| head`) stopped early: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's copy of these options must not reset a value given before it.
    common.add_argument(
        "--data",
        type=Path,
        default=argparse.SUPPRESS,
        help="documents folder (env DATA_DIR; default data)",
    )
    common.add_argument(
        "--state",
        type=Path,
        default=argparse.SUPPRESS,
        help="index and database folder (env STATE_DIR; default state)",
    )
    parser = argparse.ArgumentParser(prog="statement-bot", description=__doc__, parents=[common])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("search", parents=[common], help="print the best passages for a query")
    p.add_argument("query", nargs="?")
    p.add_argument("--k", type=int, default=5, help="passages to show (default 5)")
    p.add_argument("--mode", choices=("hybrid", "dense", "lexical"), help="retrieval mode")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--queries", type=Path, help='JSONL of {"id", "text"}: one JSON line each')
    p.set_defaults(run=_search)

    p = sub.add_parser("ask", parents=[common], help="answer a question with cited quotes")
    p.add_argument("question", nargs="?")
    p.add_argument("--json", action="store_true", help="print the JSON contract")
    p.add_argument("--questions", type=Path, help='JSONL of {"id", "text"}: one answer each')
    p.set_defaults(run=_ask)

    p = sub.add_parser("add", parents=[common], help="add a web page to the shared documents")
    p.add_argument("url", help="the page's link (http or https); kept in DATA/sources.txt")
    p.add_argument("--title", help="title to show instead of the page's own")
    p.set_defaults(run=_add)

    p = sub.add_parser("index", parents=[common], help="(re)index the data folder incrementally")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything from scratch")
    p.set_defaults(run=_index)

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

    p = sub.add_parser("run", parents=[common], help="start the Discord bot")
    p.add_argument(
        "--check", action="store_true", help="check settings, token format and index, then exit"
    )
    p.set_defaults(run=_run)
    return parser


class _Bar:
    """A progress bar on stderr that appears only once there is something to embed."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None or self.bar.total != total:
            self.close()
            self.bar = tqdm(total=total, desc="embedding chunks", unit="chunk", file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _engine(settings: Settings, load: bool = True):
    """The models, and every index loaded (the shared one built on first use)."""
    from bot.engine import start

    bar = _Bar()
    engine = start(settings, bar, load)
    bar.close()
    return engine


def _lines(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    yield {"id": row["id"], "text": str(row["text"])}
                except (ValueError, KeyError, TypeError) as err:
                    raise Error(f'{path}:{number} is not a {{"id", "text"}} JSON line.') from err


def _where(chunk, start: int, end: int) -> str:
    """Where a passage is, for people: document, paragraph or page, character offsets."""
    return f"{chunk.doc_id} {chunk.location} (chars {start}–{end})"


def _hit_json(hit) -> dict:
    c = hit.chunk
    return {
        "doc_id": c.doc_id,
        "title": c.title,
        "location": c.location,
        "text": c.text,
        "start": c.start,
        "end": c.end,
        "score": round(hit.score, 6),
        "cosine": None if hit.dense_score is None else round(hit.dense_score, 6),
        "dense_rank": hit.dense_rank,
        "lexical_rank": hit.lexical_rank,
    }


def _search(args, settings: Settings) -> int:
    if not args.query and not args.queries:
        raise Error("Give a query, or --queries FILE.jsonl.")
    engine = _engine(settings)
    if args.queries:
        for row in _lines(args.queries):
            hits = engine.search(row["text"], k=args.k, mode=args.mode)
            row = {"id": row["id"], "hits": [_hit_json(h) for h in hits]}
            print(json.dumps(row, ensure_ascii=False))
        return 0
    hits = engine.search(args.query, k=args.k, mode=args.mode)
    if args.json:
        print(json.dumps([_hit_json(h) for h in hits], ensure_ascii=False, indent=1))
        return 0
    for n, h in enumerate(hits, 1):
        c = h.chunk
        print(f"{n}. {_found(h)}\n   {c.title} — {_where(c, c.start, c.end)}\n   {c.text}\n")
    return 0


def _found(hit) -> str:
    """A hit's figures for people: the passage's cosine and which retrievers ranked it where
    (the fused reciprocal-rank score only orders the list; `--json` has it)."""
    ranks = (("dense", hit.dense_rank), ("BM25", hit.lexical_rank))
    found = " and ".join(f"{name} #{r}" for name, r in ranks if r is not None)
    cosine = "" if hit.dense_score is None else f"cosine {hit.dense_score:.2f} · "
    return f"{cosine}found by {found}"


def _ask(args, settings: Settings) -> int:
    if not args.question and not args.questions:
        raise Error("Give a question, or --questions FILE.jsonl.")
    engine = _engine(settings)
    if args.questions:
        asyncio.run(_ask_all(engine, args.questions))
        return 0
    answer, _ = asyncio.run(engine.answer(args.question))
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=1))
        return 0
    print(answer.text)
    for c in answer.citations:  # a quote the answer already shows is not printed again
        print(f"\n[{c.n}] {c.chunk.title} — {_where(c.chunk, c.start, c.end)}")
        if c.quote not in answer.text:
            print(f"    > {c.quote}")
        if c.url:
            print(f"    {c.url}")
    return 0 if answer.found else 1


async def _ask_all(engine, path: Path) -> None:
    """Answer a JSONL file of questions in order, in one event loop."""
    for row in _lines(path):
        try:
            answer, _ = await engine.answer(row["text"])
            out = {"id": row["id"], **answer.to_dict()}
        except Error as err:
            out = {"id": row["id"], "question": row["text"], "error": str(err)}
        print(json.dumps(out, ensure_ascii=False), flush=True)


def _add(args, settings: Settings) -> int:
    from index.web.pages import warning

    report, doc = _engine(settings).add_source(args.url, args.title)
    about = ", ".join(x for x in (doc.author, doc.published and f"dated {doc.published}") if x)
    print(f"added {doc.doc_id}: “{doc.title}”" + (f" ({about})" if about else ""))
    print(f"  from {doc.url}, listed in {settings.data_dir / 'sources.txt'}")
    print(f"  {report.embedded} chunks embedded in {report.seconds:.2f} s")
    if note := warning(doc):
        print(f"  warning: {note}")
    return 0


def _index(args, settings: Settings) -> int:
    from index.web.sources import FETCHED

    started = time.perf_counter()
    engine = _engine(settings, load=False)
    bar = _Bar()
    (report,) = engine.reindex(rebuild=args.rebuild, progress=bar)
    bar.close()
    print(
        f"documents: {report.documents}  chunks: {report.chunks}  "
        f"re-embedded: {report.embedded}  seconds: {report.seconds:.2f} "
        f"(total with model load {time.perf_counter() - started:.1f})"
    )
    for doc_id, reason in report.skipped:
        print(f"skipped {doc_id}: {reason}")
    for doc_id, outcome in report.fetched:
        print(f"{'fetched' if outcome in FETCHED else 'not refreshed'} {doc_id}: {outcome}")
    return 0


def _eval(args, settings: Settings) -> int:
    from bot import evaluate

    if not args.beir and not args.qa:
        raise Error("Give a BEIR folder and/or --qa FILE.")
    if args.beir:
        bar = _Bar()
        results = evaluate.beir(args.beir, settings, progress=bar)
        bar.close()
        print(evaluate.format_beir(results) if not args.json else json.dumps(results, indent=1))
    if args.qa:
        results = evaluate.evaluate(_engine(settings), args.qa, args.split, args.calibrate)
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
        engine = _engine(local)
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


def _run(args, settings: Settings) -> int:
    if args.check:
        from bot.health import check

        print("\n".join(check(settings)))
        return 0
    from bot.app.client import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
