"""The `prism` command line.

Every command talks to Prism through prism_client, the client Python programs use. Which Prism:
- `--url` (or PRISM_URL) names a server, and only that one: if nothing answers there, the command
  fails with exit status 1 and says so.
- `--local` opens the store in this process: the same FastAPI app, over an in-memory transport.
- With neither, the server at http://PRISM_HOST:PRISM_PORT is used when it answers, else the store
  is opened in this process (and stderr says so).
Milvus Lite lets one process open its database, and that is normally the server, so the CLI never
opens one that a server holds. In this process, only commands that store something (ingest, eval)
create a store where there is none: a mistyped setting never leaves a new ./data behind.

A command is a function `add_NAME(commands)` that declares its arguments and sets `run` to a
function of the parsed arguments returning the exit status; COMMANDS lists them in --help's order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from api.cli_output import FilterError, format_info, format_report, format_results, format_sources, parse_filters
from prism_client import NotFoundError, PrismClient, PrismConnectionError, PrismError
from prism_client.uploads import MAX_BATCH_BYTES, MAX_BATCH_FILES, find_files

if TYPE_CHECKING:
    from api.settings import Settings  # imported where needed: it loads the whole server (seconds)

HEALTH_TIMEOUT_S = 3.0
MIB = 1024 * 1024


class CliError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CliError, FilterError, PrismError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    settings_help = "Configuration comes from PRISM_* environment variables or a prism.toml file (PRISM_CONFIG)."
    parser = argparse.ArgumentParser(prog="prism", description="Prism: self-hosted multimodal retrieval server.", epilog=settings_help)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", default=os.environ.get("PRISM_URL"), help="The server to talk to, and only it: fail if it does not answer (default: PRISM_URL).")
    where.add_argument("--local", action="store_true", help="Open the store in this process instead of talking to a server.")
    parser.add_argument("--api-key", default=os.environ.get("PRISM_API_KEY"), help="API key for a server with PRISM_API_KEYS set (default: PRISM_API_KEY).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return parser


# ------------------------------------------------------------------ where Prism is


@contextmanager
def connect(args: argparse.Namespace, writes: bool = False) -> Iterator[PrismClient]:
    """A client for the server (see the module's docstring for which), or for the app in this process.
    `writes`: the command stores something, so in this process it may create a store."""
    if not args.local:
        configured = args.url
        url = configured or default_url()
        client = PrismClient(url, api_key=args.api_key or "")
        problem = unanswered(client)
        if problem is None:
            with client:
                yield client
            return
        client.close()
        if configured:
            raise CliError(
                f"no Prism server answers at {url} ({problem}). Start one (`prism serve`), correct --url or PRISM_URL, "
                "or use --local to open the store in this process"
            )
    from api.settings import Settings

    settings = Settings()
    if not args.local:
        print(f"no server at {url}; opening the store at {settings.store_uri} directly (in this process)", file=sys.stderr)
    with in_process_client(settings, args.api_key, writes) as client:
        yield client


def default_url() -> str:
    from api.settings import Settings

    settings = Settings()
    return f"http://{settings.host}:{settings.port}"


def unanswered(client: PrismClient) -> str | None:
    """Why the server does not answer, or None when it does."""
    try:
        client.health(timeout=HEALTH_TIMEOUT_S)
    except PrismConnectionError as error:
        return str(error.__cause__ or error.message)
    return None


@contextmanager
def in_process_client(settings: Settings, api_key: str | None, writes: bool) -> Iterator[PrismClient]:
    if not writes and settings.milvus_uri is None and not Path(settings.store_uri).exists():
        raise CliError(
            f"there is no Prism store at {settings.store_uri} (PRISM_DATA_DIR={settings.data_dir}): nothing was ingested there. "
            "Ingest something first, set PRISM_DATA_DIR, or give the server's --url"
        )
    # The same app the server runs, so the in-process mode cannot drift from the HTTP API.
    from fastapi.testclient import TestClient

    from api.app import create_app

    app = create_app(settings)
    with TestClient(app) as http:
        if not app.state.prism.wait_loaded():
            raise CliError(f"cannot open Prism: {app.state.prism.error}")
        yield PrismClient(http=http, api_key=api_key or "")


# ------------------------------------------------------------------ commands


def add_serve(commands: Any) -> None:
    serve = commands.add_parser("serve", help="Run the HTTP server.")
    serve.add_argument("--host", help="Address to bind (default: PRISM_HOST or 127.0.0.1).")
    serve.add_argument("--port", type=int, help="Port (default: PRISM_PORT or 8000).")
    serve.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from api.app import configure_logging, create_app
    from api.settings import Settings
    from api.shutdown import GracefulServer

    settings = Settings()
    configure_logging(settings.log_level)
    host, port = args.host or settings.host, args.port or settings.port
    # SIGTERM and Ctrl-C end the process within PRISM_SHUTDOWN_TIMEOUT_S (api/shutdown.py).
    GracefulServer.for_app(create_app(settings), host, port, settings.log_level.lower(), settings.shutdown_timeout_s).run()
    return 0


def add_ingest(commands: Any) -> None:
    ingest = commands.add_parser(
        "ingest",
        help="Ingest documents (.txt, .md, .pdf), pictures and recordings, and folders of them (recursively), in batches.",
        description="A file under a folder is named by its path below that folder (sub/notes.md), which is a document's id: "
        "ingesting it again replaces it. Files of other types are skipped and listed; files the server refuses are listed "
        "with its reason, the others are stored, and the exit status is 1.",
    )
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ingest.add_argument("--collection", default="default")
    ingest.add_argument("--language", help="Language of the recordings (e.g. en); default: detected per recording.")
    ingest.add_argument("--batch-files", type=int, default=MAX_BATCH_FILES, help=f"Most files per request (default {MAX_BATCH_FILES}).")
    ingest.add_argument("--batch-mb", type=float, default=MAX_BATCH_BYTES / MIB, help=f"Most MiB per request (default {MAX_BATCH_BYTES // MIB}; a larger file goes alone).")
    ingest.set_defaults(run=run_ingest)


def run_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.batch_files < 1 or args.batch_mb <= 0:
        raise CliError("--batch-files must be at least 1 and --batch-mb above 0")
    try:
        files, skipped = find_files(args.paths)  # before connecting: a wrong path fails at once
    except FileNotFoundError as error:
        raise CliError(str(error)) from None
    if not files:
        raise CliError(f"nothing Prism reads under {', '.join(map(str, args.paths))} ({len(skipped)} files of other types)")
    with connect(args, writes=True) as client, tqdm(total=len(files), unit="file", desc="ingest", file=sys.stderr, disable=None) as bar:
        report = client.upload(
            args.paths,
            collection=args.collection,
            language=args.language,
            progress=lambda event: bar.update(event.files_done - bar.n),
            max_files=args.batch_files,
            max_bytes=int(args.batch_mb * MIB),
        )
    summary, problems = format_report(report)
    print(summary)
    if problems:
        print(problems, file=sys.stderr)
    return 0 if report.ok else 1


def add_search(commands: Any) -> None:
    search = commands.add_parser("search", help="Search a collection by text, or by a picture or audio clip (--file).")
    search.add_argument("query", nargs="?", help="The text to search for.")
    search.add_argument("--file", type=Path, help="Search with this picture or audio clip instead of a text.")
    search.add_argument("--modalities", default="", help="Comma-separated kinds of results, e.g. image or text,audio (default: all).")
    search.add_argument("--top-k", type=int, default=10)
    search.add_argument("--collection", default="default")
    search.add_argument(
        "--filter", action="append", default=[], metavar="KEY=VALUE",
        help="Keep results whose KEY is VALUE; repeat it, and a repeated KEY means any of its values. KEY is doc_id, source, "
        "title, created_at, or a metadata key (metadata.KEY for one of those names). VALUE is read as JSON when it is JSON "
        "(2024, true, \"007\", {\"gte\": 1700000000000}), else as text.",
    )  # fmt: skip
    search.add_argument("--min-score", type=float, help="Drop what each route finds below this cosine similarity.")
    search.add_argument("--rerank", action="store_true", help="Rerank the best results with the server's reranker.")
    search.add_argument("--language", help="Language of a spoken --file (e.g. en); default: detected.")
    search.add_argument("--json", action="store_true", help="Print the server's response as it is.")
    search.set_defaults(run=run_search)


def run_search(args: argparse.Namespace) -> int:
    if (args.query is None) == (args.file is None):
        raise CliError("give a query text or --file, not both")
    if args.file is not None and not args.file.is_file():
        raise CliError(f"{args.file} does not exist")
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    options: dict[str, Any] = dict(collection=args.collection, top_k=args.top_k, modalities=modalities or None, filters=parse_filters(args.filter) or None)
    options.update(min_score=args.min_score, rerank=args.rerank)
    with connect(args) as client:
        if args.file is not None:
            body = client.search_file(args.file, language=args.language, **options)
        else:
            body = client.search(args.query, **options)
    print(json.dumps(body, indent=2, ensure_ascii=False) if args.json else format_results(body))
    return 0


def add_ask(commands: Any) -> None:
    ask = commands.add_parser("ask", help="Ask a question: prints the answer as it is written, then its numbered sources.")
    ask.add_argument("question", nargs="?", help="The question.")
    ask.add_argument("--file", type=Path, help="Ask with this picture or audio clip instead (a clip's transcript is the question).")
    ask.add_argument("--collection", default="default")
    ask.add_argument("--modalities", default="", help="Comma-separated kinds of sources, e.g. text,audio (default: all).")
    ask.add_argument("--top-k", type=int, help="Sources to retrieve (default: PRISM_ANSWER_TOP_K on the server).")
    ask.add_argument("--min-score", type=float, help="Relevance threshold (default: PRISM_ANSWER_MIN_SCORE on the server).")
    ask.add_argument("--max-tokens", type=int, help="Longest answer in tokens (default: PRISM_ANSWER_MAX_TOKENS on the server).")
    ask.add_argument("--rerank", action="store_true", help="Rerank the candidates before choosing the sources.")
    ask.add_argument("--json", action="store_true", help="Print the server's response as it is (not streamed).")
    ask.set_defaults(run=run_ask)


def run_ask(args: argparse.Namespace) -> int:
    if (args.question is None) == (args.file is None):
        raise CliError("give a question or --file, not both")
    if args.file is not None and not args.file.is_file():
        raise CliError(f"{args.file} does not exist")
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    options: dict[str, Any] = dict(collection=args.collection, modalities=modalities or None, rerank=args.rerank)
    options.update(top_k=args.top_k, min_score=args.min_score, max_tokens=args.max_tokens)
    if args.file is not None:
        from encoders.images import looks_like_image

        data = args.file.read_bytes()
        options["image" if looks_like_image(data) else "audio"] = data
    with connect(args) as client:
        if args.json:
            print(json.dumps(client.answer(args.question, **options), indent=2, ensure_ascii=False))
            return 0
        answer = None
        for event in client.answer_stream(args.question, **options):
            if isinstance(event, str):
                print(event, end="", flush=True)
            else:
                answer = event
        assert answer is not None  # answer_stream ends with the answer or raises
        print(answer["answer"] if answer["nothing_found"] else "")
        print(format_sources(answer, client.base_url), end="")
    return 0


def add_collections(commands: Any) -> None:
    commands.add_parser("collections", help="List collections and their item counts.").set_defaults(run=run_collections)


def run_collections(args: argparse.Namespace) -> int:
    with connect(args) as client:
        collections = client.collections()
    if not collections:
        print("no collections yet (`prism ingest PATH --collection NAME` creates one)")
    for collection in collections:
        print(f"{collection['name']}\t{collection['items']} items")
    return 0


def add_delete(commands: Any) -> None:
    delete = commands.add_parser("delete", help="Delete an item by id, a whole document (--document), or a collection (--collection NAME --all).")
    delete.add_argument("id", nargs="?", help="An item id (or with --document, a document id).")
    delete.add_argument("--document", action="store_true", help="ID is a document id: delete all its chunks.")
    delete.add_argument("--collection", help="Collection of the document (with --document; default: default), or the one to drop (with --all).")
    delete.add_argument("--all", action="store_true", help="Drop the whole collection named by --collection, with all its items.")
    delete.add_argument("--yes", action="store_true", help="With --all: do not ask for confirmation.")
    delete.set_defaults(run=run_delete)


def run_delete(args: argparse.Namespace) -> int:
    if args.all:
        if args.id is not None or args.document or not args.collection:
            raise CliError("to drop a collection, give --collection NAME --all and no id")
        return drop_collection(args)
    if args.id is None:
        raise CliError("give an item id (or a document id with --document), or --collection NAME --all")
    with connect(args) as client:
        body = client.delete_document(args.id, collection=args.collection or "default") if args.document else client.delete_item(args.id)
    print(f"deleted {body['deleted']} item(s)")
    return 0


def drop_collection(args: argparse.Namespace) -> int:
    with connect(args) as client:
        found = [c for c in client.collections() if c["name"] == args.collection]
        if not found:
            raise CliError(f"there is no collection {args.collection!r} (`prism collections` lists them)")
        if not args.yes:
            print(f"Drop the collection {args.collection!r} and its {found[0]['items']} items? This cannot be undone. [y/N] ", end="", file=sys.stderr, flush=True)
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                print("nothing deleted", file=sys.stderr)
                return 1
        try:
            body = client.drop_collection(args.collection)
        except NotFoundError:
            raise CliError(f"there is no collection {args.collection!r}") from None
    print(f"dropped the collection {args.collection!r} ({body['deleted']} items)")
    return 0


def add_doctor(commands: Any) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="Check that the store and the blob store agree (interrupted writes, stale versions, orphan files, missing CLIP copies); --fix repairs what is safe.",
    )
    doctor.add_argument("--fix", action="store_true", help="Repair what can be repaired without losing anything stored.")
    doctor.add_argument("--json", action="store_true", help="Print the raw JSON report.")
    doctor.set_defaults(run=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    with connect(args) as client:
        report = client.doctor(fix=args.fix)
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


def add_info(commands: Any) -> None:
    info = commands.add_parser("info", help="Show the server's models, store, checks and effective configuration (GET /v1/info).")
    info.add_argument("--json", action="store_true", help="Print the server's response as it is.")
    info.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> int:
    with connect(args) as client:
        info = client.info()
    print(json.dumps(info, indent=2, ensure_ascii=False) if args.json else format_info(info))
    return 0


def add_eval(commands: Any) -> None:
    from api.eval import add_arguments as add_eval_arguments

    evaluate = commands.add_parser("eval", help="Measure retrieval quality on a BEIR-format dataset, spoken queries (--spoken) or captioned pictures (--images), or the quality of grounded answers (--answers).")
    add_eval_arguments(evaluate)
    evaluate.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from api.eval import EvalError, evaluate

    try:
        return evaluate(args, lambda arguments: connect(arguments, writes=True))
    except EvalError as error:
        raise CliError(str(error)) from None


COMMANDS = (add_serve, add_ingest, add_search, add_ask, add_collections, add_delete, add_doctor, add_info, add_eval)

if __name__ == "__main__":
    sys.exit(main())
