"""The LangChain and LlamaIndex retrievers, with the real packages, against a real server holding a
document, a picture and a recording."""

from __future__ import annotations

import asyncio
import io

import pytest
from langchain_core.documents import Document
from llama_index.core.schema import ImageNode, TextNode

from prism_client import AuthenticationError, PrismClient
from prism_client.langchain import PrismRetriever as LangChainRetriever
from prism_client.llamaindex import PrismRetriever as LlamaIndexRetriever
from tests.audio_files import speak
from tests.fixtures_prism import API_KEY
from tests.tiny_clip import make_shape_image

COLLECTION = "retrievers"


@pytest.fixture(scope="module")
def library(full_prism_url, tmp_path_factory):
    """A document, a captioned picture and a spoken recording in one collection."""
    clip = speak("Next week we will talk about the weather and the rain.", tmp_path_factory.mktemp("speech") / "forecast.wav")
    picture = io.BytesIO()
    make_shape_image("red", "circle").save(picture, format="PNG")
    with PrismClient(full_prism_url, api_key=API_KEY) as prism:
        prism.add_documents([{"id": "owls", "text": "Owls hunt small animals at night.", "metadata": {"lang": "en"}}], collection=COLLECTION)
        prism.add_images([("red-circle.png", picture.getvalue())], collection=COLLECTION, captions=["a red circle"])
        prism.add_audio([clip], collection=COLLECTION, language="en", poll_s=0.2)
    return full_prism_url


def test_langchain_retriever_returns_documents_with_prisms_metadata(library):
    retriever = LangChainRetriever(url=library, api_key=API_KEY, collection=COLLECTION, top_k=3, modalities=["text", "audio"])
    documents = retriever.invoke("what will the weather be like next week")
    assert all(isinstance(d, Document) for d in documents) and len(documents) == 2
    moment = documents[0]
    assert moment.metadata["modality"] == "audio" and "weather" in moment.page_content.lower()
    assert moment.metadata["start"] == 0 and moment.metadata["end"] > 1
    assert moment.metadata["content_url"] == f"{library}/v1/items/{moment.id}/content#t=0.00"
    assert moment.metadata["score"] > documents[1].metadata["score"] and "text->audio" in moment.metadata["routes"]
    owls = documents[1]
    assert owls.metadata["doc_id"] == "owls" and owls.metadata["metadata"] == {"lang": "en"} and "content_url" not in owls.metadata

    filtered = LangChainRetriever(url=library, api_key=API_KEY, collection=COLLECTION, filters={"metadata": {"lang": "en"}})
    assert [d.id for d in asyncio.run(filtered.ainvoke("weather"))] == [owls.id]  # the async path, with a filter

    with pytest.raises(AuthenticationError):
        LangChainRetriever(url=library, api_key="wrong", collection=COLLECTION).invoke("owls")


def test_llamaindex_retriever_returns_scored_nodes(library):
    retriever = LlamaIndexRetriever(library, api_key=API_KEY, collection=COLLECTION, top_k=5)
    found = retriever.retrieve("a red circle")
    picture = next(n for n in found if n.node.metadata["modality"] == "image")
    assert isinstance(picture.node, ImageNode) and picture.node.get_content() == "a red circle"
    assert picture.node.image_url == f"{library}/v1/items/{picture.node.node_id}/content"
    assert picture.node.metadata["thumbnail_url"].endswith("/thumbnail") and picture.node.metadata["width"] == 64
    assert picture.score == picture.node.metadata["score"]
    assert [n.score for n in found] == sorted((n.score for n in found), reverse=True)

    spoken = asyncio.run(LlamaIndexRetriever(library, api_key=API_KEY, collection=COLLECTION, modalities=["audio"]).aretrieve("rain next week"))
    (moment,) = spoken
    assert type(moment.node) is TextNode and moment.node.metadata["start"] == 0 and moment.node.metadata["recording_id"].startswith("rec-")
    # What an LLM sees of a node: its text and where it came from, not Prism's bookkeeping.
    shown = moment.node.get_content(metadata_mode="llm")
    assert "forecast.wav" in shown and "recording_id" not in shown and "weather" in shown.lower()
