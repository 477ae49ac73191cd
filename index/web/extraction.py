"""The main text of an HTML page, and the text a browser renders of it.

trafilatura finds the main text, title, author and date (not navigation, cookie banners or
comments). When its text is thin beside what the page shows (`thin`), the article is looked for
in the page's structured data (JSON-LD `articleBody`) and with a recall-oriented pass.
"""

from __future__ import annotations

import json
import logging
import re

log = logging.getLogger(__name__)

# Elements a browser does not render, so text fragments cannot match in them.
_HIDDEN = {
    "head", "script", "style", "template", "noscript", "iframe", "img", "video", "audio",
    "object", "embed", "select", "textarea", "svg", "math", "meter", "progress", "canvas",
}  # fmt: skip
# Block-level elements (by the browser's default style): a text fragment's terms stay in one.
_BLOCKS = {
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
    "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "legend", "li",
    "main", "menu", "nav", "ol", "p", "pre", "search", "section", "summary", "table", "tbody",
    "td", "tfoot", "th", "thead", "tr", "ul", "br", "option", "optgroup",
}  # fmt: skip
_DISPLAY_NONE = re.compile(r"display\s*:\s*none", re.I)
_SPACE = re.compile(r"\s+")  # Unicode whitespace, no-break space included: browsers match it so
# A page's main text is thin under THIN_CHARS characters and under THIN_SHARE of its rendered
# text (or when the browser shows less than half of it: it sits in <noscript> or hidden blocks).
# On the 58 saved real pages (tests/fixtures/web, tests/qa/real_pages) the main text is 24-100%
# of the rendered text, and the one page under 25% has 3,589 characters; the shortest has 1,352
# characters at 75%. A page drawn by scripts gives a teaser or a few lines beside its menus.
THIN_CHARS = 1500
THIN_SHARE = 0.25
_APART = {"cell", "p", "head", "item", "list", "quote", "row"}  # blocks inside a block
_LEAVES = ("p", "head", "item", "quote", "row", "code")


def extract(
    html: str, url: str | None = None, shown: str | None = None
) -> tuple[str, str | None, str | None, str | None]:
    """(main text, title, author, date) of an HTML page; text "" when it has none.

    Paragraphs are separated by a blank line; a line break inside one is kept as "\\n".
    `shown` is the page's rendered text (`visible_text`), to tell when the main text is thin.
    """
    text, meta = _trafilatura(html, url, recall=False)
    recalled = not text
    if recalled:  # a short statement may need the recall-oriented pass
        text, meta = _trafilatura(html, url, recall=True)
    shown = visible_text(html) if shown is None else shown
    if thin(text, shown) and len(body := structured_body(html)) > len(text):
        text = body  # the article is only in the page's structured data (drawn by scripts)
    if thin(text, shown) and not recalled:
        more, _ = _trafilatura(html, url, recall=True)
        if len(more) > len(text) and not thin(more, shown):
            text = more
    return (text, *meta)


def thin(text: str, shown: str) -> bool:
    """Whether a page's main text is too little beside its rendered text (see THIN_CHARS)."""
    return len(text) < THIN_CHARS and (
        len(text) < THIN_SHARE * len(shown) or 2 * len(shown) < len(text)
    )


def structured_body(html: str) -> str:
    """The longest `articleBody` in the page's JSON-LD (`@graph` and lists included), as
    paragraphs separated by a blank line; "" when there is none."""
    import lxml.html

    try:
        root = lxml.html.document_fromstring(html)
    except Exception:  # lxml raises ParserError and others on garbage
        return ""
    best = ""
    for script in root.iter("script"):
        if (script.get("type") or "").split(";")[0].strip().lower() != "application/ld+json":
            continue
        try:
            data = json.loads(script.text or "", strict=False)  # raw newlines in strings occur
        except (ValueError, RecursionError):  # RecursionError: arrays nested 100,000 deep
            continue
        stack = [data]
        while stack:
            node = stack.pop()
            if isinstance(node, list):
                stack.extend(node)
            elif isinstance(node, dict):
                body = node.get("articleBody")
                if isinstance(body, str) and len(body) > len(best):
                    best = body
                stack.extend(v for v in node.values() if isinstance(v, list | dict))
    return _paragraphs(best)


def visible_text(html: str) -> str:
    """The text a browser renders for `html`: one line per block, whitespace collapsed."""
    import lxml.html

    try:
        root = lxml.html.document_fromstring(html)
    except Exception:  # lxml raises ParserError and others on garbage
        log.debug("lxml could not parse a page", exc_info=True)
        return ""
    lines: list[str] = []
    current: list[str] = []

    def flush() -> None:
        line = _SPACE.sub(" ", "".join(current)).strip()
        if line:
            lines.append(line)
        current.clear()

    stack: list[tuple[object, bool]] = [(root, False)]
    while stack:  # iterative: deep nesting is no problem
        node, leaving = stack.pop()
        tag = node.tag.lower() if isinstance(node.tag, str) else ""
        if leaving:
            if tag in _BLOCKS:
                flush()
            current.append(node.tail or "")
            continue
        if not tag or tag in _HIDDEN or _hidden(node):
            current.append(node.tail or "")  # a comment or hidden element: only its tail shows
            continue
        if tag in _BLOCKS:
            flush()
        current.append(node.text or "")
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node))
    flush()
    return "\n".join(lines)


