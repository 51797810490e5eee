"""The `prism` command line.

Milvus Lite lets one process open its database, and that process is normally the server. So every
command talks to the server over HTTP; only when no server answers at --url does the CLI run the
same FastAPI app in-process (over an in-memory transport), which opens the store directly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import httpx

from api.settings import Settings
from retrieval.audio import AUDIO_CONTENT_TYPES
from retrieval.extract import DOCUMENT_SUFFIXES

AUDIO_SUFFIXES = frozenset(AUDIO_CONTENT_TYPES)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
INGESTIBLE_SUFFIXES = DOCUMENT_SUFFIXES | AUDIO_SUFFIXES | IMAGE_SUFFIXES
JOB_POLL_S = 1.0


class CliError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    settings_help = "Configuration comes from PRISM_* environment variables or a prism.toml file (PRISM_CONFIG)."
    parser = argparse.ArgumentParser(prog="prism", description="Prism: self-hosted multimodal retrieval server.", epilog=settings_help)
    parser.add_argument("--url", default=os.environ.get("PRISM_URL"), help="Server to talk to (default: PRISM_URL or http://PRISM_HOST:PRISM_PORT).")
    parser.add_argument("--api-key", default=os.environ.get("PRISM_API_KEY"), help="API key for a server with PRISM_API_KEYS set (default: PRISM_API_KEY).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="Run the HTTP server.")
    serve.add_argument("--host", help="Address to bind (default: PRISM_HOST or 127.0.0.1).")
    serve.add_argument("--port", type=int, help="Port (default: PRISM_PORT or 8000).")
    serve.set_defaults(run=run_serve)

    ingest = commands.add_parser("ingest", help="Ingest documents (.txt, .md, .pdf), pictures and audio files, and folders of them (recursively).")
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ingest.add_argument("--collection", default="default")
    ingest.set_defaults(run=run_ingest)

    search = commands.add_parser("search", help="Search a collection by text, or by a picture or audio clip (--file).")
    search.add_argument("query", nargs="?", help="The text to search for.")
    search.add_argument("--file", type=Path, help="Search with this picture or audio clip instead of a text.")
    search.add_argument("--modalities", default="", help="Comma-separated kinds of results, e.g. image or text,audio (default: all).")
    search.add_argument("--top-k", type=int, default=10)
    search.add_argument("--collection", default="default")
    search.add_argument("--json", action="store_true", help="Print the raw JSON response.")
    search.set_defaults(run=run_search)

    ask = commands.add_parser("ask", help="Ask a question: prints the answer as it is written, then its numbered sources.")
    ask.add_argument("question", nargs="?", help="The question.")
    ask.add_argument("--file", type=Path, help="Ask with this picture or audio clip instead (a clip's transcript is the question).")
    ask.add_argument("--collection", default="default")
    ask.add_argument("--modalities", default="", help="Comma-separated kinds of sources, e.g. text,audio (default: all).")
    ask.add_argument("--top-k", type=int, help="Sources to retrieve (default: PRISM_ANSWER_TOP_K on the server).")
    ask.add_argument("--min-score", type=float, help="Relevance threshold (default: PRISM_ANSWER_MIN_SCORE on the server).")
    ask.add_argument("--max-tokens", type=int, help="Longest answer in tokens (default: PRISM_ANSWER_MAX_TOKENS on the server).")
    ask.add_argument("--rerank", action="store_true", help="Rerank the candidates before choosing the sources.")
    ask.add_argument("--json", action="store_true", help="Print the raw JSON response instead.")
    ask.set_defaults(run=run_ask)

    collections = commands.add_parser("collections", help="List collections.")
    collections.set_defaults(run=run_collections)

    delete = commands.add_parser("delete", help="Delete an item by id (or a whole document with --document).")
    delete.add_argument("id")
    delete.add_argument("--document", action="store_true", help="ID is a document id: delete all its chunks.")
    delete.add_argument("--collection", default="default", help="Collection of the document (with --document).")
    delete.set_defaults(run=run_delete)

    doctor = commands.add_parser(
        "doctor",
        help="Check that the store and the blob store agree (interrupted writes, stale versions, orphan files, missing CLIP copies); --fix repairs what is safe.",
    )
    doctor.add_argument("--fix", action="store_true", help="Repair what can be repaired without losing anything stored.")
    doctor.add_argument("--json", action="store_true", help="Print the raw JSON report.")
    doctor.set_defaults(run=run_doctor)

    info = commands.add_parser("info", help="Show the effective configuration and the models in use.")
    info.set_defaults(run=run_info)

    from api.eval import add_arguments as add_eval_arguments

    evaluate = commands.add_parser("eval", help="Measure retrieval quality on a BEIR-format dataset, spoken queries (--spoken) or captioned pictures (--images), or the quality of grounded answers (--answers).")
    add_eval_arguments(evaluate)
    evaluate.set_defaults(run=run_eval)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    from api.app import configure_logging, create_app
    from api.shutdown import GracefulServer

    settings = Settings()
    configure_logging(settings.log_level)
    host, port = args.host or settings.host, args.port or settings.port
    # SIGTERM and Ctrl-C end the process within PRISM_SHUTDOWN_TIMEOUT_S (api/shutdown.py).
    GracefulServer.for_app(create_app(settings), host, port, settings.log_level.lower(), settings.shutdown_timeout_s).run()
    return 0


def run_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    files = find_documents(args.paths)
    if not files:
        raise CliError(f"no {', '.join(sorted(INGESTIBLE_SUFFIXES))} files under {', '.join(map(str, args.paths))}")
    chunks = failed = 0
    with connect(args) as client:
        for path, name in tqdm(files, unit="file", desc="ingest", file=sys.stderr):
            route = ingest_route(path)
            response = client.post(route, data={"collection": args.collection}, files={"files": (name, path.read_bytes())})
            if response.status_code == 202:  # a long recording: wait for its job
                response = wait_for_job(client, response.json()["status_url"])
            if response.is_success:
                chunks += response.json()["chunks"]
            else:
                failed += 1
                tqdm.write(f"{name}: {error_message(response)}", file=sys.stderr)
    print(f"ingested {len(files) - failed} of {len(files)} files ({chunks} chunks) into {args.collection!r}")
    return 1 if failed else 0


def ingest_route(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        return "/v1/audio"
    if suffix in IMAGE_SUFFIXES:
        return "/v1/images"
    return "/v1/documents/upload"


def wait_for_job(client: httpx.Client, status_url: str) -> httpx.Response:
    """Poll a background job; answer as the synchronous route would have: its result, or its error."""
    while True:
        job = client.get(status_url).json()
        if job["state"] == "succeeded":
            return httpx.Response(200, json=job["result"])
        if job["state"] == "failed":
            return httpx.Response(500, json={"error": {"code": "job_failed", "message": job["error"]}})
        time.sleep(JOB_POLL_S)


def find_documents(paths: list[Path]) -> list[tuple[Path, str]]:
    """(path, name sent to the server) for every document file; names are relative to the folder given."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            found += [(f, f.relative_to(path).as_posix()) for f in sorted(path.rglob("*")) if f.is_file() and f.suffix.lower() in INGESTIBLE_SUFFIXES]
        elif path.is_file():
            found.append((path, path.name))
        else:
            raise CliError(f"{path} does not exist")
    return found


