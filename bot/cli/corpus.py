"""The corpus commands: search it, ask it, add a web page to it, (re)index it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bot.config import Settings
from index.errors import Error


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the search, ask, add and index subcommands."""
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


class Bar:
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


def load_engine(settings: Settings, load: bool = True):
    """The models, and every index loaded (the shared one built on first use)."""
    from bot.engine import start

    bar = Bar()
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
    engine = load_engine(settings)
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
    (the fused score only orders the list; `--json` has it)."""
    ranks = (("dense", hit.dense_rank), ("BM25", hit.lexical_rank))
    found = " and ".join(f"{name} #{r}" for name, r in ranks if r is not None)
    cosine = "" if hit.dense_score is None else f"cosine {hit.dense_score:.2f} · "
    return f"{cosine}found by {found}"


def _ask(args, settings: Settings) -> int:
    if not args.question and not args.questions:
        raise Error("Give a question, or --questions FILE.jsonl.")
    engine = load_engine(settings)
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

    report, doc = load_engine(settings).add_source(args.url, args.title)
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
    engine = load_engine(settings, load=False)
    bar = Bar()
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
    for doc_id, note in report.warnings:
        print(f"warning {doc_id}: {note}")
    return 0
