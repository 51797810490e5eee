"""A Python client for Prism's REST API, sync (PrismClient) and async (AsyncPrismClient), on httpx.

    from prism_client import PrismClient

    with PrismClient("http://127.0.0.1:8000") as prism:
        prism.add_documents([{"id": "owls", "text": "Owls hunt at night."}], collection="notes")
        report = prism.upload(["~/notes"], collection="notes")   # files and folders, in batches
        for hit in prism.search("birds of prey", collection="notes")["results"]:
            print(hit["score"], hit["doc_id"], hit["text"])
        print(prism.answer("What do owls do at night?", collection="notes")["answer"])

Answers are the server's JSON (typed as TypedDicts in prism_client.types); failures raise
PrismError subclasses carrying the server's status, code and message. The retrievers for LangChain
(prism_client.langchain) and LlamaIndex (prism_client.llamaindex) need the extras of those names.
"""

from prism_client.aio import AsyncPrismClient
from prism_client.answers import AnswerOptions
from prism_client.calls import FileInput, SearchOptions
from prism_client.errors import (
    AnswerFailedError,
    AuthenticationError,
    InvalidInputError,
    InvalidRequestError,
    JobFailedError,
    NotFoundError,
    PayloadTooLargeError,
    PrismConnectionError,
    PrismError,
    ServerError,
    UnavailableError,
    UnsupportedFileTypeError,
    UpstreamError,
)
from prism_client.sync import PrismClient
from prism_client.uploads import FileProblem, LocalFile, UploadProgress, UploadReport

__all__ = [
    "AnswerFailedError",
    "AnswerOptions",
    "AsyncPrismClient",
    "AuthenticationError",
    "FileInput",
    "FileProblem",
    "InvalidInputError",
    "InvalidRequestError",
    "JobFailedError",
    "LocalFile",
    "NotFoundError",
    "PayloadTooLargeError",
    "PrismClient",
    "PrismConnectionError",
    "PrismError",
    "SearchOptions",
    "ServerError",
    "UnavailableError",
    "UnsupportedFileTypeError",
    "UploadProgress",
    "UploadReport",
    "UpstreamError",
]
