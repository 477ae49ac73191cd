"""The reader side of the engine: search and answers over the shared corpus and a server's own
documents (bot/engine/corpus.py and corpus_web.py keep those indexes and write them).

Model and FAISS work runs on the embedder's one worker thread (index/worker.py); `answer`
awaits it there, so an event loop calling it never blocks.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

from bot.config import Settings
from bot.engine.answers import Answer
from bot.engine.db import Database
from bot.engine.extractive import (
    THRESHOLD,
    Ranking,
    bm25_idf,
    by_reader,
    by_similarity,
    clean_question,
    compose,
)
from bot.engine.generated import Generator, OnText, Stats
from bot.engine.knowledge import DOC_ID as KNOWN_DOC
from bot.engine.knowledge import Knowledge
from index.embedder import Embedder
from index.errors import Error
from index.indexer import Progress
from index.reader import Reader, load_reader
from index.records import Document, Hit
from index.search import search
from index.store import DocInfo, Index
from index.web import sources
from index.web.fragments import quote_url


class Engine(Knowledge):
    """The indexes of the shared corpus and each server's documents, and answers from them."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        db: Database | None = None,
        reader: Reader | None = None,
    ) -> None:
        super().__init__(settings, embedder, db)
        self.reader = reader
        self.generator = Generator(settings, embedder) if settings.llm_base_url else None

    def _scope(self, guild_id: int | None) -> list[Index]:
        """The indexes a server's questions may draw on: shared ones and its own uploads."""
        if self.shared is None:
            raise Error("The index is not loaded yet.")
        indexes = [self.shared]
        if guild_id is not None and (own := self.guilds.get(guild_id)) is not None:
            indexes.append(own)
        return indexes

    def search(
        self, query: str, guild_id: int | None = None, k: int | None = None, mode: str | None = None
    ) -> list[Hit]:
        """The best passages for a query, from the shared corpus and this server's uploads."""
        k, mode = k or self.settings.top_k, mode or self.settings.search_mode
        return self.worker.call(self._search, query, guild_id, k, mode)

    def _search(self, query: str, guild_id: int | None, k: int, mode: str) -> list[Hit]:
        qvec = self.embedder.encode([query])[0]
        return search(self._scope(guild_id), query, qvec, k, mode)

    @property
    def threshold(self) -> float:
        """Below this score answers are refused: the setting, else the reader's calibration."""
        if self.settings.answer_threshold is not None:
            return self.settings.answer_threshold
        return self.reader.card.threshold if self.reader else THRESHOLD

    def retrieve(
        self, question: str, guild_id: int | None = None, context: str | None = None
    ) -> tuple[str, list[Hit], Answer]:
        """The cleaned question, its passages, and the extractive answer from them."""
        question, hits, ranking = self.ranking(question, guild_id, context)
        answer = self.or_known(question, guild_id, compose(question, ranking, self.threshold))
        return question, hits, self.linked(answer, guild_id)

    def ranking(
        self, question: str, guild_id: int | None = None, context: str | None = None
    ) -> tuple[str, list[Hit], Ranking]:
        """The cleaned question, its passages, and the sentences that may answer it, ranked."""
        question = clean_question(question, self.settings.max_question_chars)
        query = f"{context} {question}" if context else question
        return self.worker.call(self._rank, question, query, guild_id)

    def _rank(self, question: str, query: str, guild_id: int | None):
        # Moderators' answers are quoted whole when a question matches one (or_known), never
        # sentence by sentence.
        hits = [h for h in self.search(query, guild_id) if h.chunk.doc_id != KNOWN_DOC]
        if self.reader is None:
            ranking = by_similarity(question, hits, self.threshold, self.idf(guild_id))
            return question, hits, ranking
        read = functools.partial(self.reader.probabilities, question)
        return question, hits, by_reader(hits, read, self.reader.card.weights)

    def ask(self, question: str, guild_id: int | None = None, context: str | None = None) -> Answer:
        """An extractive, cited answer; `context` is the previous question of a conversation."""
        return self.retrieve(question, guild_id, context)[2]

    def linked(self, answer: Answer, guild_id: int | None = None) -> Answer:
        """`answer` with each citation of a web page linked to the quoted passage."""
        docs = self._docs_in(guild_id)
        citations = tuple(
            dataclasses.replace(c, url=quote_url(doc, c.start, c.end))
            if (doc := docs.get(c.chunk.doc_id)) is not None and doc.url
            else c
            for c in answer.citations
        )
        return dataclasses.replace(answer, citations=citations)

    def _docs_in(self, guild_id: int | None) -> dict[str, Document]:
        return {d: doc for ix in self._scope(guild_id) for d, doc in ix.docs.items()}

    async def answer(
        self,
        question: str,
        guild_id: int | None = None,
        context: str | None = None,
        on_text: OnText | None = None,
    ) -> tuple[Answer, Stats | None]:
        """A verified generated answer when a model is configured, else the extractive one.

        Model and FAISS work runs on the worker thread, so an event loop calling this never blocks.
        """
        question, hits, extractive = await self.worker.run(
            self.retrieve, question, guild_id, context
        )
        if self.generator is None or extractive.entry is not None:
            return extractive, None
        docs = await self.worker.run(self._docs_in, guild_id)  # may load the server's index
        answer, stats = await self.generator.answer(
            question, hits, extractive, on_text, {d: doc.text for d, doc in docs.items()}
        )
        return await self.worker.run(self.linked, answer, guild_id), stats

    def idf(self, guild_id: int | None = None) -> Callable[[str], float]:
        """BM25 inverse document frequency of a term over what this server can see."""
        indexes = self._scope(guild_id)
        n = sum(len(ix) for ix in indexes)
        return lambda term: bm25_idf(sum(ix.lexical.document_frequency(term) for ix in indexes), n)

    def documents(self, guild_id: int | None = None) -> list[DocInfo]:
        """The documents answers can draw on here: shared ones, then this server's own."""
        return [info for ix in self._scope(guild_id) for info in ix.infos.values()]

    def listing(self, guild_id: int | None = None) -> list[tuple[DocInfo, str]]:
        """Each document with, for a web page, where and when it was fetched (reads the disk)."""
        docs = self._docs_in(guild_id)
        return [
            (
                info,
                self.entry_note(guild_id, info)
                or sources.freshness(docs.get(info.doc_id), sources.meta_of(Path(info.source))),
            )
            for info in self.documents(guild_id)
        ]


def start(settings: Settings, progress: Progress | None = None, load: bool = True) -> Engine:
    """The embedding model, the reader and (with `load`) every index, loaded once at start-up."""
    embedder = Embedder(settings.model)
    engine = Engine(settings, embedder, reader=load_reader(settings.reader, embedder.worker))
    if load:
        engine.open(progress)
    return engine
