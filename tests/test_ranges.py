"""Serving files with HTTP Range, over real HTTP: what an audio player needs to seek."""

from __future__ import annotations


import httpx
import pytest
from fastapi import FastAPI, Request

from api.errors import install_error_handlers
from api.ranges import RangeNotSatisfiable, content_disposition, file_response, first_byte_range
from tests.servers import serve_app

BODY = bytes(range(100))  # byte i has value i, so a wrong offset shows


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("ranges")
    (folder / "clip.mp3").write_bytes(BODY)
    (folder / "empty.bin").write_bytes(b"")
    app = FastAPI()
    install_error_handlers(app)

    @app.api_route("/files/{name}", methods=["GET", "HEAD"])  # FastAPI's @get alone does not answer HEAD
    def get_file(name: str, request: Request, filename: str | None = None):
        return file_response(folder / name, "audio/mpeg", request, filename=filename)

    with serve_app(app) as base:
        yield base


def get(url: str, path: str = "/files/clip.mp3", **headers) -> httpx.Response:
    return httpx.get(url + path, headers=headers)


def test_no_range_gives_the_whole_file(url):
    response = get(url)
    assert response.status_code == 200
    assert response.content == BODY
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-length"] == "100"
    assert response.headers["content-type"] == "audio/mpeg"
    assert "content-range" not in response.headers


@pytest.mark.parametrize(
    "range_header, start, end",
    [("bytes=0-9", 0, 9), ("bytes=10-", 10, 99), ("bytes=-5", 95, 99), ("bytes=90-500", 90, 99), ("bytes=-500", 0, 99), ("bytes=42-42", 42, 42)],
)
def test_a_range_gives_206_with_exactly_those_bytes(url, range_header, start, end):
    response = get(url, range=range_header)
    assert response.status_code == 206
    assert response.content == BODY[start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/100"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "audio/mpeg"


@pytest.mark.parametrize("range_header", ["bytes=1000-2000", "bytes=100-", "bytes=-0"])
def test_an_unsatisfiable_range_is_a_json_416(url, range_header):
    response = get(url, range=range_header)
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */100"
    assert response.headers["accept-ranges"] == "bytes"
    error = response.json()["error"]
    assert error["code"] == "range_not_satisfiable"
    assert "100 bytes" in error["message"]


def test_any_range_of_an_empty_file_is_unsatisfiable(url):
    response = get(url, "/files/empty.bin", range="bytes=0-")
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */0"


def test_several_ranges_serve_only_the_first(url):
    response = get(url, range="bytes=20-29, 50-59")
    assert response.status_code == 206
    assert response.content == BODY[20:30]
    assert response.headers["content-range"] == "bytes 20-29/100"
    assert response.headers["content-type"] == "audio/mpeg"  # not multipart/byteranges


@pytest.mark.parametrize("range_header", ["items=0-9", "bytes=9-2", "bytes=abc", "bytes=-", "nonsense"])
def test_an_unusable_range_header_is_ignored(url, range_header):
    response = get(url, range=range_header)
    assert response.status_code == 200
    assert response.content == BODY


def test_if_range_with_the_current_etag_gets_the_range_and_a_stale_one_the_whole_file(url):
    etag = get(url).headers["etag"]
    fresh = get(url, range="bytes=0-9", **{"if-range": etag})
    assert fresh.status_code == 206 and fresh.content == BODY[:10]
    stale = get(url, range="bytes=1000-2000", **{"if-range": '"stale"'})
    assert stale.status_code == 200 and stale.content == BODY


def test_head_gives_headers_without_a_body(url):
    response = httpx.head(url + "/files/clip.mp3", headers={"range": "bytes=10-19"})
    assert response.status_code == 206
    assert response.headers["content-range"] == "bytes 10-19/100"
    assert response.content == b""


def test_content_type_and_disposition(url):
    response = httpx.get(url + "/files/clip.mp3", params={"filename": "my song.mp3"}, headers={"range": "bytes=0-0"})
    assert response.status_code == 206
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.headers["content-disposition"] == 'inline; filename="my song.mp3"'
    quoted = httpx.get(url + "/files/clip.mp3", params={"filename": 'say "hi".mp3'})
    assert quoted.headers["content-disposition"] == r'inline; filename="say \"hi\".mp3"'
    assert "content-disposition" not in get(url).headers


def test_a_missing_file_is_a_json_404(url):
    response = get(url, "/files/missing.mp3")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_non_ascii_filenames_get_an_ascii_fallback_and_an_encoded_name():
    value = content_disposition('чай "1".mp3\r\nX-Evil: 1')
    assert value == "inline; filename=\"___ \\\"1\\\".mp3X-Evil: 1\"; filename*=UTF-8''%D1%87%D0%B0%D0%B9%20%221%22.mp3X-Evil%3A%201"
    assert "\r" not in value and "\n" not in value


def test_first_byte_range_parses_the_forms_players_send():
    assert first_byte_range("bytes=0-9", 100) == (0, 9)
    assert first_byte_range("Bytes = 5 - ", 100) == (5, 99)
    assert first_byte_range("bytes=-5", 100) == (95, 99)
    assert first_byte_range("bytes=3-4,7-8", 100) == (3, 4)
    assert first_byte_range("bytes=9-2", 100) is None
    with pytest.raises(RangeNotSatisfiable):
        first_byte_range("bytes=100-", 100)
