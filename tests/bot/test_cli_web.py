"""The terminal flow for web pages: `statement-bot add URL`, data/sources.txt and `index`."""

from __future__ import annotations

import json
import shutil

import pytest

import index.embedder
from bot.cli import main
from tests.conftest import ROOT
from tests.web_server import Reply, WebServer, fixture

PAGE = (
    "<html><head><title>Herons of Quenville</title></head><body><nav>Home · News</nav><article>"
    "<h1>Herons of Quenville</h1><p>Grey herons nest on the lake islands of Quenville every "
    "April, in the old willows by the boathouse, and they leave again in late August.</p>"
    "</article><footer>© Quenville Birders</footer></body></html>"
)


@pytest.fixture(scope="module")
def web():
    with WebServer() as server:
        server.routes["/herons"] = Reply(200, PAGE.encode(), {"ETag": '"h1"'})
        server.routes["/gone"] = Reply(404, b"gone")
        article = fixture("script-drawn-article")  # the article only in its JSON-LD
        server.routes["/courier"] = Reply(200, article)
        server.routes["/teaser"] = Reply(200, article.replace(b'"articleBody"', b'"description"'))
        yield server


@pytest.fixture
def cli(tmp_path, embedder, monkeypatch, capsys):
    monkeypatch.setattr(index.embedder, "Embedder", lambda name="bundled": embedder)
    monkeypatch.setenv("FETCH_ALLOW_LOOPBACK", "true")  # the test web server is on 127.0.0.1
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "data", tmp_path / "data")

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--data", str(tmp_path / "data"), "--state", str(tmp_path / "state"), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_a_page_added_from_the_terminal_is_cited_with_a_link_to_the_quote(cli, web, tmp_path):
    url = web.url("/herons")
    code, out, err = cli("add", url, "--title", "Herons")
    assert code == 0, err
    assert out.splitlines()[0] == "added web/127-0-0-1-herons.html: “Herons”"
    assert f"from {url}, listed in {tmp_path / 'data' / 'sources.txt'}" in out
    assert (tmp_path / "data" / "sources.txt").read_text().endswith(f"\n{url} Herons\n")

    code, out, _ = cli("ask", "When do the herons nest in Quenville?", "--json")
    answer = json.loads(out)
    [cited] = [c for c in answer["citations"] if c["doc_id"] == "web/127-0-0-1-herons.html"]
    assert cited["url"].startswith(url + "#:~:text=Grey%20herons%20nest")
    code, out, _ = cli("ask", "Who called Diane Abbott a trailblazer?", "--json")
    assert all("url" not in c for c in json.loads(out)["citations"])  # files have no link

    code, out, _ = cli("ask", "When do the herons nest in Quenville?")
    assert f"    {url}#:~:text=" in out

    code, _, err = cli("add", url)
    assert code == 2 and err.startswith(f"error: {url} is already in ")


def test_index_fetches_the_sources_file_and_forgets_what_leaves_it(cli, web, tmp_path):
    listing = tmp_path / "data" / "sources.txt"
    listing.write_text(
        f"# pages\n{web.url('/herons')}\n\n{web.url('/gone')}  Gone page\n", encoding="utf-8"
    )
    code, out, err = cli("index")
    assert code == 0, err
    assert "documents: 2 " in out  # the statement and the page: not sources.txt itself
    assert "fetched web/127-0-0-1-herons.html: added" in out
    gone = web.url("/gone")
    assert f"not refreshed {gone}: {gone} answered HTTP 404 Not Found." in out

    code, out, _ = cli("index")
    assert "re-embedded: 0 " in out and "fetched web/127-0-0-1-herons.html: unchanged" in out
    last = [headers for path, headers in web.requests if path == "/herons"][-1]
    assert last.get("If-None-Match") == '"h1"'  # asked conditionally: 304, nothing re-embedded

    listing.write_text("# nothing any more\n", encoding="utf-8")
    code, out, _ = cli("index")
    assert "documents: 1 " in out and not list((tmp_path / "state" / "web").iterdir())
    code, out, _ = cli("search", "herons nest", "--json")
    assert all(h["doc_id"] == "statement.txt" for h in json.loads(out))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://10.0.0.1/", "error: 10.0.0.1 is a private address;"),
        ("{base}/gone", "error: {base}/gone answered HTTP 404 Not Found."),
        ("gopher://example.org/", "error: Only http:// and https:// links can be added;"),
    ],
)
def test_a_hostile_link_from_the_terminal_changes_nothing(cli, web, tmp_path, url, message):
    url, message = url.format(base=web.base), message.format(base=web.base)
    listing = tmp_path / "data" / "sources.txt"
    before = listing.read_bytes()
    code, _, err = cli("add", url)
    assert code == 2 and err.splitlines()[-1].startswith(message), err
    assert listing.read_bytes() == before
    cache = tmp_path / "state" / "web"
    assert not cache.exists() or not any(cache.iterdir())


