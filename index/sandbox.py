"""Read untrusted documents in a worker process with CPU, memory and time limits.

A file built to exhaust a parser (a 19 KB PDF whose pages share one content stream cost 26 s
of CPU in pypdf; a 5 MB page of links cost trafilatura 13-30 s and 500-755 MiB) must not stall
or starve the bot, so `run(fn, *args, name=...)` calls `fn(*args)` in a separate worker:

- CPU time (RLIMIT_CPU, reset before each call: the kernel kills the worker with SIGXCPU),
  memory (RLIMIT_AS: past it an allocation fails and Python raises MemoryError) and wall-clock
  time (enforced here: the worker is killed) are bounded; see `Limits`.
- The worker is one persistent process, started on first use (0.22 s) and replaced after a
  timeout, a crash, a MemoryError or a limit hit (an ordinary exception leaves it in place).
  Calls are serialised by a lock; in-process extraction held the GIL anyway, so one worker
  runs as much at once as before. A call costs 0.1-0.3 ms more than in-process.
- It is started with subprocess (python -I -c), not multiprocessing: spawn and forkserver both
  re-import the parent's __main__ in the child, which for the `statement-bot` console script is
  bot.cli with torch. The child imports only this module and `_PRELOAD` (index.loaders,
  index.web.pages and their parsers). It blocks reading a pipe between calls and exits on EOF, and
  a watchdog thread ends it within a second of the parent's death even mid-call.
- `DocumentError` raised in the worker comes back with its message; any other exception comes
  back as "<name> could not be read", its traceback logged here.

Measured (Python 3.11, pypdf 7.1, lxml 6.1, trafilatura 2.3): the worker's baseline after its
imports is 60 MB of address space (VSZ) and 50 MB resident, so a 1 GiB RLIMIT_AS leaves it
about 960 MiB; the 5 MB link page peaks near 500 MiB resident. The limits guard against
resource exhaustion only; the worker runs as the same user, so it is no barrier to a parser
exploit that runs code.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import math
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from index.errors import DocumentError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """What one call may use before its document is refused."""

    cpu_s: float = 20  # CPU seconds; 2,000 dense PDF pages (7 M characters) take 4.4 s
    wall_s: float = 30.0  # above cpu_s, so a busy host's slow-but-bounded reads still finish
    memory: int = 1 << 30  # bytes of address space, the worker's ~60 MB baseline included


LIMITS = Limits()  # used by calls that pass no limits; tests replace it
START_TIMEOUT_S = 60.0  # for the worker's imports, on a loaded host
_PRELOAD = ("index.loaders", "index.web.pages", "pypdf", "docx", "bs4", "lxml.html", "trafilatura")
_ROOT = str(Path(__file__).resolve().parent.parent)  # holds the `index` package
_BOOT = "import sys; sys.path.append(sys.argv[1]); from index.sandbox import _serve; _serve()"
_in_worker = False  # True inside the worker: nested calls run directly


class Sandbox:
    """One worker process, started on first use and replaced after any failure; thread-safe."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits  # None: the module's LIMITS at each call
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._requests: Connection | None = None
        self._replies: Connection | None = None

    def run(self, fn: Callable[..., T], *args: Any, name: str) -> T:
        """`fn(*args)` in the worker; `fn` must be importable by name (a module-level function).

        Raises DocumentError naming `name` when the call fails or passes a limit.
        """
        if _in_worker:
            return fn(*args)
        limits = self.limits or LIMITS
        with self._lock:
            try:
                status, value = self._call(fn, args, limits)
            except BaseException:  # interrupted, or a reply that cannot be read: start afresh
                self._stop()
                raise
            if status not in ("ok", "error", "raised"):  # an exception leaves the worker sound
                self._stop()
        if status == "ok":
            return value
        if status == "error":
            raise DocumentError(value)
        exhaust = "; it may be built to exhaust readers."
        if status == "wall":
            raise DocumentError(f"{name} took too long to read (over {limits.wall_s:g} s){exhaust}")
        if status == "cpu":
            said = f"over {limits.cpu_s:g} s of processing"
            raise DocumentError(f"{name} took too long to read ({said}){exhaust}")
        if status == "memory":
            said = f"over {_size(limits.memory)}"
            raise DocumentError(f"{name} needed too much memory to read ({said}){exhaust}")
        log.warning("reading %s failed in the sandbox: %s", name, value)
        raise DocumentError(f"{name} could not be read; it may be damaged.")

    def close(self) -> None:
        """Stop the worker; the next call starts another."""
        with self._lock:
            self._stop()

    def _call(self, fn: Callable, args: tuple, limits: Limits) -> tuple[str, Any]:
        """(status, value): ok, error (a DocumentError's message), raised (a traceback),
        memory, wall, cpu or died (exit status)."""
        if self._proc is None or self._proc.poll() is not None:  # never started, or died idle
            self._stop()
            self._start()
        assert self._proc and self._requests and self._replies
        try:
            self._requests.send((fn, args, limits))
            if not self._replies.poll(limits.wall_s):
                return "wall", None
            return self._replies.recv()
        except (OSError, EOFError):  # the worker died: a CPU limit or a crash
            try:
                code = self._proc.wait(5)
            except subprocess.TimeoutExpired:
                code = None
            return ("cpu", None) if code == -signal.SIGXCPU else ("died", f"exit status {code}")

    def _start(self) -> None:
        child_reads, parent_writes = os.pipe()  # not inherited by other children (PEP 446)
        parent_reads, child_writes = os.pipe()
        self._requests = Connection(parent_writes, readable=False)
        self._replies = Connection(parent_reads, writable=False)
        try:
            argv = [sys.executable, "-I", "-c", _BOOT, _ROOT, str(child_reads), str(child_writes)]
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                pass_fds=(child_reads, child_writes),
            )  # fmt: skip
        finally:
            os.close(child_reads)
            os.close(child_writes)
        try:
            ready = self._replies.poll(START_TIMEOUT_S) and self._replies.recv()
        except (OSError, EOFError):
            ready = None
        if not ready or ready[0] != "ready":
            self._stop()
            raise RuntimeError("the document reader (index/sandbox.py worker) did not start")
        log.debug("sandbox worker %s started", self._proc.pid)

    def _stop(self) -> None:
        for conn in (self._requests, self._replies):
            if conn is not None:
                conn.close()
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
        self._proc = self._requests = self._replies = None


