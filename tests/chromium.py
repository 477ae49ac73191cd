"""Headless Chromium driven over the DevTools protocol: open a text-fragment link and read back
which characters the browser highlighted, and whether it scrolled them into view.

Chromium applies a text fragment to navigations the browser itself starts (typed URLs,
bookmarks); `Page.navigate` is one, so the fragment is honoured as for a user (the spec allows
browser-initiated navigations; script-initiated ones would need a user gesture). Chromium does
not select the passage, it paints it with the `::target-text` pseudo-element: the page is served
with `::target-text { background: magenta }`, a screenshot of the viewport is taken, and each
character on screen counts as highlighted when its box is mostly magenta. Only what is on screen
can be highlighted in the screenshot, so a passage found there was also scrolled into view.

Every request but those to 127.0.0.1 goes to a dead proxy and no host name resolves, so real
pages' external scripts, fonts and images never leave the machine; page scripts are disabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp

CHROMIUM = Path("/usr/bin/chromium")
TARGET_RULE = "::target-text{background-color:#ff00ff!important}"
# Served with each page: the highlight in magenta, and every element in the flow, so that sticky
# bars and overlays (the saved pages lack most of their sites' CSS) cannot cover the text.
TARGET_STYLE = f"<style>{TARGET_RULE}*{{position:static!important}}</style>"
# Added once loaded, for pages a server cannot change (plain text): the highlight in magenta.
_PREPARE = f"""document.head.appendChild(document.createElement('style')).textContent =
  '{TARGET_RULE}';"""
WIDTH, HEIGHT = 1000, 1200
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--hide-scrollbars", "--remote-debugging-port=0",
]  # fmt: skip

# For each character on the page but spaces, in document order: itself and the share of its box
# (on screen) painted magenta; the screenshot is decoded by the page itself, on a canvas.
_WORDS = """async (png) => {
  const img = new Image(); img.src = 'data:image/png;base64,' + png; await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.width; canvas.height = img.height;
  const g = canvas.getContext('2d'); g.drawImage(img, 0, 0);
  const px = g.getImageData(0, 0, img.width, img.height).data;
  const share = (r) => {
    let hit = 0, n = 0;
    for (let y = Math.max(0, Math.floor(r.top)); y < Math.min(img.height, r.bottom); y++)
      for (let x = Math.max(0, Math.floor(r.left)); x < Math.min(img.width, r.right); x++) {
        const i = (y * img.width + x) * 4; n++;
        if (px[i] > 235 && px[i + 1] < 30 && px[i + 2] > 235) hit++;
      }
    return n ? hit / n : 0;
  };
  const chars = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let node; (node = walk.nextNode());) {
    for (let i = 0; i < node.data.length; i++) {
      if (/[\\s\\u00a0]/.test(node.data[i])) continue;
      range.setStart(node, i); range.setEnd(node, i + 1);
      const box = range.getBoundingClientRect();
      if (box.width > 0 && box.height > 0) chars.push([node.data[i], share(box)]);
    }
  }
  return JSON.stringify({chars, scrollY});
}"""


@dataclass(frozen=True)
class Seen:
    """What the browser showed after opening a link."""

    chars: str  # the page's rendered text without whitespace
    marked: list[int]  # indexes of its characters painted as the text fragment, on screen
    scroll_y: float

    @property
    def highlighted(self) -> str:
        return "".join(self.chars[i] for i in self.marked)

    @property
    def contiguous(self) -> bool:
        return self.marked == list(range(self.marked[0], self.marked[-1] + 1))

    def before(self) -> str:
        """The page's rendered text before the highlight, without whitespace."""
        return self.chars[: self.marked[0]] if self.marked else ""


class Chromium:
    """One headless browser with one tab."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self._ids = 0
        self._waiting: dict[int, asyncio.Future] = {}
        self._events: asyncio.Queue = asyncio.Queue()

    async def __aenter__(self) -> Chromium:
        if not CHROMIUM.exists():
            raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium")
        self.process = subprocess.Popen(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        address = await asyncio.wait_for(asyncio.to_thread(self._devtools_address), 30)
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(address, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        target = await self.call("Target.createTarget", url="about:blank")
        tab = await self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        self.session = tab["sessionId"]
        await self.call("Page.enable", session=True)
        # The saved pages were captured with scripts off; run, their inline scripts would
        # re-render the page without the bundles they expect (and wipe the highlight).
        await self.call("Emulation.setScriptExecutionDisabled", session=True, value=True)
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True, width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._reader.cancel()
            await self.ws.close()
            await self.http.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _devtools_address(self) -> str:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            found = re.search(rb"DevTools listening on (ws://\S+)", line)
            if found:
                self.process.stderr.close()  # nothing else is read from it
                return found.group(1).decode()
        raise RuntimeError("Chromium exited before opening its DevTools port")

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            elif "method" in data:
                self._events.put_nowait(data)

    async def _scroll_y(self) -> float:
        result = await self.call("Runtime.evaluate", session=True, expression="scrollY")
        return result["result"]["value"]

    async def _load(self, url: str) -> None:
        while not self._events.empty():
            self._events.get_nowait()
        await self.call("Page.navigate", session=True, url=url)
        while (await asyncio.wait_for(self._events.get(), 30))["method"] != "Page.loadEventFired":
            pass

    async def call(self, method: str, session: bool = False, **params: object) -> dict:
        self._ids += 1
        message = {"id": self._ids, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        future = asyncio.get_running_loop().create_future()
        self._waiting[self._ids] = future
        await self.ws.send_json(message)
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def open(self, url: str) -> Seen:
        """Navigate to `url` as a user would, wait for the load, and read the highlight."""
        await self._load("about:blank")  # so the page loads anew, not as a same-page jump
        await self._load(url)
        await self.call("Runtime.evaluate", session=True, expression=_PREPARE)
        for _ in range(20):  # the fragment is searched for and scrolled to after the load
            at = await self._scroll_y()
            await asyncio.sleep(0.2)
            shot = await self.call("Page.captureScreenshot", session=True, format="png")
            result = await self.call(
                "Runtime.evaluate",
                session=True,
                expression=f"({_WORDS})({json.dumps(shot['data'])})",
                awaitPromise=True,
                returnByValue=True,
            )
            seen = json.loads(result["result"]["value"])
            if seen["scrollY"] == at:  # the screenshot and the boxes agree on where the page is
                break
        chars = "".join(c for c, _ in seen["chars"])
        marked = [i for i, (_, share) in enumerate(seen["chars"]) if share > 0.3]
        return Seen(chars, marked, seen["scrollY"])
