"""A relay in front of an HTTP/1.1 server that counts the bytes of the requests it forwards, by
path: what a client sends over the wire (request line, headers and body) and what comes back.

The emulators count requests (`LocalStack.request_counts`), not their size; a worker pointed at
this relay (its SUPABASE_URL) shows what its requests weigh. The client-to-server stream is read
request by request (httpx sends JSON bodies with a Content-Length, one request at a time on a
connection); the answers are relayed as they come and charged to the last request's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Traffic:
    requests: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)  # request line, headers and body
    body: Counter[str] = field(default_factory=Counter)  # the request bodies alone
    received: Counter[str] = field(default_factory=Counter)  # the answers, headers included

    def copy(self) -> Traffic:
        return Traffic(
            Counter(self.requests), Counter(self.sent), Counter(self.body), Counter(self.received)
        )

    def since(self, before: Traffic) -> Traffic:
        return Traffic(
            self.requests - before.requests,
            self.sent - before.sent,
            self.body - before.body,
            self.received - before.received,
        )


class CountingRelay:
    """Listens on a free loopback port and relays to `upstream_url`; `url` is where to point a
    client. `stop()` closes it."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.traffic = Traffic()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="counting-relay", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CountingRelay:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("the relay did not start")
        return self

    def snapshot(self) -> Traffic:
        with self._lock:
            return self.traffic.copy()

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self._upstream)
        path = [""]
        answers = asyncio.create_task(self._answers(up_r, client_w, path))
        try:
            while True:
                head = await client_r.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next(
                    (
                        int(line.split(":", 1)[1])
                        for line in lines[1:]
                        if line.lower().startswith("content-length:")
                    ),
                    0,
                )
                body = await client_r.readexactly(length) if length else b""
                target = lines[0].split(" ")[1] if " " in lines[0] else lines[0]
                path[0] = target.split("?", 1)[0]
                with self._lock:
                    self.traffic.requests[path[0]] += 1
                    self.traffic.sent[path[0]] += len(head) + len(body)
                    self.traffic.body[path[0]] += len(body)
                up_w.write(head + body)
                await up_w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed its connection
        finally:
            answers.cancel()
            for writer in (up_w, client_w):
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

    async def _answers(
        self, up_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, path: list[str]
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await up_r.read(65536):
                with self._lock:
                    self.traffic.received[path[0]] += len(chunk)
                client_w.write(chunk)
                await client_w.drain()
        client_w.close()