def run_search(args: argparse.Namespace) -> int:
    if (args.query is None) == (args.file is None):
        raise CliError("give a query text or --file, not both")
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    with connect(args) as client:
        if args.file is not None:
            if not args.file.is_file():
                raise CliError(f"{args.file} does not exist")
            form = {"collection": args.collection, "top_k": str(args.top_k), "modalities": ",".join(modalities)}
            files = {"file": (args.file.name, args.file.read_bytes())}
            body = request_json(client, "POST", "/v1/search/upload", data=form, files=files)
        else:
            query = {"query": {"text": args.query}, "collection": args.collection, "top_k": args.top_k, "modalities": modalities or None}
            body = request_json(client, "POST", "/v1/search", json=query)
    if args.json:
        print(json.dumps(body, indent=2, ensure_ascii=False))
        return 0
    for rank, result in enumerate(body["results"], 1):
        snippet = " ".join(result["text"].split())[:160]
        where = f"{result['source']} ({result['width']}x{result['height']})" if result["modality"] == "image" else result["doc_id"]
        print(f"{rank:>2}. {result['score']:.4f}  {result['modality']:<5}  {where}  [{result['id']}]\n    {snippet}")
    print(f"({len(body['results'])} results, {body['timings_ms']['total']:.1f} ms)")
    return 0