def _trafilatura(html: str, url: str | None, recall: bool) -> tuple[str, tuple]:
    """(main text, (title, author, date)) from one trafilatura pass; ("", (None,) * 3) if none."""
    import trafilatura

    try:
        found = trafilatura.bare_extraction(
            html, url=url, with_metadata=True, include_comments=False, favor_recall=recall
        )
    except Exception:  # lxml and trafilatura raise many types on broken markup
        log.debug("trafilatura failed on %s", url, exc_info=True)
        found = None
    if found is None or found.body is None or not len(found.body):
        return "", (None, None, None)
    text = "\n\n".join(b for b in _blocks(found.body) if b)
    return text, (found.title, found.author, found.date)


def _blocks(body):
    """The text of trafilatura's paragraphs, headings, list items, quotes, code blocks and
    table rows, in order. A data table's row is one line, its cells side by side; a layout
    table's row (a cell holds a heading, list, quote or paragraphs) gives its blocks."""
    for el in body.iter(*_LEAVES):
        ups = list(el.iterancestors())
        if any(up.tag == "row" for up in ups):
            continue  # in a row: yielded with it
        if el.tag == "code" and any(_holds(up) for up in ups):
            continue  # inline code: in the text of the block around it
        if el.tag == "row":
            yield from _row_blocks(el) if _layout(el) else [_block_text(el)]
        elif _leaf(el):
            yield _block_text(el)


def _holds(up) -> bool:
    """Whether `up` is yielded whole, with any code inside it."""
    return up.tag in ("p", "head", "code") or up.tag in ("item", "quote") and _leaf(up)


def _leaf(el) -> bool:
    """A block yielded whole: no paragraph, list item, quote or row inside it."""
    return not any(d is not el for d in el.iter("p", "item", "quote", "row"))


def _layout(row) -> bool:
    """A row that lays out a page rather than holding data: a cell holds a heading, list,
    quote, table or more than two paragraphs (a data table's cell holds a line or two)."""
    return any(
        any(True for _ in cell.iter("head", "list", "quote", "row"))
        or len(cell.findall(".//p")) > 2
        for cell in row.iter("cell")
    )


def _row_blocks(row):
    """A layout row's blocks in order: its cells' paragraphs and the loose text between them."""
    loose: list[str] = []

    def flush():
        text = _SPACE.sub(" ", "".join(loose)).strip()
        loose.clear()
        return [text] if text else []

    stack: list[tuple[object, bool]] = [(child, False) for child in reversed(row)]
    while stack:  # iterative: nesting depth is no problem
        el, leaving = stack.pop()
        if leaving:
            if el.tag == "cell":
                yield from flush()
            loose.append(el.tail or "")
            continue
        if (
            el.tag == "row"
            and not _layout(el)
            or el.tag in _LEAVES
            and el.tag != "row"
            and _leaf(el)
        ):
            yield from flush()
            yield _block_text(el)
            loose.append(el.tail or "")
            continue
        loose.append(el.text or "")
        stack.append((el, True))
        stack.extend((child, False) for child in reversed(el))
    yield from flush()


def _block_text(el) -> str:
    """A block's text in document order; a line break is kept, and cells and paragraphs
    inside it are set apart by a space (a table row's cells read side by side)."""
    from lxml import etree

    pieces = []
    for event, node in etree.iterwalk(el, events=("start", "end")):
        if event == "start":
            own = isinstance(node.tag, str)  # not a comment
            pieces.append("\n" if node.tag == "lb" else (node.text or "") if own else "")
        elif node is not el:
            pieces.append((" " if node.tag in _APART else "") + (node.tail or ""))
    lines = (_SPACE.sub(" ", line).strip() for line in "".join(pieces).split("\n"))
    return "\n".join(line for line in lines if line)


def _paragraphs(body: str) -> str:
    """JSON-LD article text as paragraphs, undoing the markup or entities some sites leave in."""
    import html

    if re.search(r"<(p|br|div|h\d)\b", body, re.I):
        body = visible_text(f"<html><body>{body}</body></html>")  # one block a line
    else:
        body = html.unescape(body)
    lines = (_SPACE.sub(" ", line).strip() for line in body.splitlines())
    return "\n\n".join(line for line in lines if line)


def _hidden(node) -> bool:
    return node.get("hidden") is not None or bool(_DISPLAY_NONE.search(node.get("style") or ""))
