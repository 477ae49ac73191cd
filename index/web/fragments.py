"""Links that open a page on an exact passage: text fragments,
`#:~:text=[prefix-,]start[,end][,-suffix]` (https://wicg.github.io/scroll-to-text-fragment/).

The browser matches a directive against the page's rendered text, and each term only inside one
block, case- and accent-insensitively, at word boundaries, and highlights the *first* match.
So a directive is built against the page's rendered text (`Document.page_text`: one block a
line, see index/web/pages.py) and checked with `resolve`, which follows the specification's
"find a range from a text directive": terms are lengthened, then a prefix and/or suffix added,
until the first match is the quoted passage itself.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, unquote

from index.records import Document

EXACT_WORDS = 8  # quotes up to this many words are given whole; longer ones as start,end
RANGE_WORDS = (3, 4, 5, 7, 10)  # words at each end of a range, tried in turn
CONTEXT_WORDS = 5  # the most words of prefix or suffix
CONTEXT_CHARS = 300  # characters of the document around a quote used to find it on the page
_SPACE = re.compile(r"\s+")
# WHATWG's windows-1252 over latin-1: cp1252, its five unused bytes kept as C1 controls.
WINDOWS_1252 = {b: bytes([b]).decode("cp1252", "ignore") or chr(b) for b in range(0x80, 0xA0)}
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Directive:
    """One text directive; `end`, `prefix` and `suffix` are optional."""

    start: str
    end: str | None = None
    prefix: str | None = None
    suffix: str | None = None

    def encode(self) -> str:
        """The directive as it goes after `#:~:`, each term percent-encoded per the spec."""
        terms = [_encode(self.prefix) + "-"] if self.prefix else []
        terms.append(_encode(self.start))
        if self.end:
            terms.append(_encode(self.end))
        if self.suffix:
            terms.append("-" + _encode(self.suffix))
        return "text=" + ",".join(terms)

    @classmethod
    def parse(cls, value: str) -> Directive:
        """A directive from what follows `text=`, as a browser reads it."""
        terms = value.split(",")
        prefix = unquote(terms.pop(0)[:-1]) if terms[0].endswith("-") else None
        suffix = unquote(terms.pop()[1:]) if len(terms) > 1 and terms[-1].startswith("-") else None
        return cls(unquote(terms[0]), unquote(terms[1]) if len(terms) > 1 else None, prefix, suffix)


def quote_url(doc: Document, start: int, end: int) -> str | None:
    """A link that opens `doc` at `doc.text[start:end]`; None for documents not from the web."""
    if not doc.url:
        return None
    base = doc.url.split("#", 1)[0]
    if doc.pages:  # a PDF: viewers open it at the page
        return f"{base}#page={bisect_right(doc.pages, start)}"
    if not (page := doc.page_text):  # a DOCX file: browsers download it
        return base
    before = doc.text[max(0, start - CONTEXT_CHARS) : start]
    after = doc.text[end : end + CONTEXT_CHARS]
    directive = text_fragment(page, doc.text[start:end], before, after)
    if directive is None and not doc.text[start:end].isascii():
        # The page declared no charset and the browser reads its UTF-8 as windows-1252
        # (page_text is what it shows): find the quote as misread there and open it with
        # terms of plain ASCII words, which read the same either way.
        quote, before, after = (misread(x) for x in (doc.text[start:end], before, after))
        directive = text_fragment(page, quote, before, after, ascii_only=True)
    return f"{base}#:~:{directive.encode()}" if directive else base


def misread(text: str) -> str:
    """`text` as a browser shows its UTF-8 bytes read as windows-1252 (WHATWG's)."""
    return text.encode("utf-8").decode("latin-1").translate(WINDOWS_1252)


def text_fragment(
    page: str, quote: str, before: str = "", after: str = "", ascii_only: bool = False
) -> Directive | None:
    """The shortest directive whose first match on `page` is `quote`, or None if it is not there.

    `page` is rendered text, one block a line; `before` and `after` are the quote's neighbours in
    the extracted text, to tell repeated passages apart. With `ascii_only`, every term is plain
    ASCII words, and the directive spans the quote from its first such word to its last; if
    there is none, terms as the page shows them.
    """
    target = locate(page, quote, before, after)
    if target is None:
        return None
    return (
        ascii_only and directive_for(page, *target, ascii_only=True) or directive_for(page, *target)
    )


def locate(page: str, quote: str, before: str = "", after: str = "") -> tuple[int, int] | None:
    """Where `quote` is on `page` (whose block breaks count as spaces), best-matching context."""
    wanted = _fold(_collapse(quote))
    if not wanted:
        return None
    flat = _folded(page).replace("\n", " ")
    found = []
    i = flat.find(wanted)
    while i >= 0:
        if _boundary(page, i) and _boundary(page, i + len(wanted)):
            found.append(i)
        i = flat.find(wanted, i + 1)
    if not found:
        return None
    left, right = _fold(_collapse(before)), _fold(_collapse(after))

    def agreement(i: int) -> int:
        return _common(flat[:i].rstrip()[::-1], left[::-1]) + _common(
            flat[i + len(wanted) :].lstrip(), right
        )

    best = max(found, key=lambda i: (agreement(i), -i))
    return best, best + len(wanted)


def directive_for(page: str, start: int, end: int, ascii_only: bool = False) -> Directive | None:
    """The first directive, shortest first, that `resolve` maps to page[start:end]; with
    `ascii_only`, to its span from the first ASCII word to the last, in ASCII terms."""
    words = [(m.start() + start, m.end() + start) for m in _WORD.finditer(page[start:end])]
    if ascii_only:
        plain = [w for w in words if page[w[0] : w[1]].isascii()]
        if not plain:
            return None
        start, end = plain[0][0], plain[-1][1]
        words = words[words.index(plain[0]) : words.index(plain[-1]) + 1]
    if not words:
        return None
    text = page[start:end]
    one_block = "\n" not in text
    first = [w for w in words if "\n" not in page[start : w[1]]]  # words of the first block
    last = [w for w in words if "\n" not in page[w[0] : end]]  # and of the last
    if ascii_only:  # a term runs over ASCII words only
        odd = [i for i, w in enumerate(first) if not page[w[0] : w[1]].isascii()]
        first = first[: odd[0]] if odd else first
        odd = [i for i, w in enumerate(last) if not page[w[0] : w[1]].isascii()]
        last = last[odd[-1] + 1 :] if odd else last
    bases: list[tuple[str, str | None]] = []
    whole = one_block and (not ascii_only or text.isascii())
    if whole and len(words) <= EXACT_WORDS:
        bases.append((text, None))
    for n in (*RANGE_WORDS, len(words)):
        a, b = min(n, len(first)), min(n, len(last))
        if one_block and a + b > len(words):
            continue
        base = (page[start : first[a - 1][1]], page[last[-b][0] : end])
        if base not in bases:
            bases.append(base)
    if whole and len(words) > EXACT_WORDS:
        bases.append((text, None))
    prefixes, suffixes = _context(page[:start], before=True), _context(page[end:], before=False)
    if ascii_only:
        prefixes, suffixes = (
            [p for p in prefixes if p.isascii()],
            [x for x in suffixes if x.isascii()],
        )
    contexts = [(None, None)] + [(p, None) for p in prefixes] + [(None, s) for s in suffixes]
    contexts += list(zip(prefixes, suffixes, strict=False))
    for head, tail in bases:
        for prefix, suffix in contexts:
            directive = Directive(head, tail, prefix, suffix)
            if resolve(page, directive) == (start, end):
                return directive
    return None


def resolve(page: str, d: Directive) -> tuple[int, int] | None:
    """Where a browser would find `d` on `page`: the spec's algorithm on rendered text."""
    folded = _folded(page)
    pos = 0
    while pos < len(page):
        must_end = d.end is not None or d.suffix is None
        if d.prefix:
            p = _find(page, folded, d.prefix, pos, True, False, False)
            if p is None:
                return None
            pos = p + 1
            begin = _skip_space(page, p + len(d.prefix))
            if begin >= len(page):
                return None
            s = _find(page, folded, d.start, begin, False, must_end, True)
            if s is None:
                continue
        else:
            s = _find(page, folded, d.start, pos, True, must_end, False)
            if s is None:
                return None
            pos = s + 1
        e = search = s + len(d.start)
        while search < len(page) or (d.end is None and search == len(page)):
            if d.end:
                x = _find(page, folded, d.end, search, True, d.suffix is None, False)
                if x is None:
                    return None
                e = x + len(d.end)
            if d.suffix is None:
                return s, e
            after = _skip_space(page, e)
            if _find(page, folded, d.suffix, after, False, True, True) is not None:
                return s, e
            if d.end is None:
                break
            search = e
        else:
            return None
    return None


# -- matching ------------------------------------------------------------------------------------


def _find(page, folded, term, pos, word_start, word_end, at_start) -> int | None:
    """The first match of `term` from `pos` within one block (a line), at word boundaries."""
    wanted = _fold(term)
    i = folded.find(wanted, pos)
    while i >= 0:
        if at_start and i != pos:
            return None
        if (not word_start or _boundary(page, i)) and (
            not word_end or _boundary(page, i + len(wanted))
        ):
            return i
        if at_start:
            return None
        i = folded.find(wanted, i + 1)
    return None


def _boundary(text: str, i: int) -> bool:
    """A word boundary (simplified UAX #29: between two word characters there is none)."""
    return i <= 0 or i >= len(text) or not (_word_char(text[i - 1]) and _word_char(text[i]))


def _word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def _skip_space(page: str, i: int) -> int:
    while i < len(page) and page[i] in " \n":
        i += 1
    return i


def _context(text: str, before: bool) -> list[str]:
    """1..CONTEXT_WORDS words next to a quote, from the one block they sit in."""
    text = text.rstrip(" ") if before else text.lstrip(" ")
    if before:
        block = text.rsplit("\n", 1)[-1] if text.strip() else ""
        if not block:  # the quote starts a block: the context is the end of the previous one
            block = text.rstrip("\n").rsplit("\n", 1)[-1]
        words = block.split(" ")
        return [" ".join(words[-n:]) for n in range(1, min(CONTEXT_WORDS, len(words)) + 1)]
    block = text.split("\n", 1)[0] if text.strip() else ""
    if not block:
        block = text.lstrip("\n").split("\n", 1)[0]
    words = block.split(" ")
    return [" ".join(words[:n]) for n in range(1, min(CONTEXT_WORDS, len(words)) + 1) if block]


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _collapse(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


@lru_cache(maxsize=16)
def _folded(page: str) -> str:
    return _fold(page)  # a page is folded once, not once per directive tried


def _fold(text: str) -> str:
    """Case and accents removed, length kept: the browser compares at the 'primary' level."""
    if text.isascii():
        return text.lower()
    return "".join(map(_fold_char, text))


@lru_cache(maxsize=4096)
def _fold_char(c: str) -> str:
    base = unicodedata.normalize("NFD", c)[0].lower()
    return base if len(base) == 1 else c


def _encode(term: str | None) -> str:
    """Percent-encode a term: everything but letters, digits and `._~`; `-`, `,`, `&` too."""
    return quote(_collapse(term or ""), safe="").replace("-", "%2D")
