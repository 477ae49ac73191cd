"""Boilerplate kept by the HTML loader and by trafilatura on saved real-world pages.

`python bench/extraction.py` prints, for each page in tests/fixtures/web/ (news and press
releases; see the README there), the share of extracted words that are *not* in the page's
hand-marked article body (boilerplate kept: navigation, share buttons, related links, footers,
cookie notices) and the share of the article's words that were extracted (recall). Words are
compared as bags (lower-cased \\w+ tokens): a word counts as boilerplate once the article's own
count of it is used up.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from index.loaders import load_bytes  # noqa: E402
from index.web.pages import extract  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "web"
_TOKEN = re.compile(r"\w+")


def pages() -> dict[str, tuple[bytes, str, str]]:
    """{name: (html bytes, url, hand-marked article body)} for every saved page."""
    truth = json.loads((FIXTURES / "ground-truth.json").read_text(encoding="utf-8"))
    html = {name: gzip.decompress((FIXTURES / f"{name}.html.gz").read_bytes()) for name in truth}
    return {name: (html[name], t["url"], t["articleBody"]) for name, t in sorted(truth.items())}


def scores(extracted: str, article: str) -> tuple[float, float, int]:
    """(boilerplate share, recall, words extracted) of `extracted` against `article`."""
    got = Counter(_TOKEN.findall(extracted.lower()))
    want = Counter(_TOKEN.findall(article.lower()))
    total = sum(got.values())
    kept = sum((got & want).values())
    return (1 - kept / total if total else 0.0), kept / max(1, sum(want.values())), total


def compare() -> list[dict]:
    rows = []
    for name, (html, url, article) in pages().items():
        old = load_bytes("page.html", html, name).text
        new, title, author, date = extract(html.decode("utf-8"), url)
        rows.append(
            {
                "page": name,
                "loader": scores(old, article),
                "trafilatura": scores(new, article),
                "title": title,
                "author": author,
                "date": date,
            }
        )
    return rows


def main() -> None:
    rows = compare()
    print(
        "| page | boilerplate kept: loader | trafilatura | article recall: loader | trafilatura "
        "| words: loader | trafilatura | title · author · date (trafilatura) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        (ob, orc, ow), (nb, nrc, nw) = r["loader"], r["trafilatura"]
        meta = " · ".join(str(x) if x else "—" for x in (r["title"][:50], r["author"], r["date"]))
        cells = [r["page"], f"{ob:.1%}", f"**{nb:.1%}**", f"{orc:.1%}", f"{nrc:.1%}", ow, nw, meta]
        print("| " + " | ".join(map(str, cells)) + " |")
    n = len(rows)
    mean = [sum(r[k][i] for r in rows) / n for k in ("loader", "trafilatura") for i in (0, 1)]
    print(
        f"| **mean of {n}** | {mean[0]:.1%} | **{mean[2]:.1%}** | {mean[1]:.1%} | {mean[3]:.1%} "
        "| | | |"
    )


if __name__ == "__main__":
    main()
