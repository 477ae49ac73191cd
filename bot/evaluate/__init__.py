"""Quality measurements: BEIR retrieval metrics, and answer quality on question sets."""

from bot.evaluate.beir import beir, format_beir, load_beir, metrics
from bot.evaluate.quality import (
    MAX_FALSE_REFUSALS,
    _facts,
    evaluate,
    fit_weights,
    format_qa,
    generated,
    report,
    threshold_for,
)
from bot.evaluate.questions import (
    Asked,
    _contains,
    ask_all,
    open_pages,
    page_rows,
    pages_set,
    question_set,
    read_qa,
    squad_set,
    statement_set,
)

__all__ = [
    "MAX_FALSE_REFUSALS",
    "Asked",
    "_contains",
    "_facts",
    "ask_all",
    "beir",
    "evaluate",
    "fit_weights",
    "format_beir",
    "format_qa",
    "generated",
    "load_beir",
    "metrics",
    "open_pages",
    "page_rows",
    "pages_set",
    "question_set",
    "read_qa",
    "report",
    "squad_set",
    "statement_set",
    "threshold_for",
]
