import io
import zipfile
from pathlib import Path

import docx
import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from bench.hostile_files import pdf_bomb, text_pdf
from index import formats, loaders
from index.errors import DocumentError
from index.loaders import SUPPORTED, check_upload, load_bytes, load_file, safe_filename, scan
from tests.conftest import STATEMENT

# -- fixtures built here, never checked in ------------------------------------------------------


def make_pdf(pages: list[str], title: str | None = None, password: str | None = None) -> bytes:
    """A real PDF: one Helvetica text line per page ("" makes a page without text)."""
    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"),
        NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    }))  # fmt: skip
    for text in pages:
        page = writer.add_blank_page(612, 792)
        fonts = DictionaryObject({NameObject("/F1"): font})
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
        if text:
            stream = DecodedStreamObject()
            stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1"))
            page[NameObject("/Contents")] = writer._add_object(stream)
    if title is not None:
        writer.add_metadata({"/Title": title})
    if password is not None:
        writer.encrypt(user_password=password, owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(build) -> bytes:
    document = docx.Document()
    build(document)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def error(filename: str, data: bytes) -> str:
    with pytest.raises(DocumentError) as info:
        load_bytes(filename, data, filename)
    return str(info.value)


# -- the shipped statement and plain text -------------------------------------------------------


def test_shipped_statement_loads_verbatim():
    doc = load_file(STATEMENT, "statement.txt")
    assert doc.title == "Jeremy Corbyn will run as an independent in Islington North"
    assert doc.text == STATEMENT.read_text(encoding="utf-8")
    assert doc.doc_id == "statement.txt" and doc.source == str(STATEMENT) and doc.pages == ()


def test_text_is_kept_exactly_except_newlines_and_trailing_whitespace():
    raw = "\n  First line\u00a0here  \r\n\r\nHe said \u201cno\u201d \u2014 twice.\rEnd.  \n\n \t\n"
    doc = load_bytes("notes.txt", raw.encode("utf-8"), "notes.txt")
    assert doc.text == "\n  First line\u00a0here  \n\nHe said \u201cno\u201d \u2014 twice.\nEnd."
    assert doc.title == "First line here"  # first non-empty line, stripped
    assert doc.source == "notes.txt"


def test_utf8_bom_is_dropped():
    doc = load_bytes("bom.txt", "\ufeffCaf\u00e9 society\n".encode(), "bom.txt")
    assert doc.text == "Caf\u00e9 society" and doc.title == "Caf\u00e9 society"


def test_explicit_title_wins_and_a_blank_one_is_ignored():
    data = b"# Heading\n\nBody."
    assert load_bytes("a.md", data, "a.md", title="  Mine ").title == "Mine"
    assert load_bytes("a.md", data, "a.md", title="  ").title == "Heading"


def test_long_first_line_title_is_cut():
    doc = load_bytes("long.txt", ("word " * 100).encode(), "long.txt")
    assert len(doc.title) == 120 and doc.title.endswith("…")
    assert doc.title.startswith("word word")


def test_ten_megabyte_single_line_loads():
    data = b"x" * 5_000_000 + " \u201cquoted\u201d ".encode() + b"y" * 5_000_000
    doc = load_bytes("big.txt", data, "big.txt")  # quadratic work would hang here
    assert doc.text == data.decode() and len(doc.title) <= 120


def test_latin1_is_refused_with_the_bad_byte():
    message = error("latin.txt", "Caf\u00e9 cr\u00e8me".encode("latin-1"))
    assert "latin.txt is not UTF-8 text (byte 3 is invalid)" in message


def test_utf16_is_refused():
    message = error("wide.md", "hello".encode("utf-16"))
    assert "wide.md is not UTF-8 text (it is UTF-16)" in message


def test_binary_is_refused():
    assert "blob.txt looks like a binary file" in error("blob.txt", b"abc\x00\x01\x02def")


@pytest.mark.parametrize("ext", [".txt", ".md", ".html", ".htm"])
def test_empty_and_blank_documents_are_refused(ext: str):
    assert error(f"e{ext}", b"") == f"e{ext} is empty."
    assert error(f"w{ext}", b" \n\t\r\n  ") == f"w{ext} has no text."


@pytest.mark.parametrize(
    ("filename", "data", "looks"),
    [
        ("a.txt", b"%PDF-1.7 rest", "a PDF file"),
        ("a.md", b"PK\x03\x04rest", "a ZIP archive"),
        ("a.html", b"\x89PNG\r\n\x1a\nrest", "a PNG image"),
        ("a.pdf", b"just some text", None),
        ("a.docx", b"just some text", None),
        ("a.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1rest", "an old Office file"),
        ("a.pdf", b"PK\x03\x04rest", "a ZIP archive"),
    ],
)
def test_content_must_match_the_extension(filename: str, data: bytes, looks: str | None):
    message = error(filename, data)
    ext = Path(filename).suffix
    assert f"The content of {filename} does not match its {ext} extension" in message
    assert (looks in message) if looks else "looks like" not in message


def test_unsupported_extension_is_refused():
    assert "a.exe is not a supported file type" in error("a.exe", b"MZ")


def test_uppercase_extension_is_accepted():
    assert load_bytes("READ.TXT", b"Hi", "READ.TXT").text == "Hi"


# -- Markdown and HTML ----------------------------------------------------------------------------


def test_markdown_keeps_text_and_takes_the_first_h1():
    raw = "Intro\n\n```\n# not a title\n```\n\n#No space is no heading\n# The Title ##\n\nBody *x*"
    doc = load_bytes("a.md", raw.encode(), "a.md")
    assert doc.text == raw and doc.title == "The Title"


def test_markdown_without_h1_falls_back_to_the_first_line():
    assert load_bytes("a.md", b"\n## Sub\n\nText", "a.md").title == "## Sub"


def test_html_blocks_become_paragraphs_without_scripts_styles_or_nav():
    html = (
        "<!DOCTYPE html><html><head><title> The\n Page </title><style>p{}</style>"
        "<script>var x = 'secret';</script></head><body><nav><a href='/'>Home</a></nav>"
        "<h1>Head</h1><p>One <b>bold</b>\n  word&nbsp;here &ldquo;q&rdquo;.</p><!-- hidden -->"
        "<div>Line<br>break</div><ul><li>a</li><li>b</li></ul>"
        "<table><tr><td>c1</td><td>c2</td></tr></table><script>alert(1)</script></body></html>"
    )
    doc = load_bytes("p.html", html.encode(), "p.html")
    assert doc.title == "The Page"
    assert doc.text == (
        "Head\n\nOne bold word\u00a0here \u201cq\u201d.\n\nLine\nbreak\n\na\n\nb\n\nc1 c2"
    )
    assert "secret" not in doc.text and "Home" not in doc.text and "hidden" not in doc.text


def test_html_title_falls_back_to_h1_and_honours_the_declared_charset():
    html = '<meta charset="iso-8859-1"><h1>Caf\u00e9</h1><p>Cr\u00e8me</p>'.encode("latin-1")
    doc = load_bytes("p.htm", html, "p.htm")
    assert doc.title == "Caf\u00e9" and doc.text == "Caf\u00e9\n\nCr\u00e8me"


def test_html_with_only_scripts_has_no_text():
    assert error("s.html", b"<script>x()</script><style>p{}</style>") == "s.html has no text."


def test_deeply_nested_html_loads():
    html = "<div>" * 5000 + "deep" + "</div>" * 5000
    assert load_bytes("d.html", html.encode(), "d.html").text == "deep"


# -- PDF ------------------------------------------------------------------------------------------


def test_pdf_pages_are_joined_and_their_offsets_recorded():
    doc = load_bytes("r.pdf", make_pdf(["First page", "Second page"], title="Report"), "r.pdf")
    assert doc.text == "First page\n\nSecond page"
    assert doc.pages == (0, 12)
    assert doc.text[doc.pages[1] :].startswith("Second page")
    assert doc.title == "Report"


def test_pdf_without_metadata_title_uses_the_first_line():
    doc = load_bytes("r.pdf", make_pdf(["Alpha", "", "Gamma"], title=""), "r.pdf")
    assert doc.title == "Alpha"
    assert doc.text == "Alpha\n\n\n\nGamma" and doc.pages == (0, 7, 9)


def test_pdf_with_an_empty_user_password_opens():
    assert load_bytes("o.pdf", make_pdf(["Open me"], password=""), "o.pdf").text == "Open me"


def test_encrypted_pdf_is_refused():
    message = error("secret.pdf", make_pdf(["Hidden"], password="pw"))
    assert "secret.pdf is encrypted" in message


@pytest.mark.parametrize("cut", [100, 400])
def test_corrupt_pdf_is_refused(cut: int):
    data = make_pdf(["Some text"])[:cut]
    assert "broken.pdf could not be read as a PDF" in error("broken.pdf", data)


def test_pdf_with_too_many_pages_is_refused():
    data = pdf_bomb(pages=formats.MAX_PDF_PAGES + 1, repeats=1, word=b"x")
    assert error("long.pdf", data) == (
        "long.pdf has 2,001 pages; at most 2,000 can be read, so split it into smaller files."
    )


def test_text_past_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch):
    """Checked inside the extractors (they run in the sandbox; called here in-process)."""
    monkeypatch.setattr(formats, "MAX_TEXT", 1000)
    with pytest.raises(DocumentError, match=r"^a\.pdf has more than 1,000 characters of text\.$"):
        loaders._extract("a.pdf", ".pdf", text_pdf(pages=5, lines=5))
    with pytest.raises(DocumentError, match="more than 1,000 characters"):
        loaders._extract("a.html", ".html", b"<p>" + b"word " * 300)
    assert loaders._extract("a.pdf", ".pdf", text_pdf(pages=1, lines=5))[0]


