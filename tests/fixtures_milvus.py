"""Pytest fixtures giving tests a real Milvus: Milvus Lite, and a Milvus server.

milvus_server_uri  one standalone server per test session, started on first use with the
                   interpreter of .venv-milvus (override: PRISM_TEST_MILVUS_PYTHON).
milvus_server_process
                   a factory for a server of a test's own, for tests that stop it:
                   `server = milvus_server_process(directory)`, then server.uri, server.stop().
store_uri          parametrized over "lite" and "server", so a test taking it (or `store`)
                   runs on both. Each test starts empty: on Lite with a new file; on the
                   server in one database shared by the session, whose collections are
                   emptied (not dropped) after each test, because creating and loading a
                   collection takes 2-3 s on the server, against milliseconds on Lite.
                   So on the server a space collection, once created by a test, stays for
                   the session with its dimension; only its rows and the registry go.
store              a MilvusStore on store_uri, closed afterwards.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from retrieval.store import MilvusStore
from tests.servers import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = REPO_ROOT / "tests" / "milvus_server.py"
DEFAULT_MILVUS_PYTHON = REPO_ROOT / ".venv-milvus" / "bin" / "python"
MILVUS_PYTHON_ENV = "PRISM_TEST_MILVUS_PYTHON"

SERVER_TEST_DATABASE = "prism_tests"

READY_DEADLINE_SECONDS = 120  # a cold start takes ~10 s; a loaded 2-core CI box much more
# Milvus 2.3 takes over 10 s to stop gracefully (its components keep retrying each other while
# they shut down). The test data is thrown away, so the server gets a short grace, then SIGKILL.
STOP_GRACE_SECONDS = 3
POLL_SECONDS = 0.5
LOG_TAIL_CHARS = 3000


def milvus_python() -> Path:
    override = os.environ.get(MILVUS_PYTHON_ENV)
    python = Path(override) if override else DEFAULT_MILVUS_PYTHON
    if not python.exists():
        pytest.fail(
            f"no Python with the Milvus server package at {python}. Run `make bootstrap` "
            "(it creates .venv-milvus with the PyPI package milvus==2.3.5, kept apart from "
            f"the main venv because its pins clash with pymilvus 3), or set {MILVUS_PYTHON_ENV} "
            "to such an interpreter.",
            pytrace=False,
        )
    return python


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return "(none)"


def _server_answers(uri: str) -> bool:
    try:
        client = MilvusClient(uri=uri, timeout=2, dedicated=True)
        try:
            client.list_collections(timeout=2)
        finally:
            client.close()
        return True
    except Exception:  # noqa: BLE001 - any failure just means "not yet"
        return False


@dataclass
class MilvusServerProcess:
    """A Milvus server started by tests/milvus_server.py, leading its own process group."""

    uri: str
    base_dir: Path
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.returncode is None:  # not stopped (and reaped) already
            _stop_process_group(self.process)


def start_milvus_server(base_dir: Path) -> MilvusServerProcess:
    """Start a server with its data under base_dir and return once it answers requests."""
    python = milvus_python()
    base_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with open(base_dir / "launcher.log", "wb") as log:
        process = subprocess.Popen(
            [str(python), str(SERVER_SCRIPT), str(base_dir / "server"), str(port),
             "--exit-with-parent"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, so stop() can take milvus down with it
            cwd=REPO_ROOT,
        )  # fmt: skip
    server = MilvusServerProcess(uri=f"http://127.0.0.1:{port}", base_dir=base_dir, process=process)
    try:
        _wait_until_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_ready(server: MilvusServerProcess) -> None:
    """Poll until the server answers a real request: its health check turns OK a little
    before the proxy serves."""
    uri, proc, base_dir = server.uri, server.process, server.base_dir
    deadline = time.monotonic() + READY_DEADLINE_SECONDS
    pymilvus_logger = logging.getLogger("pymilvus")
    level = pymilvus_logger.level
    pymilvus_logger.setLevel(logging.CRITICAL)  # each refused attempt would log a traceback
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if _server_answers(uri):
                return
            time.sleep(POLL_SECONDS)
    finally:
        pymilvus_logger.setLevel(level)
    what = (
        f"exited with code {proc.returncode}"
        if proc.poll() is not None
        else f"did not answer within {READY_DEADLINE_SECONDS} s"
    )
    pytest.fail(
        f"the Milvus test server at {uri} {what}.\n"
        f"--- launcher output ---\n{_tail(base_dir / 'launcher.log')}\n"
        f"--- milvus stderr ---\n{_tail(base_dir / 'server' / 'logs' / 'milvus-stderr.log')}",
        pytrace=False,
    )


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the launcher and milvus, wait a little, SIGKILL whatever is left.
    The launcher leads its own process group (start_new_session), so the group id is its pid;
    the kernel does not reuse it while any member lives, even after we reap the launcher."""
    pgid = proc.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while time.monotonic() < deadline:
        proc.poll()  # reaps the launcher once it exits
        if not _group_exists(pgid):
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


@pytest.fixture(scope="session")
def milvus_server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = start_milvus_server(tmp_path_factory.mktemp("milvus-server"))
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def milvus_server_process() -> Iterator[Callable[[Path], MilvusServerProcess]]:
    started: list[MilvusServerProcess] = []

    def start(base_dir: Path) -> MilvusServerProcess:
        server = start_milvus_server(base_dir)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def milvus_server_database_uri(milvus_server_uri: str) -> str:
    """The URI of a database of its own on the test server (http://host:port/database)."""
    admin = MilvusClient(uri=milvus_server_uri, dedicated=True)
    try:
        admin.create_database(SERVER_TEST_DATABASE)
    finally:
        admin.close()
    return f"{milvus_server_uri}/{SERVER_TEST_DATABASE}"


def _empty_collection(uri: str, name: str) -> None:
    client = MilvusClient(uri=uri, dedicated=True)
    try:
        fields = client.describe_collection(name)["fields"]
        primary_key = next(field["name"] for field in fields if field.get("is_primary"))
        everything = f'{primary_key} != ""'  # every primary key of the store is a non-empty string
        if not _count(client, name, everything, "Session"):  # sees all writes of this process
            return
        client.delete(name, filter=everything)
        # A Strong read waits for the server's newest timestamp, so once it is done the next
        # test's (Session) reads cannot see the deleted rows either.
        assert _count(client, name, everything, "Strong") == 0, f"{name} still has rows"
    finally:
        client.close()


def _count(client: MilvusClient, name: str, filter_expr: str, consistency_level: str) -> int:
    rows = client.query(
        name, filter=filter_expr, output_fields=["count(*)"], consistency_level=consistency_level
    )
    return rows[0]["count(*)"]


def _empty_every_collection(uri: str) -> None:
    client = MilvusClient(uri=uri, dedicated=True)
    try:
        names = client.list_collections()
    finally:
        client.close()
    # A Strong read takes ~0.5 s on the server: empty the collections side by side.
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        list(pool.map(partial(_empty_collection, uri), names))


@pytest.fixture(params=["lite", "server"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "lite":
        # The parent directory does not exist yet: the store must create it.
        yield str(tmp_path / "milvus" / "prism.db")
        return
    uri = request.getfixturevalue("milvus_server_database_uri")  # starts the server if needed
    try:
        yield uri
    finally:
        _empty_every_collection(uri)


@pytest.fixture
def store(store_uri: str) -> Iterator[MilvusStore]:
    with MilvusStore(store_uri) as milvus_store:
        yield milvus_store
