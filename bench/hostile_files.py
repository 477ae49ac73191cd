"""Hostile documents against the sandboxed readers (index/sandbox.py), with the default limits.

`python bench/hostile_files.py` reads each case in a fresh process and prints the outcome (the
document's size or the one-line refusal), the seconds it took, and the peak resident memory of
the sandbox worker (getrusage of the reaped worker); then the sandbox's start-up time and its
overhead per call on a small document. The generators are shared with tests/index/.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from index import sandbox  # noqa: E402
from index.loaders import _extract, load_bytes  # noqa: E402
from index.web.pages import WebMeta, _read_html, load_stored  # noqa: E402


def pdf_bomb(pages: int = 210, repeats: int = 6_000, word: bytes = b"Lorem ipsum dolor") -> bytes:
    """A ~19 KB PDF whose pages all show one compressed content stream of `repeats` strings:
    pypdf parses and interprets it again for every page."""
    body = b"BT /F1 12 Tf 72 720 Td " + b"(%s) Tj " % word * repeats + b"ET"
    stream = zlib.compress(body, 9)
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    return _pdf_file(
        [
            b"<</Type/Catalog/Pages 2 0 R>>",
            b"<</Type/Pages/Kids[%s]/Count %d/MediaBox[0 0 612 792]" % (kids, pages)
            + b"/Resources<</Font<</F1 4 0 R>>>>>>",
            b"<</Length %d/Filter/FlateDecode>>stream\n%s\nendstream" % (len(stream), stream),
            b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>",
        ]
        + [b"<</Type/Page/Parent 2 0 R/Contents 3 0 R>>"] * pages
    )


def text_pdf(pages: int = 20, lines: int = 40) -> bytes:
    """An ordinary PDF: `lines` lines of text a page, each page its own content stream."""
    line = b"(The committee met on Tuesday to discuss the budget and the plan for %d.) '"
    objs = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[%s]/Count %d/MediaBox[0 0 612 792]"
        % (b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(pages)), pages)
        + b"/Resources<</Font<</F1 3 0 R>>>>>>",
        b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>",
    ]
    for p in range(pages):
        body = b"BT /F1 10 Tf 72 760 Td 12 TL " + b" ".join(
            line % (p * lines + i) for i in range(lines)
        )
        stream = zlib.compress(body + b" ET")
        objs.append(b"<</Type/Page/Parent 2 0 R/Contents %d 0 R>>" % (5 + 2 * p))
        objs.append(
            b"<</Length %d/Filter/FlateDecode>>stream\n%s\nendstream" % (len(stream), stream)
        )
    return _pdf_file(objs)


def _pdf_file(objs: list[bytes]) -> bytes:
    """A PDF of these objects (numbered from 1, the first the catalog) with its xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for n, obj in enumerate(objs, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj%sendobj\n" % (n, obj))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref))
    return out.getvalue()


def link_page(size: int = 5_000_000) -> bytes:
    """A page of nothing but links, `size` bytes."""
    row = '<li><a href="/page/{0}">Link number {0}</a></li>\n'
    rows = [row.format(n) for n in range(size // len(row.format(10**5)))]
    head = "<html><head><title>Links</title></head><body><ul>"
    return f"{head}{''.join(rows)}</ul></body></html>".encode()


def nested_page(depth: int = 200_000) -> bytes:
    return b"<html><body>" + b"<div>" * depth + b"deep text" + b"</div>" * depth + b"</body></html>"


def docx_zip_bomb(unzipped: int = 200_000_000) -> bytes:
    """A .docx whose document.xml inflates `unzipped` bytes of spaces from ~200 KB."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w") as f:
            chunk = b" " * 1_000_000
            for _ in range(unzipped // len(chunk)):
                f.write(chunk)
    return out.getvalue()


def web_meta(kind: str = ".html", url: str = "https://example.org/page") -> WebMeta:
    return WebMeta(url, url, kind, None, None, None, "2025-01-01T00:00:00Z")


def _cases() -> dict:
    saved = ROOT / "tests" / "fixtures" / "web"  # real pages (see bench/extraction.py)
    name, about = sorted(json.loads((saved / "ground-truth.json").read_text("utf-8")).items())[0]
    html, url = gzip.decompress((saved / f"{name}.html.gz").read_bytes()), about["url"]
    return {
        "PDF bomb, shared stream of long strings": lambda: ("bomb.pdf", pdf_bomb()),
        "PDF bomb, shared stream of 1-char strings": lambda: (
            "bomb.pdf",
            pdf_bomb(repeats=15_000, word=b"L"),
        ),
        "HTML link bomb, 5 MB, as a web page": lambda: (web_meta(), link_page()),
        "HTML link bomb, 5 MB, as a file": lambda: ("links.html", link_page()),
        "deep nesting, 200,000 divs, as a web page": lambda: (web_meta(), nested_page()),
        "deep nesting, 200,000 divs, as a file": lambda: ("deep.html", nested_page()),
        "DOCX zip bomb (200 MB inflated)": lambda: ("bomb.docx", docx_zip_bomb()),
        "normal PDF (20 pages)": lambda: ("report.pdf", text_pdf()),
        "normal web page (a saved news page)": lambda: (web_meta(url=url), html),
    }


def _one(case: str) -> dict:
    """Read one case here, in a fresh process, so the reaped worker's rusage is its own."""
    where, data = _cases()[case]()
    start = time.perf_counter()
    try:
        if isinstance(where, WebMeta):
            doc = load_stored(data, where, "case")
        else:
            doc = load_bytes(where, data, "case")
        outcome = f"read: {len(doc.text):,} characters"
    except Exception as err:
        outcome = f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - start
    sandbox.close()  # reaps the worker, so its peak memory is in RUSAGE_CHILDREN
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"case": case, "bytes": len(data), "outcome": outcome, "s": seconds, "peak_mib": peak}


def _overhead(calls: int = 21) -> None:
    box = sandbox.Sandbox()
    start = time.perf_counter()
    box.run(os.getpid, name="start")
    print(f"\nworker start-up (first call, nothing to read): {time.perf_counter() - start:.3f} s")
    small = {
        "2-page PDF (load_bytes's _extract)": (_extract, ("a.pdf", ".pdf", text_pdf(2, 2))),
        "small page (load_stored's _read_html)": (
            _read_html,
            (
                b"<html><body><article><p>" + b"A short statement. " * 50 + b"</p></article>",
                None,
                "u",
            ),
        ),
    }
    for label, (fn, args) in small.items():
        direct, boxed = [], []
        for _ in range(calls):
            start = time.perf_counter()
            fn(*args)
            direct.append(time.perf_counter() - start)
            start = time.perf_counter()
            box.run(fn, *args, name="small")
            boxed.append(time.perf_counter() - start)
        d, b = statistics.median(direct) * 1000, statistics.median(boxed) * 1000
        said = f"in-process {d:.2f} ms, sandboxed {b:.2f} ms (+{b - d:.2f} ms)"
        print(f"{label}: {said}, median of {calls}")
    box.close()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        print(json.dumps(_one(sys.argv[2])))
        return
    limits = sandbox.LIMITS
    memory = f"{limits.memory >> 20} MiB address space"
    print(f"limits: {limits.cpu_s:g} s CPU, {limits.wall_s:g} s wall, {memory}")
    print(f"{'case':44} {'bytes':>10} {'s':>6} {'peak MiB':>9}  outcome")
    for case in _cases():
        out = subprocess.run(
            [sys.executable, __file__, "--case", case], capture_output=True, text=True, check=True
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        size, seconds, peak = (
            f"{row['bytes']:>10,}",
            f"{row['s']:>6.2f}",
            f"{row['peak_mib']:>9.0f}",
        )
        print(f"{case:44} {size} {seconds} {peak}  {row['outcome']}")
    _overhead()


if __name__ == "__main__":
    main()
