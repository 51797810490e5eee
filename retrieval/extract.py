"""Turn uploaded files into text: .txt, .md and .pdf."""

from __future__ import annotations

import codecs
import io
import logging
from pathlib import PurePath

from pypdf import PdfReader
from pypdf.errors import PdfReadError

from retrieval.types import Document

log = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
DOCUMENT_SUFFIXES = TEXT_SUFFIXES | {".pdf"}


class UnsupportedFile(ValueError):
    """The file's type is not one we ingest (the API answers 415)."""


class InvalidFile(ValueError):
    """The file claims a supported type but cannot be read (the API answers 400)."""


def file_document(filename: str, data: bytes) -> Document:
    """An uploaded file as a document: its name is the id and the source, its stem the title."""
    return Document(text=extract_text(filename, data), id=filename, title=PurePath(filename).stem, source=filename)


def extract_text(filename: str, data: bytes) -> str:
    suffix = PurePath(filename).suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return decode_text(filename, data)
    if suffix == ".pdf":
        return pdf_text(filename, data)
    supported = ", ".join(sorted(DOCUMENT_SUFFIXES))
    raise UnsupportedFile(f"{filename}: unsupported file type {suffix or '(none)'}; supported: {supported}")


def decode_text(filename: str, data: bytes) -> str:
    # A BOM says which encoding it is; without one we only accept UTF-8 rather than guess.
    encoding = "utf-8"
    for bom, declared in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            encoding = declared
            break
    else:
        if b"\0" in data:
            raise InvalidFile(f"{filename}: looks like a binary file, not text")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        name = "UTF-16" if encoding == "utf-16" else "UTF-8"
        raise InvalidFile(f"{filename}: not {name} text ({error.reason} at byte {error.start})") from None


def pdf_text(filename: str, data: bytes) -> str:
    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
        pages = [] if encrypted else [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as error:
        raise InvalidFile(f"{filename}: not a readable PDF ({error})") from None
    if encrypted:
        raise InvalidFile(f"{filename}: the PDF is encrypted")
    return "\n\n".join(page.strip() for page in pages if page.strip())
