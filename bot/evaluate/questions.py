"""Question sets: the project's JSONL (about the engine's documents, or about saved web pages),
and SQuAD 2.0 articles, each question ranked once through the engine."""

from __future__ import annotations

import gzip
import json
import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from bot.config import Settings
from bot.engine import WEB, Engine
from bot.engine.extractive import Ranking
from bot.engine.insights import slots_filled
from index.chunking import fold
from index.errors import Error
from index.reader.squad import read_squad, split_articles
from index.web import pages

log = logging.getLogger(__name__)

# Two kinds of question set: the project's JSONL (tests/qa/statement_qa.jsonl: questions about
# the indexed documents, each with a key fact and a split), and SQuAD 2.0 JSON files, whose
# articles are indexed as documents here. Every question is ranked once through the engine (the
# bot's own path); answers at any threshold are then composed from those rankings, exactly as
# the engine composes them, so calibrating costs no second pass.


@dataclass(frozen=True)
class Asked:
    """One question put to an engine, and the sentences it ranked for it."""

    row: dict  # question, answerable, key_fact (str or list of str), gold passage, off_topic
    hits: list
    ranking: Ranking


def _contains(haystack: str, needle: str) -> bool:
    return fold(needle).casefold() in fold(haystack).casefold()


def read_qa(path: Path, split: str = "all") -> list[dict]:
    """A JSONL question set's rows of one split (calibrate, test or all; a row without one is
    test), less those whose slots are still empty (as `feedback export` leaves them); an error
    when no row is filled in."""
    try:
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as err:
        raise Error(f"{path} is not a readable question set ({err}).") from err
    filled = [r for r in rows if slots_filled(r)]
    if not filled:
        raise Error(
            f'{path}: no row has its slots filled in yet. Set "answerable" to true or false; '
            f'for answerable questions also "key_fact" (words the answer must contain) and '
            f'"gold" (text of the passage that answers it).'
        )
    if empty := [str(r.get("id", n)) for n, r in enumerate(rows, 1) if not slots_filled(r)]:
        more = f" and {len(empty) - 10} more" if len(empty) > 10 else ""
        shown = ", ".join(empty[:10])
        log.warning("skipping %d rows with empty slots (%s%s)", len(empty), shown, more)
    return [r for r in filled if split in ("all", r.get("split", "test"))]


def ask_all(engine: Engine, rows: list[dict]) -> list[Asked]:
    """Rank every row's question through the engine."""
    return [Asked(row, *engine.ranking(row["question"])[1:]) for row in rows]


def statement_set(engine: Engine, path: Path, split: str) -> list[Asked]:
    """A JSONL question set about the engine's documents, one split of it."""
    return ask_all(engine, read_qa(path, split))


def squad_set(path: Path, split: str, settings: Settings, embedder, reader) -> list[Asked]:
    """SQuAD 2.0 articles of one split (calibrate, test or all), indexed as documents.

    The articles are indexed in two halves. Each half's own questions are asked of it, and so
    are the other half's answerable questions: those are about documents that are not indexed,
    and must be refused (`off_topic`).
    """
    articles = read_squad(path)
    if split != "all":  # held-out articles only
        articles = split_articles(articles)[split] if split in ("calibrate", "test") else []
    if not articles:
        raise Error(f"{path} has no articles of the {split!r} split.")
    halves = articles[0::2], articles[1::2]
    asked: list[Asked] = []
    for indexed, other in (halves, halves[::-1]):
        if not indexed:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            data.mkdir()
            for n, article in enumerate(indexed):
                (data / f"{n:03}.txt").write_text(f"{article.doc.title}\n\n{article.doc.text}\n")
            local = replace(settings, data_dir=data, state_dir=Path(tmp) / "state")
            engine = Engine(local, embedder, reader=reader)
            engine.open()
            rows = [_squad_row(a, q, False) for a in indexed for q in a.questions]
            rows += [_squad_row(a, q, True) for a in other for q in a.questions if q.answer]
            asked += ask_all(engine, rows)
    return asked


def _squad_row(article, q, off_topic: bool) -> dict:
    answer = article.doc.text[q.answer[0] : q.answer[1]] if q.answer else None
    return {
        "id": q.id,
        "question": q.text,
        "answerable": q.answer is not None and not off_topic,
        "key_fact": answer,
        "off_topic": off_topic,
    }


def pages_set(engine: Engine, path: Path, split: str) -> list[Asked]:
    """A JSONL question set about saved web pages (see `open_pages`), one split of it."""
    with tempfile.TemporaryDirectory() as tmp:
        return ask_all(open_pages(engine, path.with_suffix(""), Path(tmp)), page_rows(path, split))


def page_rows(path: Path, split: str) -> list[dict]:
    """A saved-pages question set's rows, each `doc` the id its page is indexed under."""
    return [r | {"doc": f"{WEB}{r['doc']}.html"} for r in read_qa(path, split)]


def open_pages(engine: Engine, folder: Path, tmp: Path) -> Engine:
    """An engine over the saved pages of `folder` (`<doc>.html.gz`, and their URLs in
    `pages.json`) on their own, indexed as the bot indexes links: stored bodies read through
    trafilatura."""
    local = replace(engine.settings, data_dir=tmp / "data", state_dir=tmp / "state")
    local.data_dir.mkdir(parents=True)
    web = local.state_dir / "web"
    web.mkdir(parents=True)
    for name, about in json.loads((folder / "pages.json").read_text(encoding="utf-8")).items():
        body = web / f"{name}.html"
        body.write_bytes(gzip.decompress((folder / f"{name}.html.gz").read_bytes()))
        url = about["url"]
        pages.write_meta(body, pages.WebMeta(url, url, ".html", None, None, None, "", None))
    paged = Engine(local, engine.embedder, reader=engine.reader)
    paged.open()
    return paged


def question_set(engine: Engine, path: Path, split: str) -> list[Asked]:
    """A question set by its file type: SQuAD 2.0 JSON, the project's JSONL about the engine's
    documents, or the project's JSONL about the saved pages in the folder beside it."""
    if path.suffix == ".json":
        return squad_set(path, split, engine.settings, engine.embedder, engine.reader)
    if path.with_suffix("").is_dir():
        return pages_set(engine, path, split)
    return statement_set(engine, path, split)
