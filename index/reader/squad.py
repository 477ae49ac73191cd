"""SQuAD 2.0 files as documents and questions, and the articles held out of training.

Read by training and by evaluation (`eval --qa`); never by the running bot.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from index.records import Document

# SQuAD 2.0 articles held out by article (a seeded shuffle of the 18 dev articles): the
# threshold is calibrated on CALIBRATE, and figures are reported on TEST, which nothing tunes on.
CALIBRATE = (
    "Huguenot",
    "Intergovernmental_Panel_on_Climate_Change",
    "Jacksonville,_Florida",
    "Pharmacy",
)
TEST = (
    "Computational_complexity_theory",
    "Normans",
    "Private_school",
    "Scottish_Parliament",
    "Yuan_dynasty",
)
WRITTEN = Path(__file__).parent / "data" / "written.json"  # statements written for this


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    answer: tuple[int, int] | None  # document offsets of the first answer; None: unanswerable
    paragraph: tuple[int, int]  # document offsets of its paragraph


@dataclass(frozen=True)
class Article:
    doc: Document
    questions: tuple[Question, ...]


def read_squad(path: Path) -> list[Article]:
    """SQuAD 2.0 JSON as documents (paragraphs joined by blank lines) and their questions."""
    articles = []
    for item in json.loads(path.read_text(encoding="utf-8"))["data"]:
        parts, questions, pos = [], [], 0
        for p in item["paragraphs"]:
            text = p["context"].strip()
            shift = p["context"].index(text)
            for qa in p["qas"]:
                answer = None
                if not qa.get("is_impossible") and qa["answers"]:
                    first = qa["answers"][0]
                    a = pos + first["answer_start"] - shift
                    answer = (a, a + len(first["text"]))
                questions.append(Question(qa["id"], qa["question"], answer, (pos, pos + len(text))))
            parts.append(text)
            pos += len(text) + 2
        title = item["title"]
        doc = Document(title, title.replace("_", " "), "\n\n".join(parts), path.name)
        for q in questions:
            if q.answer:
                assert doc.text[q.answer[0] : q.answer[1]], q.id
        articles.append(Article(doc, tuple(questions)))
    return articles


def split_articles(articles: Iterable[Article]) -> dict[str, list[Article]]:
    """Articles for training, calibrating the threshold, and the held-out test."""
    out: dict[str, list[Article]] = {"train": [], "calibrate": [], "test": []}
    for a in articles:
        title = a.doc.doc_id
        out["calibrate" if title in CALIBRATE else "test" if title in TEST else "train"].append(a)
    return out
