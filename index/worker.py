"""The one thread that runs every model and FAISS query call of a process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Worker:
    """A dedicated thread for model and search work.

    Torch and FAISS keep an OpenMP pool per calling thread: a question answered through
    asyncio.to_thread ran the model in a second pool that contended with the first for two
    cores (a warm ask cost 2x the bare encode, against 1.2x on one thread). Everything that runs
    a model or searches goes through here instead, so one pool does all of it; long jobs such
    as re-indexing submit their batches one at a time, and questions run between them.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="model")
        self._ident = self._pool.submit(threading.get_ident).result()

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn` on the worker thread and wait for it (directly when already there)."""
        if threading.get_ident() == self._ident:
            return fn(*args)
        return self._pool.submit(fn, *args).result()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn` on the worker thread without blocking the event loop."""
        if threading.get_ident() == self._ident:
            return fn(*args)
        return await asyncio.wrap_future(self._pool.submit(fn, *args))
