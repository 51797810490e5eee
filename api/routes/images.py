"""Ingesting pictures: multipart uploads or JSON with base64 data, on one route."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.errors import error_responses
from api.routes.deps import decode_base64, file_name, get_library, parse_json_object
from api.routes.documents import ingest_response
from api.schemas import COLLECTION_DESCRIPTION, COLLECTION_PATTERN, MAX_CAPTION_CHARS, METADATA_DESCRIPTION, ImagesIn, IngestOut, inline_schema
from retrieval import InvalidInput, Library
from retrieval.validation import check_collection_name, check_string

router = APIRouter(prefix="/v1", tags=["images"])

MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["files"],
    "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}, "description": "JPEG, PNG, WebP, GIF, BMP or TIFF pictures."},
        "caption": {
            "type": "array",
            "items": {"type": "string", "maxLength": MAX_CAPTION_CHARS},
            "description": "Optional: one caption per file, in the order of the files.",
        },
        "metadata": {"type": "array", "items": {"type": "string"}, "description": f"Optional: a JSON object for all files, or one per file. {METADATA_DESCRIPTION}"},
        "collection": {"type": "string", "default": "default", "pattern": COLLECTION_PATTERN, "maxLength": 128, "description": COLLECTION_DESCRIPTION},
    },
}
REQUEST_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": MULTIPART_SCHEMA}, "application/json": {"schema": inline_schema(ImagesIn)}},
}


@router.post(
    "/images",
    response_model=IngestOut,
    summary="Ingest pictures",
    openapi_extra={"requestBody": REQUEST_BODY},
    responses=error_responses(400, 413, 502),
)
async def ingest_images(request: Request, library: Library = Depends(get_library)) -> IngestOut:
    """Embeds each picture with CLIP (and its caption with the text encoder, so caption words are
    searchable) and keeps the original and a thumbnail. The ids returned are the pictures' item ids;
    the same picture uploaded to a collection again replaces its caption and metadata. Every file is
    decoded and checked first (format, size, pixel count), so one bad file stores nothing. This route
    validates its body itself: what does not match the schema is a 400, like bad content."""
    images = library.require_images()
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        collection, files = await _multipart(request)
    else:
        collection, files = await _json(request)
    check_collection_name(collection)

    def decode_and_ingest() -> IngestOut:
        uploads = [images.decode(name, data, caption, metadata) for name, data, caption, metadata in files]
        return ingest_response(images.ingest(collection, uploads))

    return await run_in_threadpool(decode_and_ingest)  # CLIP and Milvus block: keep them off the event loop


Upload = tuple[str, bytes, str | None, dict[str, Any]]  # file name, bytes, caption, metadata


async def _multipart(request: Request) -> tuple[str, list[Upload]]:
    form = await request.form()
    files = [value for value in form.getlist("files") if isinstance(value, UploadFile)]
    if not files:
        raise InvalidInput("no files given: send pictures in the multipart field `files`")
    captions = [_text_field(value, "caption") for value in form.getlist("caption")]
    if captions and len(captions) != len(files):
        raise InvalidInput(f"give one caption per file or none: {len(captions)} captions for {len(files)} files")
    metadata = [parse_json_object(_text_field(value, "metadata"), f"metadata[{index}]") for index, value in enumerate(form.getlist("metadata"))]
    if len(metadata) == 1:
        metadata = metadata * len(files)
    if metadata and len(metadata) != len(files):
        raise InvalidInput(f"give one metadata object for all files or one per file: {len(metadata)} for {len(files)} files")
    uploads = [
        (file_name(file.filename, f"files[{index}]"), await file.read(), captions[index] if captions else None, metadata[index] if metadata else {})
        for index, file in enumerate(files)
    ]
    return _text_field(form.get("collection") or "default", "collection"), uploads


async def _json(request: Request) -> tuple[str, list[Upload]]:
    try:
        body = ImagesIn.model_validate_json(await request.body())
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise InvalidInput(f"send multipart/form-data, or JSON like {{\"images\": [{{\"data\": \"<base64>\"}}]}}: {problems}") from None
    uploads = [
        (image.filename or f"images[{index}]", decode_base64(image.data, f"images[{index}].data"), image.caption, image.metadata)
        for index, image in enumerate(body.images)
    ]
    return body.collection, uploads


def _text_field(value: str | UploadFile, name: str) -> str:
    if isinstance(value, UploadFile):
        raise InvalidInput(f"`{name}` must be a text field of the form, not a file")
    return check_string(value, name)
