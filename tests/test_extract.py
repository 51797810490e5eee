"""File extraction: text encodings, PDFs, and clear errors for what cannot be read."""

import pytest

from retrieval.extract import InvalidFile, UnsupportedFile, extract_text
from tests.files import make_pdf


def test_utf8_text_and_markdown():
    assert extract_text("a.txt", "héllo wörld".encode()) == "héllo wörld"
    assert extract_text("notes.MD", b"# Title\n\nbody") == "# Title\n\nbody"


def test_byte_order_marks_pick_the_encoding():
    assert extract_text("a.txt", "\ufeffbom".encode("utf-8")) == "bom"
    assert extract_text("a.txt", "utf16 text".encode("utf-16")) == "utf16 text"


def test_pdf_pages_are_extracted_in_order():
    text = extract_text("paper.pdf", make_pdf("First page about whales", "Second page about ships"))
    assert "whales" in text and "ships" in text
    assert text.index("whales") < text.index("ships")


@pytest.mark.parametrize(
    "name,data,message",
    [
        ("a.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("a.txt", b"caf\xe9 latin-1", "not UTF-8"),
        ("a.pdf", b"%PDF-1.4 this is not really a pdf", "not a readable PDF"),
        ("a.pdf", b"plain text pretending", "not a readable PDF"),
    ],
)
def test_unreadable_files_say_why(name, data, message):
    with pytest.raises(InvalidFile, match=message):
        extract_text(name, data)


def test_unsupported_types_list_the_supported_ones():
    with pytest.raises(UnsupportedFile, match=r"\.docx.*supported: \.markdown, \.md, \.pdf, \.txt"):
        extract_text("report.docx", b"PK\x03\x04")