def test_pdf_without_text_is_refused():
    message = error("scan.pdf", make_pdf(["", ""]))
    assert "scan.pdf has no extractable text" in message


# -- DOCX -----------------------------------------------------------------------------------------


def test_docx_paragraphs_tables_and_heading_title():
    def build(d):
        d.add_paragraph("Preface \u201cquoted\u201d")
        d.add_heading("Main Heading", level=1)
        d.add_paragraph("")
        d.add_paragraph("Body text.")
        table = d.add_table(rows=1, cols=2)
        table.cell(0, 0).text, table.cell(0, 1).text = "cell A", "cell B"
        d.add_paragraph("After.")

    doc = load_bytes("w.docx", make_docx(build), "w.docx")
    paragraphs = ["Preface \u201cquoted\u201d", "Main Heading", "Body text.", "cell A", "cell B"]
    assert doc.text == "\n\n".join([*paragraphs, "After."])
    assert doc.title == "Main Heading" and doc.pages == ()


def test_docx_core_title_wins_and_first_line_is_the_last_resort():
    def titled(d):
        d.core_properties.title = "Core Title"
        d.add_heading("Heading", level=1)

    assert load_bytes("w.docx", make_docx(titled), "w.docx").title == "Core Title"
    plain = make_docx(lambda d: d.add_paragraph("Just a line"))
    assert load_bytes("w.docx", plain, "w.docx").title == "Just a line"


