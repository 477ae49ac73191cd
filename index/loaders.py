"""Find documents on disk and turn files (or uploaded bytes) into `Document` records."""

from __future__ import annotations

import codecs
import dataclasses
import os
import unicodedata
from pathlib import Path, PurePath

from index import sandbox
from index.errors import DocumentError
from index.formats import check_size, read_docx, read_html, read_pdf, size_text
from index.records import Document

SUPPORTED: frozenset[str] = frozenset({".txt", ".md", ".html", ".htm", ".pdf", ".docx"})

MAX_NAME = 100  # characters in an uploaded file name
MAX_NAME_BYTES = 240  # as UTF-8: leaves room for the ".part" temporary name under NAME_MAX (255)
MAX_TITLE = 120

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
        title = clipped_line(found or "") or _first_line(text)
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
            f"{name} is {len(data):,} bytes ({size_text(len(data))}); "
            f"the limit is {max_bytes:,} bytes ({size_text(max_bytes)})."
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


def _utf8(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # drops one leading BOM, if any
    except UnicodeDecodeError as err:
        raise DocumentError(
            f"{name} is not UTF-8 text (byte {err.start} is invalid); save it as UTF-8."
        ) from err


# -- what runs in the sandbox (the parsers are in index.formats) --------------------------------


def _extract(name: str, ext: str, data: bytes) -> tuple[list[str], str | None]:
    """Parse a PDF, DOCX or HTML file: what load_bytes runs in the sandbox."""
    if ext == ".pdf":
        parts, found = read_pdf(name, data)
    elif ext == ".docx":
        parts, found = read_docx(name, data)
    else:
        parts, found = read_html(data)
    check_size(name, sum(map(len, parts)))  # bounds what comes back, and all the work after
    return parts, found


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
            return clipped_line(line)
    return ""


def clipped_line(text: str, limit: int = MAX_TITLE) -> str:
    """Whitespace collapsed, cut to `limit` characters (a title, by default)."""
    text = " ".join(text[: limit * 8].split())  # bounded work on a 10 MB line
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _shown(name: str) -> str:
    """A file name as it may appear in a message: no control characters, not too long."""
    bad = ("Cc", "Cf", "Cs")
    clean = "".join("\ufffd" if unicodedata.category(c) in bad else c for c in name[:61])
    return clean if len(clean) <= 60 else clean[:59] + "…"