def run_ask(args: argparse.Namespace) -> int:
    import base64

    from encoders.images import looks_like_image

    if (args.question is None) == (args.file is None):
        raise CliError("give a question or --file, not both")
    if args.file is not None and not args.file.is_file():
        raise CliError(f"{args.file} does not exist")
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    body: dict[str, Any] = {"collection": args.collection, "modalities": modalities or None, "rerank": args.rerank, "stream": not args.json}
    body.update({key: value for key, value in (("top_k", args.top_k), ("min_score", args.min_score), ("max_tokens", args.max_tokens)) if value is not None})
    if args.file is not None:
        data = args.file.read_bytes()
        body["query"] = {"image" if looks_like_image(data) else "audio": base64.b64encode(data).decode("ascii")}
    else:
        body["query"] = {"text": args.question}
    with connect(args) as client:
        if args.json:
            print(json.dumps(request_json(client, "POST", "/v1/answer", json=body), indent=2, ensure_ascii=False))
            return 0
        answer = stream_answer(client, body)
        print_sources(answer, str(client.base_url).rstrip("/"))
    return 0


def stream_answer(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """Print the answer's words as the server sends them; return the final `answer` event."""
    with client.stream("POST", "/v1/answer", json=body) as response:
        if not response.is_success:
            response.read()
            raise CliError(f"POST /v1/answer -> {response.status_code}: {error_message(response)}")
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                if event == "token":
                    print(data["text"], end="", flush=True)
                elif event == "error":
                    print()
                    raise CliError(f"the answer failed: {data['error']['message']}")
                elif event == "answer":
                    if data["nothing_found"]:
                        print(data["answer"], end="")
                    print()
                    return data
    raise CliError("the server ended the answer without its sources")


def print_sources(answer: dict[str, Any], base_url: str) -> None:
    if answer["nothing_found"]:
        return
    sources = answer["citations"] or answer["used_context"]
    print("\nSources:" if answer["citations"] else f"\nThe answer cites none of its {len(sources)} sources:")
    for source in sources:
        link = f"  {base_url}{source['content_url']}" if source.get("content_url") else f"  [{source['id']}]"
        snippet = " ".join(source["text"].split())[:160]
        print(f"[{source['n']}] {source['label']}{link}\n    {snippet}")


def run_collections(args: argparse.Namespace) -> int:
    with connect(args) as client:
        body = request_json(client, "GET", "/v1/collections")
    for collection in body["collections"]:
        print(f"{collection['name']}\t{collection['items']} items")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.document:
            # In the query, so that any id (with '/', '?', '#', '%' or spaces) arrives as it is.
            body = request_json(client, "DELETE", "/v1/documents", params={"doc_id": args.id, "collection": args.collection})
        else:
            body = request_json(client, "DELETE", f"/v1/items/{quote(args.id, safe='')}")
    print(f"deleted {body['deleted']} item(s)")
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    with connect(args) as client:
        report = request_json(client, "POST" if args.fix else "GET", "/v1/doctor/fix" if args.fix else "/v1/doctor")
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for title, problems in (("repaired", report["fixed"]), ("problems", report["problems"])):
            for problem in problems:
                print(f"{title}: {problem['kind']}\t{problem['collection']}\t{problem['id']}\t{problem['message']}")
        for note in report["notes"]:
            print(f"note: {note}")
        print(report["summary"])
    return 1 if report["problems"] else 0


def run_info(args: argparse.Namespace) -> int:
    with connect(args) as client:
        info = request_json(client, "GET", "/v1/info")
    print(json.dumps({"configuration": Settings().public_view(), "server": info}, indent=2, ensure_ascii=False))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from api.eval import EvalError, evaluate

    try:
        return evaluate(args, connect)
    except EvalError as error:
        raise CliError(str(error)) from None


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[httpx.Client]:
    """A client for the running server, or for an in-process app when none answers."""
    settings = Settings()
    url = args.url or f"http://{settings.host}:{settings.port}"
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
        try:
            client.get("/healthz", timeout=2)
            server_running = True
        except httpx.TransportError:
            server_running = False
        if server_running:
            yield client
            return
    print(f"no server at {url}; opening the store at {settings.store_uri} directly", file=sys.stderr)
    with in_process_client(settings, headers) as local:
        yield local


@contextmanager
def in_process_client(settings: Settings, headers: dict[str, str]) -> Iterator[httpx.Client]:
    # The same app the server runs, so direct mode cannot drift from the HTTP API.
    from fastapi.testclient import TestClient

    from api.app import create_app

    app = create_app(settings)
    with TestClient(app, headers=headers) as client:
        if not app.state.prism.wait_loaded():
            raise CliError(f"cannot open Prism: {app.state.prism.error}")
        yield client


def request_json(client: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    response = client.request(method, path, **kwargs)
    if not response.is_success:
        raise CliError(f"{method} {path} -> {response.status_code}: {error_message(response)}")
    return response.json()


def error_message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return response.text[:500]


if __name__ == "__main__":
    sys.exit(main())
