"""Open generated citation links in headless Chromium and report which land on the exact quote.

`python bench/fragments.py` checks the links the test checks
(tests/index/web/test_fragments_browser.py); `--all` checks every sentence of every saved page.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.index.web.test_fragments_browser import check  # noqa: E402


def main() -> None:
    results = asyncio.run(check(every="--all" in sys.argv))
    for r in results:
        quote = r.quote if len(r.quote) <= 70 else r.quote[:69] + "…"
        print(f"{'ok ' if r.ok else 'BAD'} {r.page:34} {quote!r}")
        if not r.ok:
            print(f"    {r.url}\n    highlighted: {r.highlighted!r}")
    ok, pages = sum(r.ok for r in results), len({r.page for r in results})
    print(f"\n{ok} of {len(results)} links on {pages} pages open on the exact passage")


if __name__ == "__main__":
    main()
