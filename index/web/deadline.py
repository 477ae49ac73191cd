"""Deadlines that hold whatever reads the connection: a timer that shuts the socket down (its
own descriptor, so TLS cannot take it away) and a response whose every read waits at most the
time left."""

from __future__ import annotations

import http.client
import socket
import threading
import time


class Watch:
    """Shuts a connection down at the deadline, whichever object reads from it (plain or TLS).

    The timer holds its own descriptor of the socket (a dup): TLS takes over the original socket
    object's descriptor, but shutting down any descriptor of a connection wakes every read on it.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.expired = threading.Event()
        self._lock = threading.Lock()
        self._dup = sock.dup()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._cut)
        self._timer.daemon = True
        self._timer.start()

    def _cut(self) -> None:
        with self._lock:
            self.expired.set()
            try:
                self._dup.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:  # never closed while _cut uses it (its number could be reused)
            self._dup.close()


def clocked(sock, deadline: float, *args, **kwargs) -> http.client.HTTPResponse:
    """http.client's response, reading through a clock: every read waits at most the time left
    and none starts or returns after the deadline (an endless stream of 100 Continue ends)."""
    response = http.client.HTTPResponse(sock, *args, **kwargs)
    response.fp = Clock(response.fp, sock, deadline)
    return response


class Clock:
    def __init__(self, fp, sock, deadline: float) -> None:
        self._fp, self._sock, self._deadline = fp, sock, deadline

    def __getattr__(self, name: str):
        attr = getattr(self._fp, name)
        if name not in ("read", "read1", "readinto", "readline", "peek"):
            return attr

        def timed(*args):
            self._left()
            out = attr(*args)
            self._left()
            return out

        return timed

    def _left(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline has passed")
        self._sock.settimeout(left)
