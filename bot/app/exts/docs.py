"""Document management: /docs list|add|remove and /reindex."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.render import code, escape, render_documents, shorten
from bot.app.render_admin import render_added_url
from bot.app.replies import admin_only, reply
from bot.engine import UPLOADS, Engine
from index.errors import DocumentError
from index.indexer import Report
from index.loaders import safe_filename
from index.web.fetch import check_url
from index.web.sources import FETCHED

log = logging.getLogger(__name__)
PROGRESS_EVERY = 1.5  # seconds between progress edits, well inside Discord's rate limits


def summary(reports: list[Report]) -> str:
    docs = sum(r.documents for r in reports)
    chunks = sum(r.chunks for r in reports)
    embedded = sum(r.embedded for r in reports)
    seconds = sum(r.seconds for r in reports)
    lines = [
        f"Indexed {docs} documents, {chunks} chunks ({embedded} re-embedded) in {seconds:.1f} s."
    ]
    lines += [f"Skipped {code(d)}: {escape(reason)}" for r in reports for d, reason in r.skipped]
    fetched = [(d, outcome) for r in reports for d, outcome in r.fetched]
    if fetched:
        counts = Counter(o if o in FETCHED else "failed" for _, o in fetched)
        lines.append("Web pages: " + ", ".join(f"{n} {what}" for what, n in counts.items()) + ".")
        lines += [f"Not refreshed {code(d)}: {escape(o)}" for d, o in fetched if o not in FETCHED]
    lines += [f"Warning {code(d)}: {escape(note)}" for r in reports for d, note in r.warnings]
    return shorten("\n".join(lines), 1900)


def _log_admin(interaction: discord.Interaction, action: str, what: str) -> None:
    who = interaction.user
    log.info("%s (%s) %s %s in guild %s", who, who.id, action, what, interaction.guild_id)


class Admin(commands.Cog):
    """Documents and re-indexing; changes need Manage Server."""

    docs = app_commands.Group(
        name="docs", description="The documents answers draw on", guild_only=True
    )

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @docs.command(name="list")
    async def docs_list(self, interaction: discord.Interaction) -> None:
        """List the documents answers here can quote."""
        docs = await asyncio.to_thread(self.engine.listing, interaction.guild_id)
        rows = [(d.doc_id, d.title, d.chunks, d.indexed_at, note) for d, note in docs]
        await reply(interaction, render_documents(rows))

    @docs.command(name="add")
    @app_commands.describe(
        file="A .txt, .md, .html, .pdf or .docx file",
        url="Or a link to a web page (or a PDF, text or DOCX file on the web)",
        title="Title to show",
    )
    @admin_only
    async def docs_add(
        self,
        interaction: discord.Interaction,
        file: discord.Attachment | None = None,
        url: str | None = None,
        title: str | None = None,
    ) -> None:
        """Add a document (a file or a link) for this server's answers."""
        if (file is None) == (url is None):
            raise DocumentError("Give either a file or a url to add, not both.")
        if url is not None:
            return await self._add_url(interaction, url.strip(), title)
        safe_filename(file.filename)  # refuse a bad name or file type before downloading it
        limit = self.engine.settings.max_upload_bytes
        if file.size > limit:  # refuse before downloading it
            raise DocumentError(f"{file.filename} is {file.size:,} bytes; the limit is {limit:,}.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        data = await file.read()
        _log_admin(interaction, "adds", file.filename)
        report = await asyncio.to_thread(
            self.engine.add_document,
            interaction.guild_id,
            file.filename,
            data,
            interaction.user.id,
            title,
        )
        # report.chunks counts the server's whole index; only the new document was embedded.
        await reply(
            interaction,
            f"Added {code(file.filename)}: {report.embedded} chunks "
            f"indexed in {report.seconds:.1f} s. Ask away!",
        )

    async def _add_url(self, interaction: discord.Interaction, url: str, title: str | None) -> None:
        check_url(url)  # refuse what is not an http(s) link before deferring
        await interaction.response.defer(ephemeral=True, thinking=True)
        _log_admin(interaction, "adds", url)
        report, doc = await asyncio.to_thread(
            self.engine.add_url, interaction.guild_id, url, interaction.user.id, title
        )
        await reply(interaction, render_added_url(report, doc))

    @docs.command(name="remove")
    @app_commands.describe(document="One of this server's documents")
    @admin_only
    async def docs_remove(self, interaction: discord.Interaction, document: str) -> None:
        """Remove one of this server's documents."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        _log_admin(interaction, "removes", document)
        await asyncio.to_thread(self.engine.remove_document, interaction.guild_id, document)
        await reply(interaction, f"Removed {code(document)}.")

    @docs_remove.autocomplete("document")
    async def _documents(self, interaction: discord.Interaction, current: str):
        return [
            app_commands.Choice(name=shorten(f"{d.title} ({d.doc_id})", 100), value=d.doc_id)
            for d in await asyncio.to_thread(self.engine.documents, interaction.guild_id)
            if d.doc_id.startswith(UPLOADS) and current.lower() in (d.doc_id + d.title).lower()
        ][:25]

    @app_commands.command(name="reindex")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @admin_only
    async def reindex(self, interaction: discord.Interaction) -> None:
        """Re-scan the documents and update the index."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        _log_admin(interaction, "re-indexes", "")
        loop = asyncio.get_running_loop()
        edits: list = []

        def progress(done: int, total: int) -> None:  # runs in the worker thread
            if not edits or time.monotonic() - edits[-1][0] >= PROGRESS_EVERY:
                text = f"Re-indexing… {done}/{total} chunks embedded."
                edit = interaction.edit_original_response(content=text)
                edits.append((time.monotonic(), asyncio.run_coroutine_threadsafe(edit, loop)))

        try:
            reports = await asyncio.to_thread(
                self.engine.reindex, interaction.guild_id, False, progress
            )
        finally:  # let progress edits land first, so none overwrites the outcome
            await asyncio.gather(
                *(asyncio.wrap_future(f) for _, f in edits), return_exceptions=True
            )
        await interaction.edit_original_response(content=summary(reports))


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Admin(bot.engine))