_default: Sandbox | None = None
_default_lock = threading.Lock()


def run(fn: Callable[..., T], *args: Any, name: str) -> T:
    """`fn(*args)` in the process-wide sandbox (started on first use) with `LIMITS`."""
    global _default
    if _in_worker:
        return fn(*args)
    with _default_lock:
        if _default is None:
            _default = Sandbox()
            atexit.register(close)
    return _default.run(fn, *args, name=name)


def close() -> None:
    """Stop the process-wide worker, if any; the next call starts another."""
    if _default is not None:
        _default.close()


# -- the worker ----------------------------------------------------------------------------------


def _serve() -> None:
    """The worker's loop: read (fn, args, limits), reply (status, value); exit on EOF."""
    global _in_worker
    _in_worker = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU would dump core
    logging.basicConfig(level=logging.ERROR, format="sandbox worker: %(name)s: %(message)s")
    for module in _PRELOAD:
        importlib.import_module(module)
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    requests = Connection(int(sys.argv[2]), writable=False)
    replies = Connection(int(sys.argv[3]), readable=False)
    replies.send(("ready", os.getpid()))
    while True:
        try:
            fn, args, limits = requests.recv()
        except EOFError:
            return  # the parent closed the pipe, or died
        except Exception:  # a function this process cannot import
            replies.send(("raised", traceback.format_exc()))
            continue
        used = resource.getrusage(resource.RUSAGE_SELF)
        _soft_limit(resource.RLIMIT_CPU, math.ceil(used.ru_utime + used.ru_stime + limits.cpu_s))
        _soft_limit(resource.RLIMIT_AS, limits.memory)
        try:
            reply = ("ok", fn(*args))
        except DocumentError as err:
            reply = ("error", str(err))
        except MemoryError:
            reply = ("memory", None)
        except Exception:
            reply = ("raised", traceback.format_exc())
        _soft_limit(resource.RLIMIT_AS, resource.RLIM_INFINITY)  # sending needs a copy
        replies.send(reply)
        if reply[0] == "memory":
            return  # the heap may be in pieces: the parent starts a fresh worker


def _exit_when_orphaned(parent: int) -> None:
    """Exit within a second of the parent's death, even in the middle of a call."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _soft_limit(which: int, soft: int) -> None:
    hard = resource.getrlimit(which)[1]
    if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
        soft = hard
    resource.setrlimit(which, (soft, hard))


def _size(n: int) -> str:
    gib = n / (1 << 30)
    return f"{gib:.3g} GB" if gib >= 1 else f"{n / (1 << 20):.0f} MB"
