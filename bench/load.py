"""A small HTTP/1.1 load generator on raw asyncio streams.

One keep-alive connection per simulated client, each sending its requests one after another:
N clients are N connections with at most N requests in flight. Raw streams rather than httpx,
whose AsyncClient slows down badly past ~50 connections in one client (its pool and its
per-request overhead would be measured instead of the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class ProtocolError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection; requests are sent one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self._reader = reader
        self._writer = writer
        self._host = host

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def send(self, request: Request) -> Response:
        head = [f"{request.method} {request.path} HTTP/1.1", f"Host: {self._host}"]
        head += [f"{name}: {value}" for name, value in request.headers.items()]
        if request.body or request.method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(request.body)}")
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + request.body)
        await self._writer.drain()
        return await self._read_response()

    async def _read_response(self) -> Response:
        status_line = await self._reader.readline()
        if not status_line:
            raise ProtocolError("the server closed the connection")
        parts = status_line.split(b" ", 2)
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self._reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked()
        else:
            body = b""
        return Response(status=status, headers=headers, body=body)

    async def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int((await self._reader.readline()).split(b";")[0], 16)
            if size == 0:
                await self._reader.readline()
                return b"".join(chunks)
            chunks.append(await self._reader.readexactly(size))
            await self._reader.readline()


@dataclass
class LoadResult:
    """Latencies (seconds) of the requests answered as expected, and what went wrong."""

    clients: int
    latencies: list[float]
    wall_seconds: float
    statuses: Counter[int]
    errors: int
    error_samples: list[str]
    degraded: int = 0

    @property
    def requests(self) -> int:
        return self.statuses.total() + self.transport_errors

    @property
    def transport_errors(self) -> int:
        return self.errors - sum(n for status, n in self.statuses.items() if status >= 400)

    def summary(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "requests": self.requests,
            "errors": self.errors,
            "degraded": self.degraded,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "p50_ms": percentile_ms(self.latencies, 50),
            "p95_ms": percentile_ms(self.latencies, 95),
            "p99_ms": percentile_ms(self.latencies, 99),
            "mean_ms": round(statistics.fmean(self.latencies) * 1000, 2)
            if self.latencies
            else None,
            "throughput_rps": round(len(self.latencies) / self.wall_seconds, 1),
            "wall_seconds": round(self.wall_seconds, 3),
            "error_samples": self.error_samples[:5],
        }


def percentile_ms(values: list[float], pct: float) -> float | None:
    """The nearest-rank percentile, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank] * 1000, 2)


MakeRequest = Callable[[int, int], Request]  # (client number, request number) -> request


async def run_load(
    url: str,
    make: MakeRequest,
    *,
    clients: int,
    per_client: int,
    expect: int,
    degraded: Callable[[Response], bool] | None = None,
) -> LoadResult:
    """`clients` connections, each sending `per_client` requests back to back; all connections
    are opened before the clock starts and each client starts at the same moment. `degraded`
    flags expected answers that still fell short (counted, not errors)."""
    connections = await asyncio.gather(*(Connection.open(url) for _ in range(clients)))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    samples: list[str] = []
    errors = flagged = 0
    go = asyncio.Event()

    async def client(number: int, conn: Connection) -> None:
        nonlocal errors, flagged
        await go.wait()
        for n in range(per_client):
            request = make(number, n)
            started = time.perf_counter()
            try:
                response = await conn.send(request)
            except (OSError, ProtocolError, asyncio.IncompleteReadError, ValueError) as exc:
                errors += 1
                samples.append(f"{type(exc).__name__}: {exc}")
                await conn.close()
                conn = await Connection.open(url)
                continue
            elapsed = time.perf_counter() - started
            statuses[response.status] += 1
            if response.status == expect:
                latencies.append(elapsed)
                flagged += degraded is not None and degraded(response)
            else:
                errors += 1
                samples.append(f"{response.status}: {response.body[:200]!r}")
        await conn.close()

    tasks = [asyncio.create_task(client(i, c)) for i, c in enumerate(connections)]
    await asyncio.sleep(0)
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    return LoadResult(
        clients=clients,
        latencies=latencies,
        wall_seconds=wall,
        statuses=statuses,
        errors=errors,
        error_samples=samples,
        degraded=flagged,
    )
