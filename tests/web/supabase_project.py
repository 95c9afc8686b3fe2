"""What a Supabase project answers the browser, for the real supabase-js (the npm package's UMD
bundle, which the page loads from its own origin): Auth's password sign-in and sign-out, and
Realtime's websocket (Phoenix channels, serializer 2.0.0) with `postgres_changes`.

The local Supabase emulator speaks PostgREST only: it has no Auth endpoints and no Realtime
websocket. So these are answered inside the browser by Playwright routes (`page.route`,
`page.route_web_socket`), the server's side of each protocol as supabase-js expects it; the
client code that runs is the real one. A change pushed to a channel is a real row of
public.story_jobs or public.stories (with its text, as the table's full replica identity lets
Realtime send it), read from the database (`relay` follows the rows of every joined channel as
Realtime would follow the WAL).

Sync Playwright runs these handlers on the test's thread while it waits in a Playwright call,
so `wait` and `relay` poll with `page.wait_for_timeout`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
import psycopg
from playwright.sync_api import Page, Route, WebSocketRoute

from storyq.config import DEV_JWT_SECRET

URL = "http://supabase-project.test"
# The project's anon key, as Supabase issues it (signed with the project's JWT secret).
ANON_KEY = jwt.encode(
    {"iss": "supabase", "ref": "storyq-local", "role": "anon", "iat": 1_700_000_000},
    DEV_JWT_SECRET,
    algorithm="HS256",
)
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
}


@dataclass
class Channel:
    """One joined Realtime channel: its topic, join reference and what it asked for."""

    topic: str
    join_ref: str
    config: dict[str, Any]
    access_token: str | None
    ids: list[int]
    socket: WebSocketRoute
    left: bool = False

    @property
    def table(self) -> str:
        changes = self.config.get("postgres_changes") or [{}]
        return str(changes[0].get("table") or "story_jobs")

    @property
    def row_id(self) -> str | None:
        for change in self.config.get("postgres_changes", []):
            found = re.fullmatch(r"id=eq\.(.+)", change.get("filter") or "")
            if found:
                return found[1]
        return None

    @property
    def job_id(self) -> str | None:
        return self.row_id if self.table == "story_jobs" else None


@dataclass
class SupabaseProject:
    """Answers Auth and Realtime for one page; records what the client asked."""

    accounts: dict[str, tuple[str, str]] = field(default_factory=dict)  # email: (password, token)
    refuse_joins: bool = False
    sign_ins: list[str] = field(default_factory=list)
    sign_outs: int = 0
    sockets: list[str] = field(default_factory=list)  # the websocket URLs opened
    channels: list[Channel] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # topics whose join was refused
    token_updates: list[tuple[str, str]] = field(default_factory=list)  # (topic, token)
    _next_id: int = 1

    url: str = URL
    anon_key: str = ANON_KEY

    def attach(self, page: Page) -> SupabaseProject:
        page.route(f"{self.url}/auth/v1/**", self._auth)
        page.route_web_socket(re.compile(r"/realtime/v1/websocket"), self._socket)
        return self

    def config_script(self, **extra: Any) -> str:
        """The page's settings (an init script) pointing it at this project."""
        settings = {"supabaseUrl": self.url, "supabaseAnonKey": self.anon_key, **extra}
        return f"window.STORYQ_CONFIG = {json.dumps(settings)};"

    # --- Auth (GoTrue) --------------------------------------------------------------------

    def _auth(self, route: Route) -> None:
        request = route.request
        if request.method == "OPTIONS":
            route.fulfill(status=204, headers=_CORS)
            return
        path = urlparse(request.url).path
        query = parse_qs(urlparse(request.url).query)
        if path == "/auth/v1/token" and query.get("grant_type") == ["password"]:
            body = request.post_data_json or {}
            email = str(body.get("email", ""))
            self.sign_ins.append(email)
            account = self.accounts.get(email)
            if account is None or account[0] != body.get("password"):
                self._json(
                    route,
                    400,
                    {
                        "code": 400,
                        "error_code": "invalid_credentials",
                        "msg": "Invalid login credentials",
                    },
                )
                return
            self._json(route, 200, _session(email, account[1]))
        elif path == "/auth/v1/logout":
            self.sign_outs += 1
            route.fulfill(status=204, headers=_CORS)
        else:
            self._json(route, 404, {"code": 404, "error_code": "not_found", "msg": path})

    @staticmethod
    def _json(route: Route, status: int, body: dict[str, Any]) -> None:
        route.fulfill(
            status=status,
            headers={**_CORS, "Content-Type": "application/json"},
            body=json.dumps(body),
        )

    # --- Realtime (Phoenix channels, vsn 2.0.0: [join_ref, ref, topic, event, payload]) ------

    def _socket(self, ws: WebSocketRoute) -> None:
        self.sockets.append(ws.url)
        ws.on_message(lambda message: self._on_message(ws, message))

    def _on_message(self, ws: WebSocketRoute, message: str | bytes) -> None:
        if isinstance(message, bytes):
            return  # binary frames carry broadcasts, which the page does not use
        join_ref, ref, topic, event, payload = json.loads(message)
        if event == "heartbeat":
            _send(ws, None, ref, topic, "phx_reply", {"status": "ok", "response": {}})
        elif event == "phx_join":
            self._join(ws, join_ref, ref, topic, payload)
        elif event == "phx_leave":
            for channel in self.channels:
                if channel.topic == topic and channel.join_ref == join_ref:
                    channel.left = True
            _send(ws, join_ref, ref, topic, "phx_reply", {"status": "ok", "response": {}})
        elif event == "access_token":
            self.token_updates.append((topic, payload.get("access_token")))

    def _join(
        self, ws: WebSocketRoute, join_ref: str, ref: str, topic: str, payload: dict[str, Any]
    ) -> None:
        if self.refuse_joins:
            self.refused.append(topic)
            reply = {"status": "error", "response": {"reason": "Realtime is unavailable"}}
            _send(ws, join_ref, ref, topic, "phx_reply", reply)
            return
        config = payload.get("config", {})
        answered = []
        ids = []
        for change in config.get("postgres_changes", []):
            ids.append(self._next_id)
            answered.append({**change, "id": self._next_id})
            self._next_id += 1
        self.channels.append(Channel(topic, join_ref, config, payload.get("access_token"), ids, ws))
        reply = {"status": "ok", "response": {"postgres_changes": answered}}
        _send(ws, join_ref, ref, topic, "phx_reply", reply)

    def push_change(self, channel: Channel, record: dict[str, Any], old: dict[str, Any]) -> None:
        """An UPDATE of `record` delivered to the channel, as Realtime sends it (to the bindings
        whose filter matched: the channel's)."""
        data = {
            "schema": "public",
            "table": channel.table,
            "commit_timestamp": datetime.now(UTC).isoformat(),
            "type": "UPDATE",
            "columns": [{"name": name, "type": "text"} for name in record],
            "record": record,
            "old_record": old,
            "errors": None,
        }
        _send(
            channel.socket,
            None,
            None,
            channel.topic,
            "postgres_changes",
            {
                "ids": channel.ids,
                "data": data,
            },
        )

    def open_channels(self) -> list[Channel]:
        return [channel for channel in self.channels if not channel.left]

    # --- waiting, relaying ------------------------------------------------------------------

    def wait(self, page: Page, check: Callable[[], Any], *, timeout: float = 10.0) -> Any:
        """Let the page run until `check()` is truthy; return it."""
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{check} still false after {timeout} s")
            page.wait_for_timeout(50)

    def relay(
        self,
        page: Page,
        database_url: str,
        until: Callable[[], bool],
        *,
        timeout: float = 30.0,
    ) -> int:
        """Push every change of a joined channel's job row to it until `until()`, as Realtime
        does (a row read from the database, not made up); returns how many were pushed."""
        seen: dict[str, dict[str, Any]] = {}
        pushed = 0

        def step() -> bool:
            nonlocal pushed
            for channel in self.open_channels():
                row_id = channel.row_id
                if row_id is None:
                    continue
                row = _row(database_url, channel.table, row_id)
                before = seen.get(channel.topic)
                if row is not None and before is not None and row != before:
                    self.push_change(channel, row, before)
                    pushed += 1
                if row is not None:
                    seen[channel.topic] = row
            return until()

        self.wait(page, step, timeout=timeout)
        return pushed


def _send(
    ws: WebSocketRoute,
    join_ref: str | None,
    ref: str | None,
    topic: str,
    event: str,
    payload: dict[str, Any],
) -> None:
    ws.send(json.dumps([join_ref, ref, topic, event, payload]))


def _session(email: str, token: str) -> dict[str, Any]:
    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(time.time())
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": 3600,
        "expires_at": now + 3600,
        "refresh_token": "refresh-" + str(claims["sub"]),
        "user": {
            "id": claims["sub"],
            "aud": "authenticated",
            "role": "authenticated",
            "email": email,
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {},
            "created_at": "2026-01-01T00:00:00Z",
        },
    }


_TABLES = {
    "story_jobs": "select to_jsonb(r) from public.story_jobs r where id = %s",
    "stories": "select to_jsonb(r) from public.stories r where id = %s",
}


def _row(database_url: str, table: str, row_id: str) -> dict[str, Any] | None:
    with psycopg.connect(database_url) as conn:
        found = conn.execute(_TABLES[table], (row_id,)).fetchone()
    return None if found is None else dict(found[0])