def test_empty_docx_has_no_text():
    blank = make_docx(lambda d: d.add_paragraph("  "))
    assert error("blank.docx", blank) == "blank.docx has no text."


def zip_of(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("size", "method"),
    [
        (2_000_000, zipfile.ZIP_DEFLATED),  # small on the wire, 1000x larger unpacked
        (51_000_000, zipfile.ZIP_STORED),  # no ratio to speak of, but over the total limit
    ],
)
def test_zip_bomb_docx_is_refused(size: int, method: int):
    bomb = zip_of({"[Content_Types].xml": b"<Types/>", "word/document.xml": bytes(size)}, method)
    assert "bomb.docx looks like a zip bomb" in error("bomb.docx", bomb)


def test_docx_that_is_not_a_zip_or_not_word_is_refused():
    assert "x.docx could not be read as a DOCX" in error("x.docx", b"PK\x03\x04 not really")
    other = zip_of({"hello.txt": b"not a word document"})
    assert "y.docx could not be read as a DOCX" in error("y.docx", other)


# -- uploads --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["r.pdf", "Notes 2024.md", "caf\u00e9.DOCX", "a" * 97 + ".md"])
def test_safe_filename_returns_good_names_unchanged(name: str):
    assert safe_filename(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "has no name"),
        ("../etc/passwd.txt", "contains / or \\"),
        ("dir/a.txt", "contains / or \\"),
        ("dir\\a.txt", "contains / or \\"),
        ("a..txt", "contains '..'"),
        (".hidden.txt", "starts with a dot"),
        ("bad\nname.txt", "contains control characters"),
        ("rtl\u202etxt.exe", "contains control characters"),
        ("a" * 97 + ".txt", "is too long"),
        ("\u00e9" * 124 + ".txt", "is too long"),  # under 130 characters, over 240 bytes
        ("script.exe", "is not a supported file type"),
        ("noext", "is not a supported file type"),
    ],
)
def test_safe_filename_refuses_unsafe_names(name: str, reason: str):
    with pytest.raises(DocumentError) as info:
        safe_filename(name)
    message = str(info.value)
    assert reason in message and message.endswith(".")
    assert "\n" not in message and "\u202e" not in message
    if name and "\n" not in name and "\u202e" not in name and len(name) <= 60:
        assert name in message


