"""Ingesting and deleting documents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, Query, UploadFile

from api.errors import error_responses
from api.metrics import observe_stages
from api.routes.deps import CollectionForm, CollectionQuery, get_library, get_text_limits
from api.schemas import DeletedOut, DocumentsIn, IngestOut
from retrieval import Document, IngestResult, Library
from retrieval.extract import file_document
from retrieval.validation import MAX_ID_BYTES, TextLimits, check_document_id

router = APIRouter(prefix="/v1", tags=["documents"])

DOC_ID_DESCRIPTION = "The document's id, as ingested (of a picture or recording: its id)."


def ingest_response(result: IngestResult) -> IngestOut:
    observe_stages("ingest", result.timings_ms)
    return IngestOut(ids=result.ids, chunks=result.chunks, embedded=result.embedded, reused=result.reused, timings_ms=result.timings_ms)


@router.post("/documents", response_model=IngestOut, summary="Ingest JSON documents", responses=error_responses(400, 502))
def ingest_documents(
    body: DocumentsIn, library: Library = Depends(get_library), limits: TextLimits = Depends(get_text_limits)
) -> IngestOut:
    """Chunk, embed and store documents. A document with an existing id replaces the old one."""
    limits.check_count(len(body.documents))
    limits.check_texts([(f"documents[{index}]", document.text) for index, document in enumerate(body.documents)])
    documents = [Document(text=d.text, id=d.id, title=d.title, source=d.source, metadata=d.metadata) for d in body.documents]
    return ingest_response(library.ingest_documents(body.collection, documents))


@router.post(
    "/documents/upload", response_model=IngestOut, summary="Ingest .txt, .md and .pdf files", responses=error_responses(400, 415, 502)
)
def upload_documents(
    files: Annotated[list[UploadFile], File(description="One or more .txt, .md or .pdf files; at most PRISM_MAX_DOCUMENTS_PER_REQUEST.")],
    collection: CollectionForm = "default",
    library: Library = Depends(get_library),
    limits: TextLimits = Depends(get_text_limits),
) -> IngestOut:
    """Each file becomes a document whose id and `source` are its file name (so the name follows the
    document id grammar); uploading it again replaces it. Each file's text, once extracted, is held
    to PRISM_MAX_DOCUMENT_CHARS, and all of them to PRISM_MAX_REQUEST_TEXT_CHARS."""
    limits.check_count(len(files), "files")
    documents = []
    for index, upload in enumerate(files):
        name = upload.filename or "upload"
        check_document_id(name, f"files[{index}] (a file's name is its document id)")
        document = file_document(name, upload.file.read())
        limits.check_text(f"files[{index}] ({name})", document.text)  # before the next file is extracted
        documents.append(document)
    limits.check_texts([(f"files[{index}]", document.text) for index, document in enumerate(documents)])
    return ingest_response(library.ingest_documents(collection, documents))


@router.delete(
    "/documents/{doc_id:path}", response_model=DeletedOut, summary="Delete a document and all its chunks", responses=error_responses(400, 404)
)
def delete_document(
    doc_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_BYTES, description=f"{DOC_ID_DESCRIPTION} Percent-encode it as one path segment ('/' may stay).")],
    collection: CollectionQuery = "default",
    library: Library = Depends(get_library),
) -> DeletedOut:
    """Every document id works here, `/` included (`/v1/documents/notes/owls.md`), when the rest is
    percent-encoded (`?` as `%3F`, `#` as `%23`, `%` as `%25`). DELETE /v1/documents?doc_id= is the same."""
    return DeletedOut(deleted=library.delete_document(collection, doc_id))


@router.delete("/documents", response_model=DeletedOut, summary="Delete a document, named in the query", responses=error_responses(400, 404))
def delete_document_by_query(
    doc_id: Annotated[str, Query(min_length=1, max_length=MAX_ID_BYTES, description=DOC_ID_DESCRIPTION)],
    collection: CollectionQuery = "default",
    library: Library = Depends(get_library),
) -> DeletedOut:
    """The same as DELETE /v1/documents/{doc_id}, for clients that would rather not encode a path."""
    return DeletedOut(deleted=library.delete_document(collection, doc_id))
