"""Serve the reference web page (the repository's `web/` folder) from the API of a local stack
(`storyq dev`, the browser tests). Not part of the API's Lambda package.

`mount_web(app, directory)` adds, after the API's own routes:
- GET `/`: `index.html`, with a `<base href="/web/">` so its relative asset links resolve;
- `/web/...`: the folder's files (`/web/` is index.html too, as on any static host).

It never shadows `/api/*`, `/docs`, `/redoc` or `/openapi.json`: nothing is mounted at `/`
but that one exact path. In AWS the page is deployed to a static host instead; see
web/README.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storyq_local.config import project_root

WEB_PREFIX = "/web"

# The page runs only its own scripts (no inline script, no CDN); what it may connect to is
# left open, since config.js may point it at another API origin or a Supabase project.
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "script-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
    ),
}


def default_web_directory() -> Path | None:
    """`web/` of the source checkout, or None when there is no page there."""
    candidate = project_root() / "web"
    return candidate if (candidate / "index.html").is_file() else None


def _index_html(directory: Path) -> str:
    html = (directory / "index.html").read_text(encoding="utf-8")
    base = f'<base href="{WEB_PREFIX}/">'
    head = html.find("<head>")
    if head == -1:
        return base + html
    end = head + len("<head>")
    return html[:end] + "\n  " + base + html[end:]


class _WithHeaders:
    """Adds `_HEADERS` to every answer of the wrapped static-file app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in _HEADERS.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount_web(app: FastAPI, directory: str | Path) -> None:
    """Serve `directory` (holding index.html) at `/` and under `/web/`. Call it after the API
    routers are included; it adds only the exact path `/` and the `/web` prefix."""
    root = Path(directory).resolve()
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"{root} has no index.html")

    @app.get("/", include_in_schema=False)
    async def web_index() -> HTMLResponse:
        # Read on every request: editing web/ needs no restart (dev only).
        return HTMLResponse(_index_html(root), headers=_HEADERS)

    app.mount(
        WEB_PREFIX,
        _WithHeaders(StaticFiles(directory=root, html=True, follow_symlink=False)),
        name="web",
    )