def test_one_hostile_source_never_stops_the_others(cli, web, tmp_path, monkeypatch):
    monkeypatch.setenv("FETCH_TIMEOUT", "2")
    web.routes["/undefined"] = Reply(
        200,
        PAGE.replace("Herons", "Egrets").encode(),
        {"Content-Type": "text/html; charset=undefined"},
    )
    web.routes["/accents"] = Reply(302, b"", {"Location": "/caf\u00e9/\u00fcber"})
    web.routes["/no-text"] = Reply(200, b"<html><body><script>app()</script></body></html>")
    hostile = [web.url(p) for p in ("/drip", "/accents", "/no-text")]
    listing = tmp_path / "data" / "sources.txt"
    listing.write_text("\n".join([web.url("/herons"), *hostile, web.url("/undefined")]) + "\n")
    code, out, err = cli("index")
    assert code == 0 and "Traceback" not in out + err, err
    assert "fetched web/127-0-0-1-herons.html: added" in out
    assert "fetched web/127-0-0-1-undefined.html: added" in out  # read as UTF-8, as browsers do
    assert "documents: 3 " in out
    for url in hostile:
        [line] = [x for x in out.splitlines() if x.startswith(f"not refreshed {url}: ")]
        assert len(line) < 400, line
    assert f"not refreshed {hostile[0]}: {hostile[0]} did not answer completely within 2 s." in out


def test_pages_that_would_share_a_file_name_are_all_kept(cli, web, tmp_path):
    web.routes["/same-name"] = Reply(200, PAGE.encode())
    web.routes["/same_name"] = Reply(200, PAGE.replace("Grey herons", "Little egrets").encode())
    listing = tmp_path / "data" / "sources.txt"
    listing.write_text(f"{web.url('/same-name')}\n{web.url('/same_name')}\n", encoding="utf-8")
    code, out, err = cli("index")
    assert code == 0, err
    assert "fetched web/127-0-0-1-same-name.html: added" in out
    assert "fetched web/127-0-0-1-same-name-2.html: added" in out
    assert "documents: 3 " in out
    code, out, _ = cli("search", "little egrets nest", "--json")
    assert any("Little egrets" in h["text"] for h in json.loads(out))


def test_a_page_with_only_a_date_is_asked_if_modified_since(cli, web, tmp_path):
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"
    web.routes["/dated"] = Reply(
        200, PAGE.encode(), {"Content-Type": "text/html", "Last-Modified": stamp}
    )
    (tmp_path / "data" / "sources.txt").write_text(web.url("/dated") + "\n", encoding="utf-8")
    code, out, _ = cli("index")
    assert "fetched web/127-0-0-1-dated.html: added" in out
    code, out, _ = cli("index")
    assert "fetched web/127-0-0-1-dated.html: unchanged" in out and "re-embedded: 0 " in out
    last = [headers for path, headers in web.requests if path == "/dated"][-1]
    assert last.get("If-Modified-Since") == stamp and "If-None-Match" not in last


def test_a_page_whose_article_is_only_in_json_ld_is_indexed_whole(cli, web):
    url = web.url("/courier")
    code, out, err = cli("add", url)
    assert code == 0, err
    assert out.splitlines()[0] == (
        "added web/127-0-0-1-courier.html: “Quenville council votes to sell the riverside "
        "estate” (Mara Lindqvist, dated 2024-03-14)"
    )
    assert "warning" not in out
    code, out, _ = cli("search", "rents for existing tenants rise 35 per cent", "--json")
    assert any("would rise by 35 per cent" in h["text"] for h in json.loads(out))


def test_a_page_with_little_text_is_added_and_the_admin_told(cli, web):
    url = web.url("/teaser")
    code, out, err = cli("add", url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("added web/127-0-0-1-teaser.html: “Quenville council votes")
    assert lines[-1] == (
        f"  warning: only 306 characters of text found on {url}; the page may need a browser "
        "(its text may be drawn by scripts), so few answers can come from it."
    )


def test_index_tells_of_a_source_whose_text_came_out_thin(cli, web, tmp_path):
    teaser, courier = web.url("/teaser"), web.url("/courier")
    (tmp_path / "data" / "sources.txt").write_text(f"{teaser}\n{courier}\n", encoding="utf-8")
    code, out, err = cli("index")
    assert code == 0, err
    assert "fetched web/127-0-0-1-courier.html: added" in out
    assert [x for x in out.splitlines() if x.startswith("warning")] == [
        "warning web/127-0-0-1-teaser.html: only 306 characters of text found on it; the page "
        "may need a browser (its text may be drawn by scripts), so few answers can come from it."
    ]
