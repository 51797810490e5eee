"""Serve a file from disk with HTTP Range support, so an audio player can seek without downloading.

Starlette's FileResponse (1.x) already serves single byte ranges correctly: `a-b`, `a-` and the
suffix form `-n`, with 206, Content-Range, Content-Length, a seek to the start of the slice, If-Range,
HEAD, and ETag/Last-Modified. So it does the serving here. This module only decides, before it runs,
which range it sees, because three of its answers do not fit this API:

- an unsatisfiable range gets a plain-text 416; here it is the API's JSON error, with
  `Content-Range: bytes */size` still set;
- several ranges in one header get a multipart/byteranges body, which players never ask for and
  clients handle badly; here only the first range is served;
- a Range header it cannot parse (another unit, `5-2`, garbage) gets a 400; RFC 9110 lets a server
  ignore such a header, and a player then still gets playable bytes, so here the whole file is sent.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from api.errors import error_response
from retrieval.errors import NotFound

_RANGE_SPEC = re.compile(r"\s*([0-9]*)\s*-\s*([0-9]*)\s*")


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"requested range not satisfiable: the file has {size} bytes")
        self.size = size


def first_byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The first range of a Range header as inclusive (first, last) byte positions, clipped to
    the file; None when the header cannot be used and the whole file should be sent. Raises
    RangeNotSatisfiable when that range starts at or past the end of the file."""
    units, _, specs = header.partition("=")
    if units.strip().lower() != "bytes":
        return None
    match = _RANGE_SPEC.fullmatch(specs.split(",", 1)[0])  # several ranges: the first decides
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if first and last:
        start, end = int(first), int(last)
        if end < start:
            return None  # an invalid range: ignore the header, as RFC 9110 allows
    elif first:
        start, end = int(first), size - 1
    elif last:
        start, end = max(0, size - int(last)), size - 1
        if int(last) == 0:
            raise RangeNotSatisfiable(size)  # "the last 0 bytes" selects nothing
    else:
        return None
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, min(end, size - 1)


def content_disposition(filename: str, disposition: str = "inline") -> str:
    """`inline; filename="..."`, quoted-string escaped; non-ASCII names also get an RFC 5987
    `filename*` (the plain `filename` then carries an ASCII stand-in for old clients)."""
    cleaned = "".join(char for char in filename if char.isprintable())  # no CR/LF into a header
    fallback = "".join(char if " " <= char <= "~" else "_" for char in cleaned)
    fallback = fallback.replace("\\", "\\\\").replace('"', '\\"')
    value = f'{disposition}; filename="{fallback}"'
    if not cleaned.isascii():
        value += f"; filename*=UTF-8''{quote(cleaned, safe='')}"
    return value


class _FirstRangeFileResponse(FileResponse):
    """A FileResponse that sees the request's Range header replaced by `range_header` (or removed)."""

    def __init__(self, *args, range_header: str | None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.range_header = range_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(name, value) for name, value in scope["headers"] if name.lower() != b"range"]
        if self.range_header is not None:
            headers.append((b"range", self.range_header.encode("latin-1")))
        await super().__call__({**scope, "headers": headers}, receive, send)


def file_response(path: Path, content_type: str, request: Request, filename: str | None = None) -> Response:
    """The file at path: 200 whole, 206 for the first range of a Range header, or a JSON 416.
    Raises NotFound if the file is missing."""
    try:
        stat_result = os.stat(path)
    except FileNotFoundError:
        raise NotFound(f"file {filename or Path(path).name!r} not found") from None
    headers = {"accept-ranges": "bytes"}
    if filename is not None:
        headers["content-disposition"] = content_disposition(filename)
    # Built first: stat_result gives it the ETag and Last-Modified that If-Range is compared with.
    response = _FirstRangeFileResponse(path, headers=headers, media_type=content_type, stat_result=stat_result, range_header=None)

    range_header = request.headers.get("range")
    if range_header is None or not _if_range_holds(request.headers.get("if-range"), response):
        return response  # no range asked, or the client's copy is stale: the whole file
    try:
        selected = first_byte_range(range_header, stat_result.st_size)
    except RangeNotSatisfiable as error:
        return _not_satisfiable(error)
    if selected is not None:
        response.range_header = f"bytes={selected[0]}-{selected[1]}"
    return response


def _if_range_holds(if_range: str | None, response: FileResponse) -> bool:
    """RFC 9110 If-Range, as Starlette evaluates it: a strong ETag or the exact Last-Modified date."""
    if if_range is None:
        return True
    if if_range.startswith("W/"):
        return False
    return if_range in (response.headers.get("etag"), response.headers.get("last-modified"))


def _not_satisfiable(error: RangeNotSatisfiable) -> JSONResponse:
    headers = {"Content-Range": f"bytes */{error.size}", "Accept-Ranges": "bytes"}
    return error_response(416, "range_not_satisfiable", str(error), headers=headers)
