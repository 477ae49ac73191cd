"""PDF, DOCX and HTML: bytes to text parts and a title, within limits on the work.

Run in the sandbox through `loaders._extract`; `loaders` is the public face.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile

from index.errors import DocumentError

log = logging.getLogger(__name__)

DOCX_MAX_UNZIPPED = 50_000_000  # bytes, all entries together
DOCX_MAX_RATIO = 100  # uncompressed / compressed
DOCX_RATIO_FLOOR = 1_000_000  # small archives may compress well without being a threat
DOCX_MAX_ENTRIES = 10_000
MAX_PDF_PAGES = 2_000  # a longer PDF is refused, not cut short: a missing part would go unnoticed
MAX_TEXT = 10_000_000  # characters from one PDF, DOCX or HTML file; 2,000 dense pages hold 7 M

_HTML_DROP = {"script", "style", "nav", "noscript", "template", "head"}
_HTML_BLOCKS = {
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog",
    "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3",
    "h4", "h5", "h6", "header", "hr", "html", "li", "main", "ol", "p", "section", "summary",
    "table", "tbody", "tfoot", "thead", "tr", "ul",
}  # fmt: skip
_HTML_CELLS = {"td", "th"}
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")  # HTML's own whitespace; a no-break space is text
_BREAK = "\x00"  # stands for <br> while whitespace is collapsed; NULs were rejected already


def check_size(name: str, chars: int) -> None:
    """Refuse text of more than MAX_TEXT characters."""
    if chars > MAX_TEXT:
        raise DocumentError(f"{name} has more than {MAX_TEXT:,} characters of text.")


def size_text(n: int) -> str:
    """A byte count as people read it: 1.5 MB, 12 KB, 900 bytes."""
    for unit, scale in (("MB", 1_000_000), ("KB", 1_000)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


# -- extractors: each returns (parts, title found in the document or None) ----------------------


def read_pdf(name: str, data: bytes) -> tuple[list[str], str | None]:
    """Each page's text and the metadata title; refuse encrypted, long or image-only PDFs."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    try:
        reader = PdfReader(io.BytesIO(data))
        # owner-password-only PDFs open with an empty password, like in any viewer
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(
                f"{name} is encrypted (password-protected); send an unencrypted copy."
            )
        if len(reader.pages) > MAX_PDF_PAGES:
            raise DocumentError(
                f"{name} has {len(reader.pages):,} pages; at most {MAX_PDF_PAGES:,} can be read, "
                "so split it into smaller files."
            )
        parts, size = [], 0
        for page in reader.pages:  # the text cap is checked as it grows: see bench/hostile_files
            parts.append(page.extract_text() or "")
            size += len(parts[-1])
            check_size(name, size)
        found = _pdf_title(reader)
    except DocumentError:
        raise
    except DependencyError as err:  # AES needs the optional `cryptography` package
        raise DocumentError(
            f"{name} is encrypted with a method this bot cannot open; send an unencrypted copy."
        ) from err
    except Exception as err:  # pypdf raises many types on damaged files
        log.debug("pypdf failed on %s", name, exc_info=True)
        raise DocumentError(f"{name} could not be read as a PDF; it may be damaged.") from err
    if not any(p.strip() for p in parts):
        raise DocumentError(
            f"{name} has no extractable text (it may be scanned images); "
            "send a PDF with a text layer."
        )
    return parts, found


def _pdf_title(reader) -> str | None:
    try:
        meta = reader.metadata
        return str(meta.title) if meta is not None and meta.title else None
    except Exception:  # a damaged info dictionary should not cost us the text
        log.debug("unreadable PDF metadata", exc_info=True)
        return None


def read_docx(name: str, data: bytes) -> tuple[list[str], str | None]:
    """The paragraphs in order and the core title (else the first heading); refuse zip bombs."""
    import docx

    _docx_bomb(name, data)
    try:
        document = docx.Document(io.BytesIO(data))
        parts: list[str] = []
        heading = _docx_blocks(document, parts)
        title = document.core_properties.title
    except Exception as err:  # python-docx, lxml and zipfile raise many types on damaged files
        log.debug("python-docx failed on %s", name, exc_info=True)
        raise DocumentError(f"{name} could not be read as a DOCX file.") from err
    return parts, (title if title and title.strip() else heading)


def _docx_bomb(name: str, data: bytes) -> None:
    """Inspect the archive's declared sizes (zipfile never inflates past them) before parsing."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as err:
        raise DocumentError(f"{name} could not be read as a DOCX file.") from err
    unzipped = sum(e.file_size for e in entries)
    zipped = sum(e.compress_size for e in entries)
    if (
        len(entries) > DOCX_MAX_ENTRIES
        or unzipped > DOCX_MAX_UNZIPPED
        or (unzipped > DOCX_RATIO_FLOOR and unzipped > DOCX_MAX_RATIO * max(zipped, 1))
    ):
        raise DocumentError(
            f"{name} looks like a zip bomb ({len(entries)} entries, {size_text(unzipped)} "
            f"uncompressed from {size_text(zipped)}); it was not opened."
        )


def _docx_blocks(container, parts: list[str]) -> str | None:
    """Append each non-empty paragraph (table cells included) in order; return the first heading."""
    from docx.table import Table

    heading = None
    for block in container.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                seen = set()
                for cell in row.cells:
                    if id(cell._tc) not in seen:  # a merged cell is returned once per column
                        seen.add(id(cell._tc))
                        found = _docx_blocks(cell, parts)
                        heading = found if heading is None else heading
        elif block.text.strip():
            parts.append(block.text)
            style = block.style.name if block.style is not None else ""
            if heading is None and (style == "Title" or style.startswith("Heading")):
                heading = block.text
    return heading


def read_html(data: bytes) -> tuple[list[str], str | None]:
    """The visible text, one paragraph a block, and the <title> (else the first <h1>)."""
    from bs4 import BeautifulSoup, NavigableString, Tag
    from bs4.element import PreformattedString

    try:
        markup: str | bytes = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        markup = data  # let BeautifulSoup follow the declared charset
    soup = BeautifulSoup(markup, "html.parser")
    found = soup.title.get_text() if soup.title else None
    if not (found and found.strip()):
        h1 = soup.find("h1")
        found = h1.get_text() if h1 else None

    blocks: list[str] = []
    current: list[str] = []

    def flush() -> None:
        joined = _HTML_SPACE.sub(" ", "".join(current))
        lines = [line.strip(" ") for line in joined.split(_BREAK)]
        if any(lines):
            blocks.append("\n".join(lines).strip("\n"))
        current.clear()

    stack: list[tuple[object, bool]] = [(soup, False)]  # iterative: deep nesting is no problem
    while stack:
        node, leaving = stack.pop()
        if isinstance(node, NavigableString):
            if not isinstance(node, PreformattedString):  # comments, doctype, CDATA...
                current.append(str(node))
        elif isinstance(node, Tag):
            name = node.name.lower()
            if leaving:
                if name in _HTML_BLOCKS:
                    flush()
                elif name in _HTML_CELLS:
                    current.append(" ")
            elif name == "br":
                current.append(_BREAK)
            elif name == "pre":
                flush()
                blocks.append(node.get_text())  # whitespace is meaningful here
            elif name not in _HTML_DROP:
                if name in _HTML_BLOCKS:
                    flush()
                elif name in _HTML_CELLS:
                    current.append(" ")
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(node.contents))
    flush()
    return ["\n\n".join(b for b in blocks if b.strip())], found
