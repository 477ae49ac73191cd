"""How fresh a stored web page is: "fetched N days ago" and the date the page gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from index.records import Document
from index.web.pages import WebMeta
from index.web.sources import freshness

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def meta(fetched: datetime, final_url: str = "https://example.org/a page") -> WebMeta:
    iso = fetched.isoformat(timespec="seconds")
    return WebMeta("https://example.org/a", final_url, ".html", "utf-8", None, None, iso)


@pytest.mark.parametrize(
    ("ago", "shown"),
    [
        (timedelta(0), "today"),
        (timedelta(hours=23, minutes=59), "today"),
        (timedelta(days=1), "1 day ago"),
        (timedelta(days=1, hours=23), "1 day ago"),
        (timedelta(days=2), "2 days ago"),
        (timedelta(days=45, hours=3), "45 days ago"),
    ],
)
def test_fetched_n_days_ago_counts_whole_days(ago, shown):
    doc = Document("web/a.html", "A", "Text.", "a.html", published="2024-05-24")
    assert freshness(doc, meta(NOW - ago), NOW) == (
        f"from <https://example.org/a%20page>, fetched {shown}, dated 2024-05-24"
    )


def test_a_page_without_a_date_or_a_file_says_only_what_it_knows():
    undated = Document("web/a.html", "A", "Text.", "a.html")
    assert freshness(undated, meta(NOW - timedelta(days=3)), NOW).endswith(", fetched 3 days ago")
    assert freshness(undated, None, NOW) == ""  # a file, not a page from the web
