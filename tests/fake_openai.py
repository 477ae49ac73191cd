"""A loopback stand-in for an OpenAI-compatible chat completions server, with scripted replies."""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Reply:
    """One scripted response; `body` (raw text) replaces the normal JSON when set."""

    text: str = ""
    status: int = 200
    delay: float = 0.0  # seconds before answering (a timeout when longer than the client waits)
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # e.g. malformed JSON, or a broken event stream
    pieces: list[str] | None = None  # stream chunks; default: the text word by word
    piece_delay: float = 0.0  # seconds between stream chunks


class FakeOpenAI:
    """POST /v1/chat/completions answering from a queue of replies and recording each request."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[dict] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    def reply(self, text: str = "", **kwargs: object) -> None:
        """Queue the next response."""
        self.replies.append(Reply(text, **kwargs))  # type: ignore[arg-type]

    async def __aenter__(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        reply = self.replies.popleft() if self.replies else Reply("No reply was scripted.")
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            error = {"error": {"message": f"scripted {reply.status}", "type": "fake"}}
            return web.json_response(error, status=reply.status, headers=reply.headers)
        if reply.body is not None:  # sent as is, as JSON or as the event stream asked for
            kind = "text/event-stream" if body.get("stream") else "application/json"
            return web.Response(text=reply.body, content_type=kind, headers=reply.headers)
        model = body.get("model", "fake")
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 0,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": reply.text},
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        pieces = reply.pieces if reply.pieces is not None else re.findall(r"\S+\s*", reply.text)
        deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in pieces]
        for i, delta in enumerate(deltas):
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if i and reply.piece_delay:
                await asyncio.sleep(reply.piece_delay)
        end = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await response.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response
