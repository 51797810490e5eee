"""A LangChain retriever over a Prism collection (`pip install 'prism-retrieval[langchain]'`).

    from prism_client.langchain import PrismRetriever

    retriever = PrismRetriever(url="http://127.0.0.1:8000", collection="notes", top_k=5)
    for document in retriever.invoke("what did I write about owls?"):
        print(document.metadata["score"], document.metadata["source"], document.page_content)

Each result is a Document: `page_content` is its text (a chunk, a transcript window, or a picture's
caption), `id` its item id, and `metadata` Prism's fields (modality, score, doc_id, source, title,
content_url, thumbnail_url, start and end of a moment in a recording, the routes that found it) with
the item's own metadata under "metadata". Sync calls share one client; async ones open their own.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from prism_client.aio import AsyncPrismClient
from prism_client.calls import SearchOptions
from prism_client.results import result_metadata
from prism_client.sync import PrismClient
from prism_client.types import SearchResult


class PrismRetriever(BaseRetriever):
    """Searches one Prism collection by text; every option of POST /v1/search that fits a retriever."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    url: str | None = Field(None, description="The server; default PRISM_URL, else http://127.0.0.1:8000.")
    api_key: SecretStr | None = Field(None, description="Default PRISM_API_KEY.")
    collection: str = "default"
    top_k: int = Field(10, ge=1, le=1000)
    modalities: list[str] | None = Field(None, description="text, image, audio; default all.")
    filters: dict[str, Any] | None = None
    min_score: float | None = None
    rerank: bool = False
    timeout: float = 120.0
    _client: PrismClient | None = PrivateAttr(None)

    def _options(self) -> SearchOptions:
        return SearchOptions(
            collection=self.collection, top_k=self.top_k, modalities=self.modalities, filters=self.filters, min_score=self.min_score, rerank=self.rerank
        )

    def _key(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        if self._client is None:
            self._client = PrismClient(self.url, api_key=self._key(), timeout=self.timeout)
        return self._documents(self._client.search(query, **self._options()), self._client.url)

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        async with AsyncPrismClient(self.url, api_key=self._key(), timeout=self.timeout) as client:
            return self._documents(await client.search(query, **self._options()), client.url)

    @staticmethod
    def _documents(body: SearchResult, absolute: Any) -> list[Document]:
        return [Document(page_content=hit["text"], id=hit["id"], metadata=result_metadata(hit, absolute)) for hit in body["results"]]
