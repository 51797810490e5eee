"""The web UI: one static page at `/` that searches and manages the library through /v1.

The page itself needs no key (it holds no data); when the server has API keys, the page asks the
person for one and sends it to /v1 as `Authorization: Bearer <key>`, keeping it for the browser tab
only. Plain HTML, CSS and JavaScript from api/ui/: no build step, and nothing fetched from elsewhere
(the Content-Security-Policy allows this origin only).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
ASSETS = {"app.js": "text/javascript; charset=utf-8", "ask.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}

HEADERS = {
    "Cache-Control": "no-cache",  # revalidate, so an upgraded server serves its own page
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "; ".join(
        [
            "default-src 'self'",
            "img-src 'self' blob: data:",  # thumbnails fetched with a key become blob: URLs
            "media-src 'self' blob:",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    ),
}

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(UI_DIR / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/ui/{name}")
def asset(name: str) -> FileResponse:
    if name not in ASSETS:  # a fixed list: no path from the request ever reaches the file system
        raise HTTPException(404, f"no UI asset {name!r}")
    return FileResponse(UI_DIR / name, media_type=ASSETS[name], headers=HEADERS)
