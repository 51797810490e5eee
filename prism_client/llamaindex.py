"""A LlamaIndex retriever over a Prism collection (`pip install 'prism-retrieval[llamaindex]'`).

    from prism_client.llamaindex import PrismRetriever

    retriever = PrismRetriever("http://127.0.0.1:8000", collection="notes", top_k=5)
    for found in retriever.retrieve("what did I write about owls?"):
        print(found.score, found.node.metadata["source"], found.node.get_content())

Each result is a NodeWithScore whose score is Prism's: a TextNode for chunks and transcript windows,
an ImageNode (with `image_url`, the original picture) for pictures, whose text is the caption. The
node's id is the item id, its metadata Prism's fields (modality, score, doc_id, source, title,
content_url, thumbnail_url, start and end of a moment in a recording, the routes that found it) with
the item's own metadata under "metadata"; only source and title are shown to the LLM.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, TextNode

from prism_client.aio import AsyncPrismClient
from prism_client.calls import SearchOptions
from prism_client.results import result_metadata
from prism_client.sync import PrismClient
from prism_client.types import SearchHit, SearchResult

SHOWN_TO_LLM = ("source", "title")


class PrismRetriever(BaseRetriever):
    """Searches one Prism collection by text. Sync calls share one client; async ones open their own."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        collection: str = "default",
        top_k: int = 10,
        modalities: Sequence[str] | None = None,
        filters: dict[str, Any] | None = None,
        min_score: float | None = None,
        rerank: bool = False,
        timeout: float = 120.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._url, self._api_key, self._timeout = url, api_key, timeout
        self._options = SearchOptions(collection=collection, top_k=top_k, modalities=modalities, filters=filters, min_score=min_score, rerank=rerank)
        self._client: PrismClient | None = None

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if self._client is None:
            self._client = PrismClient(self._url, api_key=self._api_key, timeout=self._timeout)
        return nodes(self._client.search(query_bundle.query_str, **self._options), self._client.url)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        async with AsyncPrismClient(self._url, api_key=self._api_key, timeout=self._timeout) as client:
            return nodes(await client.search(query_bundle.query_str, **self._options), client.url)


def nodes(body: SearchResult, absolute: Callable[[str], str]) -> list[NodeWithScore]:
    return [NodeWithScore(node=node(hit, absolute), score=hit["score"]) for hit in body["results"]]


def node(hit: SearchHit, absolute: Callable[[str], str]) -> TextNode:
    metadata = result_metadata(hit, absolute)
    hidden = [key for key in metadata if key not in SHOWN_TO_LLM]
    common = dict(id_=hit["id"], text=hit["text"], metadata=metadata, excluded_llm_metadata_keys=hidden, excluded_embed_metadata_keys=hidden)
    if hit["modality"] == "image":
        return ImageNode(image_url=metadata.get("content_url"), **common)
    return TextNode(**common)
