"""Shared fixtures: the real bundled models (embedder and reader), loaded once per session."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from bot.config import Settings
from bot.engine import Engine
from index.embedder import Embedder
from index.reader import SHIPPED, Reader

ROOT = Path(__file__).resolve().parent.parent
STATEMENT = ROOT / "data" / "statement.txt"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="session")
def reader(embedder: Embedder) -> Reader:
    return Reader(SHIPPED, embedder.worker)


@pytest.fixture
def make_engine(tmp_path: Path, embedder: Embedder, reader: Reader):
    """A factory of engines over a fresh copy of the shipped data, in tmp_path."""

    def make(**overrides: object) -> Engine:
        data = tmp_path / "data"
        if not data.exists():
            shutil.copytree(ROOT / "data", data)
        settings = Settings(data_dir=data, state_dir=tmp_path / "state", **overrides)
        engine = Engine(settings, embedder, reader=reader if settings.reader != "none" else None)
        engine.open()
        return engine

    return make


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Engine:
    """One engine over the shipped statement (READER=none, the default), shared by read-only
    tests."""
    state = tmp_path_factory.mktemp("state")
    engine = Engine(Settings(data_dir=ROOT / "data", state_dir=state), embedder)
    engine.open()
    return engine


@pytest.fixture
def no_errors_logged(caplog: pytest.LogCaptureFixture):
    """No test may end with a traceback or error in the logs (discord.py's, asyncio's, ours);
    use it with `pytest.mark.usefixtures`."""
    caplog.set_level(logging.INFO)
    yield
    # caplog.records would be the teardown's alone: each phase keeps its own
    logged = [r for when in ("setup", "call", "teardown") for r in caplog.get_records(when)]
    errors = [r for r in logged if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]
