"""Single items (chunks, pictures, transcript windows), their stored originals, and collections."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api.errors import error_responses
from api.ranges import file_response
from api.routes.deps import CollectionPath, get_library
from api.schemas import CollectionOut, CollectionsOut, DeletedOut, ItemOut, ItemsOut
from retrieval import Library

router = APIRouter(prefix="/v1")

ItemId = Annotated[str, Path(min_length=1, max_length=512, description="An item id, as search results and listings give it.")]
CONTENT = {
    "description": "The stored bytes, with their content type; 206 with a Range header.",
    "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in ("image/*", "audio/*", "application/octet-stream")},
}
RANGE_RESPONSES = {206: {**CONTENT, "description": "The requested byte range."}, 416: {"description": "The requested range is not satisfiable."}}


@router.get("/items/{item_id}", response_model=ItemOut, tags=["items"], summary="Get one item", responses=error_responses(404))
def get_item(item_id: ItemId, library: Library = Depends(get_library)) -> ItemOut:
    return ItemOut.of(library.get_item(item_id))


@router.get(
    "/items/{item_id}/content",
    tags=["items"],
    summary="The stored original of an item",
    response_class=Response,
    responses={200: CONTENT, **RANGE_RESPONSES, **error_responses(404)},
)
@router.head("/items/{item_id}/content", include_in_schema=False)  # players ask for the size first
def item_content(item_id: ItemId, request: Request, library: Library = Depends(get_library)) -> Response:
    """The picture as uploaded, or the recording behind an audio window, with its content type and
    HTTP Range support so a player can seek (an audio result's `content_url` adds `#t=<start>`)."""
    _, info, path = library.content(item_id)
    return file_response(path, info.content_type, request, filename=info.filename)


@router.get(
    "/items/{item_id}/thumbnail",
    tags=["items"],
    summary="A picture's thumbnail (JPEG)",
    response_class=Response,
    responses={200: {**CONTENT, "content": {"image/jpeg": CONTENT["content"]["image/*"]}}, **RANGE_RESPONSES, **error_responses(404)},
)
@router.head("/items/{item_id}/thumbnail", include_in_schema=False)
def item_thumbnail(item_id: ItemId, request: Request, library: Library = Depends(get_library)) -> Response:
    """A JPEG whose longest side is PRISM_IMAGE_THUMBNAIL_PX; 404 for items that are not pictures."""
    _, info, path = library.thumbnail(item_id)
    return file_response(path, info.content_type, request)


@router.delete("/items/{item_id}", response_model=DeletedOut, tags=["items"], summary="Delete one item", responses=error_responses(404))
def delete_item(item_id: ItemId, library: Library = Depends(get_library)) -> DeletedOut:
    library.delete_item(item_id)
    return DeletedOut(deleted=1)


@router.get("/collections", response_model=CollectionsOut, tags=["collections"], summary="List collections")
def list_collections(library: Library = Depends(get_library)) -> CollectionsOut:
    return CollectionsOut(collections=[CollectionOut.of(info) for info in library.collections()])


@router.get(
    "/collections/{name}/items", response_model=ItemsOut, tags=["collections"], summary="List a collection's items", responses=error_responses(404)
)
def list_items(
    name: CollectionPath,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    library: Library = Depends(get_library),
) -> ItemsOut:
    """Chunks, pictures and transcript windows, newest first, a page at a time."""
    items, total = library.list_items(name, limit, offset)
    return ItemsOut(items=[ItemOut.of(item) for item in items], total=total)


@router.delete(
    "/collections/{name}", response_model=DeletedOut, tags=["collections"], summary="Delete a collection and its items", responses=error_responses(404)
)
def drop_collection(name: CollectionPath, library: Library = Depends(get_library)) -> DeletedOut:
    return DeletedOut(deleted=library.drop_collection(name))
