"""Serve the reference web page (the repository's `web/` folder) from the API of a local stack
(`storyq dev`, the browser tests). Not part of the API's Lambda package.

`mount_web(app, directory)` adds, after the API's own routes:
- GET `/`: `index.html`, with a `<base href="/web/">` so its relative asset links resolve;
- GET `/web/vendor/supabase.js`: supabase-js's UMD bundle from the npm package that `npm ci`
  installed (package-lock.json pins it), so the page loads the real client from its own
  origin with nothing copied or committed; when it is not installed, the folder's own
  `vendor/supabase.js` if there is one (`make web` copies it there), else 404 and the page
  signs in with a pasted token;
- `/web/...`: the folder's files (`/web/` is index.html too, as on any static host).

It never shadows `/api/*`, `/docs`, `/redoc` or `/openapi.json`: nothing is mounted at `/`
but that one exact path. In AWS the page is deployed to a static host instead, with the
bundle copied beside it (`make web`); see web/README.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storyq_local.config import project_root

WEB_PREFIX = "/web"
# Where the page looks for supabase-js (web/state.js's default `supabaseScript`), and where the
# pinned npm package has it.
SUPABASE_JS_PATH = "vendor/supabase.js"
SUPABASE_JS_PACKAGE_FILE = Path("node_modules/@supabase/supabase-js/dist/umd/supabase.js")

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


def installed_supabase_js() -> Path | None:
    """supabase-js's UMD bundle in the checkout's node_modules, or None before `npm ci`."""
    candidate = project_root() / SUPABASE_JS_PACKAGE_FILE
    return candidate if candidate.is_file() else None


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


def mount_web(
    app: FastAPI,
    directory: str | Path,
    *,
    supabase_js: Path | None = None,
    config: Mapping[str, object] | None = None,
) -> None:
    """Serve `directory` (holding index.html) at `/` and under `/web/`. Call it after the API
    routers are included; it adds only the exact path `/` and the `/web` prefix.
    `supabase_js`: the bundle served at `/web/vendor/supabase.js`; by default the installed npm
    package's, when there is one (else only what `directory` holds).
    `config`: served as `/web/config.js` (window.STORYQ_CONFIG, web/config.js's keys) instead of
    the folder's file, as a static host would replace it (`make sam-local`: `apiBaseUrl`)."""
    root = Path(directory).resolve()
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"{root} has no index.html")
    bundle = supabase_js or installed_supabase_js()

    @app.get("/", include_in_schema=False)
    async def web_index() -> HTMLResponse:
        # Read on every request: editing web/ needs no restart (dev only).
        return HTMLResponse(_index_html(root), headers=_HEADERS)

    if bundle is not None:
        served = bundle

        async def supabase_js_bundle() -> FileResponse:
            return FileResponse(served, media_type="text/javascript", headers=_HEADERS)

        app.add_api_route(
            f"{WEB_PREFIX}/{SUPABASE_JS_PATH}",
            supabase_js_bundle,
            methods=["GET", "HEAD"],
            include_in_schema=False,
        )

    if config is not None:
        # What a page set before this script (a test's init script) wins, as with web/config.js.
        script = (
            f"window.STORYQ_CONFIG = Object.assign({json.dumps(dict(config))}, "
            "window.STORYQ_CONFIG || {});\n"
        )

        async def config_js() -> Response:
            return Response(script, media_type="text/javascript", headers=_HEADERS)

        app.add_api_route(
            f"{WEB_PREFIX}/config.js", config_js, methods=["GET", "HEAD"], include_in_schema=False
        )

    app.mount(
        WEB_PREFIX,
        _WithHeaders(StaticFiles(directory=root, html=True, follow_symlink=False)),
        name="web",
    )
