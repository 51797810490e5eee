"""API keys are checked before anything reads the request body: a request without a key costs the
server its headers only, whatever body it brings. Real server on loopback, raw sockets where httpx
would hide what happens on the wire."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import minilm_settings
from tests.servers import prism_server

KEY = "secret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_REQUEST_BYTES = 1_000_000
ANSWER_DEADLINE_S = 60  # a deadline for the answer to arrive at all, not a speed assertion


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    settings = minilm_settings(
        tmp_path_factory.mktemp("auth"), api_keys=KEY, max_request_bytes=MAX_REQUEST_BYTES, whisper_model="", whisper_fallback_model=""
    )
    with prism_server(settings) as url:
        yield url


def test_malformed_json_without_a_key_is_401(url):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        response = httpx.post(f"{url}/v1/search", content=b"{not json", headers={**headers, "content-type": "application/json"})
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    response = httpx.post(f"{url}/v1/search", content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


def test_a_body_over_the_limit_without_a_key_is_401_not_413(url):
    body = b"x" * (MAX_REQUEST_BYTES + 1)
    response = httpx.post(f"{url}/v1/documents", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 401
    response = httpx.post(f"{url}/v1/documents", content=body, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 413


def send_headers_and_a_little(url: str, path: str, declared_length: int, sent: bytes, headers: str = "") -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=ANSWER_DEADLINE_S)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared_length}\r\n{headers}\r\n"
    )
    sock.sendall(head.encode() + sent)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_streamed_body_without_a_key_is_answered_before_it_is_sent(url):
    # Almost 1 MB announced (under PRISM_MAX_REQUEST_BYTES, so that no 413 could answer first), 1 KB
    # sent: the answer must come without the rest.
    declared = MAX_REQUEST_BYTES - 1
    with send_headers_and_a_little(url, "/v1/documents", declared, b'{"documents": [{"text": "' + b"w" * 1024) as sock:
        answer = read_until_closed(sock)  # the server answers and closes: it will not read the rest
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b'"unauthorized"' in answer


def test_a_generator_body_without_a_key_is_not_read_to_the_end(url):
    chunks_sent = 0
    total_chunks = 1000

    def body():
        nonlocal chunks_sent
        for _ in range(total_chunks):
            chunks_sent += 1
            yield b"w" * 65536

    try:
        response = httpx.post(f"{url}/v1/documents", content=body(), headers={"content-type": "application/json"}, timeout=ANSWER_DEADLINE_S)
        assert response.status_code == 401
    except httpx.TransportError:
        pass  # the server closed the connection on a client still sending: also not read
    assert chunks_sent < total_chunks


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/", "/ui/app.js", "/openapi.json", "/docs"])
def test_public_routes_need_no_key(url, path):
    assert httpx.get(f"{url}{path}").status_code == 200
