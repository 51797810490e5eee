"""Searching by meaning."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.metrics import observe_stages
from api.routes.deps import get_library
from api.schemas import ResultOut, SearchIn, SearchOut
from retrieval import Library, TextQuery

router = APIRouter(prefix="/v1", tags=["search"])


@router.post("/search", response_model=SearchOut, summary="Search a collection with a text query")
def search(body: SearchIn, library: Library = Depends(get_library)) -> SearchOut:
    """Returns the `top_k` chunks closest to the query, best first, with per-stage timings."""
    query = TextQuery(text=body.query.text, collection=body.collection, top_k=body.top_k, filters=body.filters, min_score=body.min_score)
    result = library.search(query)
    observe_stages("search", result.timings_ms)
    return SearchOut(results=[ResultOut.of_hit(hit) for hit in result.hits], timings_ms=result.timings_ms)
