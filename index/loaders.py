"""Find documents on disk and turn files (or uploaded bytes) into `Document` records."""

from __future__ import annotations

import codecs
import dataclasses
import io
import logging
import os
import re
import unicodedata
import zipfile
from pathlib import Path, PurePath

from index import sandbox
from index.errors import DocumentError
from index.records import Document

log = logging.getLogger(__name__)

SUPPORTED: frozenset[str] = frozenset({".txt", ".md", ".html", ".htm", ".pdf", ".docx"})

MAX_NAME = 100  # characters in an uploaded file name
MAX_NAME_BYTES = 240  # as UTF-8: leaves room for the ".part" temporary name under NAME_MAX (255)
MAX_TITLE = 120
DOCX_MAX_UNZIPPED = 50_000_000  # bytes, all entries together
DOCX_MAX_RATIO = 100  # uncompressed / compressed
DOCX_RATIO_FLOOR = 1_000_000  # small archives may compress well without being a threat
DOCX_MAX_ENTRIES = 10_000
MAX_PDF_PAGES = 2_000  # a longer PDF is refused, not cut short: a missing part would go unnoticed
MAX_TEXT = 10_000_000  # characters from one PDF, DOCX or HTML file; 2,000 dense pages hold 7 M

_TEXT_TYPES = {".txt", ".md", ".html", ".htm"}
_KINDS = ", ".join(sorted(SUPPORTED))
# Signatures of formats people are likely to send by mistake, checked against the extension.
_MAGIC = (
    (b"%PDF-", "a PDF file"),
    (b"PK\x03\x04", "a ZIP archive, such as a .docx file"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office file (such as a .doc file)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
)
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


def scan(root: Path) -> list[tuple[Path, str]]:
    """Every supported, non-hidden file under `root` with its doc_id (posix path), sorted."""
    found = []
    for folder, dirs, files in os.walk(root):  # does not follow symlinked folders: no cycles
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(folder, name)
            if name.startswith(".") or path.suffix.lower() not in SUPPORTED or not path.is_file():
                continue
            found.append((path, path.relative_to(root).as_posix()))
    return sorted(found, key=lambda item: item[1])


def load_file(path: Path, doc_id: str, title: str | None = None) -> Document:
    """Read and extract one file from disk."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DocumentError(f"{_shown(path.name)} could not be read ({err.strerror}).") from err
    return dataclasses.replace(load_bytes(path.name, data, doc_id, title), source=str(path))


def load_bytes(filename: str, data: bytes, doc_id: str, title: str | None = None) -> Document:
    """Extract a document from the bytes of a file named `filename`; raise DocumentError."""
    name = _shown(filename)
    ext = PurePath(filename).suffix.lower()
    if ext not in SUPPORTED:
        raise DocumentError(f"{name} is not a supported file type; use one of {_KINDS}.")
    if not data:
        raise DocumentError(f"{name} is empty.")
    _check_content(name, ext, data)
    if ext == ".md":  # plain text is only decoded, here; parsers run in the sandbox
        text = _utf8(name, data)
        parts, found = [text], _markdown_title(_newlines(text))
    elif ext == ".txt":
        parts, found = [_utf8(name, data)], None
    else:
        parts, found = sandbox.run(_extract, name, ext, data, name=name)
    text, pages = _join(parts)
    if not text:
        raise DocumentError(f"{name} has no text.")
    if title is None or not title.strip():
        title = _one_line(found or "") or _first_line(text)
    else:
        title = title.strip()
    return Document(doc_id, title, text, filename, pages if ext == ".pdf" else ())


def safe_filename(name: str) -> str:
    """Return an uploaded file name unchanged if it is safe to store as it is; else raise."""
    if not name or not name.strip():
        raise DocumentError("The file has no name; send it with a name such as notes.txt.")
    shown = _shown(name)
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in name):
        raise DocumentError(f"The file name {shown} contains control characters; rename it.")
    if len(name) > MAX_NAME or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise DocumentError(
            f"The file name {shown} is too long; use at most {MAX_NAME} characters."
        )
    if "/" in name or "\\" in name:
        raise DocumentError(f"The file name {shown} contains / or \\; send a plain file name.")
    if ".." in name:
        raise DocumentError(f"The file name {shown} contains '..'; rename it.")
    if name.startswith("."):
        raise DocumentError(f"The file name {shown} starts with a dot; rename it.")
    if PurePath(name).suffix.lower() not in SUPPORTED:
        raise DocumentError(f"{shown} is not a supported file type; use one of {_KINDS}.")
    return name


def check_upload(filename: str, data: bytes, max_bytes: int) -> None:
    """Refuse an upload that is over `max_bytes` or empty (its content is load_bytes's job)."""
    name = _shown(filename)
    if len(data) > max_bytes:
        raise DocumentError(
            f"{name} is {len(data):,} bytes ({_size(len(data))}); "
            f"the limit is {max_bytes:,} bytes ({_size(max_bytes)})."
        )
    if not data:
        raise DocumentError(f"{name} is empty.")


# -- checks -------------------------------------------------------------------------------------


def _check_content(name: str, ext: str, data: bytes) -> None:
    """Refuse content that does not match the extension, before any parser sees it."""
    looks = next((what for magic, what in _MAGIC if data.startswith(magic)), None)
    if ext == ".pdf":
        ok = b"%PDF-" in data[:1024]  # readers accept a header anywhere in the first 1 KiB
    elif ext == ".docx":
        ok = data.startswith(b"PK\x03\x04")
    else:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise DocumentError(f"{name} is not UTF-8 text (it is UTF-16); save it as UTF-8.")
        ok = looks is None
        if ok and b"\x00" in data:
            raise DocumentError(f"{name} looks like a binary file, not {ext} text.")
    if not ok:
        it = f" (it looks like {looks})" if looks else ""
        raise DocumentError(f"The content of {name} does not match its {ext} extension{it}.")


def _check_size(name: str, chars: int) -> None:
    if chars > MAX_TEXT:
        raise DocumentError(f"{name} has more than {MAX_TEXT:,} characters of text.")


def _utf8(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # drops one leading BOM, if any
    except UnicodeDecodeError as err:
        raise DocumentError(
            f"{name} is not UTF-8 text (byte {err.start} is invalid); save it as UTF-8."
        ) from err


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
            f"{name} looks like a zip bomb ({len(entries)} entries, {_size(unzipped)} "
            f"uncompressed from {_size(zipped)}); it was not opened."
        )


# -- extractors: each returns (parts, title found in the document or None) ----------------------


def _extract(name: str, ext: str, data: bytes) -> tuple[list[str], str | None]:
    """Parse a PDF, DOCX or HTML file: what load_bytes runs in the sandbox."""
    if ext == ".pdf":
        parts, found = _pdf(name, data)
    elif ext == ".docx":
        parts, found = _docx(name, data)
    else:
        parts, found = _html(data)
    _check_size(name, sum(map(len, parts)))  # bounds what comes back, and all the work after
    return parts, found


def _pdf(name: str, data: bytes) -> tuple[list[str], str | None]:
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
            _check_size(name, size)
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


def _docx(name: str, data: bytes) -> tuple[list[str], str | None]:
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


def _html(data: bytes) -> tuple[list[str], str | None]:
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


def _markdown_title(text: str) -> str | None:
    """The first ATX `# H1` outside code fences."""
    fence = None
    for line in _lines(text):
        stripped = line.lstrip(" ")
        if len(line) - len(stripped) > 3:
            continue
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
        elif fence is None and (stripped.startswith(("# ", "#\t")) or stripped == "#"):
            heading = stripped[1:].strip()
            if heading.endswith("#"):  # optional closing hashes: "# Title ##"
                bare = heading.rstrip("#")
                if not bare or bare[-1] in " \t":
                    heading = bare.strip()
            if heading:
                return heading
    return None


# -- small helpers -------------------------------------------------------------------------------


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _join(parts: list[str]) -> tuple[str, tuple[int, ...]]:
    """Join parts (pages) with a blank line; return the text and each part's start offset."""
    pieces, starts, pos = [], [], 0
    for part in parts:
        part = _newlines(part).rstrip()  # the separator replaces a page's trailing whitespace
        if pieces:
            pieces.append("\n\n")
            pos += 2
        starts.append(pos)
        pieces.append(part)
        pos += len(part)
    text = "".join(pieces).rstrip()
    return text, tuple(min(s, len(text)) for s in starts)


def _lines(text: str):
    pos = 0
    while pos <= len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        yield text[pos:end]
        pos = end + 1


def _first_line(text: str) -> str:
    for line in _lines(text):
        if line.strip():
            return _one_line(line)
    return ""


def _one_line(title: str) -> str:
    """Whitespace collapsed, cut to MAX_TITLE characters."""
    title = " ".join(title[: MAX_TITLE * 8].split())  # bounded work on a 10 MB line
    if len(title) > MAX_TITLE:
        title = title[: MAX_TITLE - 1].rstrip() + "…"
    return title


def _shown(name: str) -> str:
    """A file name as it may appear in a message: no control characters, not too long."""
    bad = ("Cc", "Cf", "Cs")
    clean = "".join("\ufffd" if unicodedata.category(c) in bad else c for c in name[:61])
    return clean if len(clean) <= 60 else clean[:59] + "…"


def _size(n: int) -> str:
    for unit, scale in (("MB", 1_000_000), ("KB", 1_000)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"