def test_check_upload_limits_size_and_refuses_empty_files():
    check_upload("ok.txt", b"x" * 10, max_bytes=10)
    with pytest.raises(DocumentError) as info:
        check_upload("big.pdf", b"x" * 5_000_001, max_bytes=5_000_000)
    assert str(info.value) == (
        "big.pdf is 5,000,001 bytes (5 MB); the limit is 5,000,000 bytes (5 MB)."
    )
    with pytest.raises(DocumentError, match=r"^empty\.md is empty\.$"):
        check_upload("empty.md", b"", max_bytes=100)


# -- files on disk --------------------------------------------------------------------------------


def test_scan_finds_supported_visible_files_recursively_in_order(tmp_path: Path):
    for rel in [
        "b.txt", "a/z.md", "a/y.PDF", "c.docx", "page.htm", "skip.exe", ".hidden.txt",
        ".git/x.txt", "a/.cache/y.txt", "uploads/.u.txt.part",
    ]:  # fmt: skip
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (tmp_path / "dir.txt").mkdir()  # a folder with a supported suffix is not a file
    found = scan(tmp_path)
    assert [rel for _, rel in found] == ["a/y.PDF", "a/z.md", "b.txt", "c.docx", "page.htm"]
    assert all(path == tmp_path / rel for path, rel in found)


def test_scan_of_an_empty_or_missing_folder_is_empty(tmp_path: Path):
    assert scan(tmp_path) == [] and scan(tmp_path / "missing") == []


def test_load_file_reads_from_disk_and_reports_missing_files(tmp_path: Path):
    path = tmp_path / "w.docx"
    path.write_bytes(make_docx(lambda d: d.add_paragraph("On disk")))
    doc = load_file(path, "w.docx", title="Given")
    assert (doc.text, doc.title, doc.doc_id) == ("On disk", "Given", "w.docx")
    assert doc.source == str(path)
    with pytest.raises(DocumentError, match=r"^gone\.txt could not be read \(.+\)\.$"):
        load_file(tmp_path / "gone.txt", "gone.txt")


def test_supported_extensions():
    assert SUPPORTED == frozenset({".txt", ".md", ".html", ".htm", ".pdf", ".docx"})
