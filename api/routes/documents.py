"""Ingesting and deleting documents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile

from api.metrics import observe_stages
from api.routes.deps import get_library
from api.schemas import DeletedOut, DocumentsIn, IngestOut
from retrieval import Document, IngestResult, Library, UploadedFile

router = APIRouter(prefix="/v1", tags=["documents"])


def ingest_response(result: IngestResult) -> IngestOut:
    observe_stages("ingest", result.timings_ms)
    return IngestOut(ids=result.ids, chunks=result.chunks, embedded=result.embedded, reused=result.reused, timings_ms=result.timings_ms)


@router.post("/documents", response_model=IngestOut, summary="Ingest JSON documents")
def ingest_documents(body: DocumentsIn, library: Library = Depends(get_library)) -> IngestOut:
    """Chunk, embed and store documents. A document with an existing id replaces the old one."""
    documents = [Document(text=d.text, id=d.id, title=d.title, source=d.source, metadata=d.metadata) for d in body.documents]
    return ingest_response(library.ingest_documents(body.collection, documents))


@router.post("/documents/upload", response_model=IngestOut, summary="Ingest .txt, .md and .pdf files")
def upload_documents(
    files: Annotated[list[UploadFile], File(description="One or more .txt, .md or .pdf files.")],
    collection: Annotated[str, Form()] = "default",
    library: Library = Depends(get_library),
) -> IngestOut:
    """Each file becomes a document whose id and `source` are its file name; uploading it again replaces it."""
    uploads = [UploadedFile(filename=f.filename or "upload", data=f.file.read()) for f in files]
    return ingest_response(library.ingest_files(collection, uploads))


@router.delete("/documents/{doc_id}", response_model=DeletedOut, summary="Delete a document and all its chunks")
def delete_document(doc_id: str, collection: Annotated[str, Query()] = "default", library: Library = Depends(get_library)) -> DeletedOut:
    return DeletedOut(deleted=library.delete_document(collection, doc_id))
