"""A generic fake message provider: a real HTTP/1.1 server on loopback, and a Channel that calls it.

Not any one vendor's API (the Aliyun, Tencent, WeChat and voice fakes speak theirs): the
smallest provider shape the scheduler's tests and bench need, fast enough for 100,000 sends.

    POST /send  {"delivery_id", "kind", "to", "template", "params", "text"}
        200 {"code": "OK", "id": "<provider id>"}        accepted (logged, one line per accept)
        400 {"code": "REJECTED"}                          recipient in `reject`
        200 {"code": "UNREACHABLE"}                       recipient in `unreachable` (fall through)
        503 {"code": "BUSY"}                              while `fail_5xx` > 0 (counts down)
        (no answer)                                       recipient in `hang`, or `hang_all`
                                                          (`delay_after_s`: accepted, answer late)
    GET /messages/<delivery_id>  200 {"id": ...} or 404   what the provider got (reconciliation)
    GET /receipts                                         receipts queued since the last call

Receipts: every accept queues `delivered` (or the status in `receipt_for[recipient]`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx

from scheduler.channels.base import Accepted, OutboundMessage, Receipt, SendError


@dataclass
class FakeProvider:
    name: str = "generic"
    delay_s: float = 0.0
    delay_after_s: float = 0.0  # accepted and logged, then the answer waits (a kill in between)
    fail_5xx: int = 0
    reject: set[str] = field(default_factory=set)
    unreachable: set[str] = field(default_factory=set)
    hang: set[str] = field(default_factory=set)
    hang_all: bool = False
    receipt_for: dict[str, str] = field(default_factory=dict)  # recipient -> receipt status ("" for none)
    log_path: Path | None = None  # one "delivery_id id" line per accepted send, flushed at once
    sends: list[dict[str, Any]] = field(default_factory=list)  # every accepted send, in order
    requests: int = 0
    _receipts: list[dict[str, Any]] = field(default_factory=list)
    _by_delivery: dict[str, str] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def _accept(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        to = str(body.get("to", ""))
        if self.fail_5xx > 0:
            self.fail_5xx -= 1
            return 503, {"code": "BUSY"}
        if to in self.reject:
            return 400, {"code": "REJECTED", "message": "invalid recipient"}
        if to in self.unreachable:
            return 200, {"code": "UNREACHABLE", "message": "recipient cannot be reached on this channel"}
        delivery = str(body.get("delivery_id", ""))
        provider_id = f"{self.name}-{next(self._ids)}"
        self.sends.append({**body, "id": provider_id})
        self._by_delivery.setdefault(delivery, provider_id)
        if self._log is not None:
            self._log.write(f"{delivery} {provider_id}\n")
            self._log.flush()
        status = self.receipt_for.get(to, "delivered")
        if status:
            self._receipts.append({"id": provider_id, "delivery_id": delivery, "status": status,
                                   "at": datetime.now(timezone.utc).isoformat()})
        return 200, {"code": "OK", "id": provider_id}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                self.requests += 1
                status, answer = 404, {"code": "NOT_FOUND"}
                if method == "POST" and path == "/send":
                    payload = json.loads(body or b"{}")
                    if self.hang_all or payload.get("to") in self.hang:
                        await asyncio.sleep(3600)  # never answers: the caller times out
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    status, answer = self._accept(payload)
                    if self.delay_after_s:
                        await asyncio.sleep(self.delay_after_s)
                elif method == "GET" and path.startswith("/messages/"):
                    found = self._by_delivery.get(path.rsplit("/", 1)[1])
                    status, answer = (200, {"id": found}) if found else (404, {"code": "NOT_FOUND"})
                elif method == "GET" and path == "/receipts":
                    status, answer = 200, {"receipts": self._receipts}
                    self._receipts = []
                data = json.dumps(answer).encode()
                writer.write(b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                             % (status, len(data), data))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the fake is stopping
        finally:
            writer.close()

    def count_by_delivery(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for send in self.sends:
            counts[send["delivery_id"]] = counts.get(send["delivery_id"], 0) + 1
        return counts

    _log: Any = None


@contextlib.contextmanager
def running_provider(provider: FakeProvider | None = None) -> Iterator[tuple[FakeProvider, str]]:
    """Serve the fake on a loopback port in its own thread and loop; yield it and its base URL."""
    provider = provider or FakeProvider()
    provider._log = provider.log_path.open("a", encoding="utf-8") if provider.log_path else None
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        server = await asyncio.start_server(provider._handle, "127.0.0.1", 0, backlog=1024)
        holder["port"] = server.sockets[0].getsockname()[1]
        holder["stop"] = asyncio.Event()
        started.set()
        await holder["stop"].wait()
        server.close()
        # Handlers still waiting (hung or slow answers) end here, not when the loop is collected.
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield provider, f"http://127.0.0.1:{holder['port']}"
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(10)
        loop.close()
        if provider._log:
            provider._log.close()


class _Connections:
    """Keep-alive HTTP/1.1 connections to the fake over asyncio streams: a minimal client, because
    httpx's pool tops out at a few hundred requests a second, below what the bench measures."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self.idle: asyncio.LifoQueue = asyncio.LifoQueue()
        self.free = asyncio.Semaphore(size)

    async def request(self, method: str, path: str, body: bytes, timeout_s: float) -> tuple[int, bytes]:
        async with self.free:
            try:
                reader, writer = self.idle.get_nowait()
            except asyncio.QueueEmpty:
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout_s)
                except (OSError, TimeoutError) as exc:
                    raise ConnectionError(f"connect: {exc or type(exc).__name__}") from None
            try:
                writer.write(f"{method} {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
                             f"content-length: {len(body)}\r\n\r\n".encode() + body)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
                lines = head.decode("latin-1").split("\r\n")
                length = next(int(l.split(":", 1)[1]) for l in lines if l.lower().startswith("content-length:"))
                data = await asyncio.wait_for(reader.readexactly(length), timeout_s)
            except BaseException:
                writer.close()
                raise
            self.idle.put_nowait((reader, writer))
            return int(lines[0].split(" ")[1]), data

    async def close(self) -> None:
        while not self.idle.empty():
            _, writer = self.idle.get_nowait()
            writer.close()


class GenericChannel:
    """A test-side Channel for the fake above (real channels live in scheduler/channels/)."""

    def __init__(self, base_url: str, *, name: str = "generic", kind: str = "sms", timeout_s: float = 5.0,
                 connections: int = 64) -> None:
        self.name = name
        self.kind = kind
        parsed = httpx.URL(base_url)
        self.timeout_s = timeout_s
        self.pool = _Connections(parsed.host, parsed.port or 80, connections)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        status, data = await self.pool.request(method, path, json.dumps(body or {}).encode(), self.timeout_s)
        return status, json.loads(data)

    async def send(self, message: OutboundMessage) -> Accepted:
        body = {"delivery_id": message.delivery_id, "kind": message.kind, "to": message.to,
                "template": message.template, "params": dict(message.params), "text": message.text}
        try:
            status, answer = await self._call("POST", "/send", body)
        except ConnectionError as exc:  # nothing went out
            raise SendError(self.name, "connect", str(exc), retryable=True) from None
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:  # the request went out: maybe accepted
            raise SendError(self.name, "timeout", str(exc) or type(exc).__name__, retryable=True, maybe_sent=True) from None
        if status >= 500:
            raise SendError(self.name, answer.get("code", str(status)), "server error", retryable=True)
        if answer.get("code") == "UNREACHABLE":
            raise SendError(self.name, "UNREACHABLE", answer.get("message", ""), fall_through=True)
        if status != 200 or answer.get("code") != "OK":
            raise SendError(self.name, answer.get("code", str(status)), answer.get("message", ""))
        return Accepted(self.name, answer["id"])

    async def lookup(self, delivery_id: str) -> Accepted | None:
        try:
            status, answer = await self._call("GET", f"/messages/{delivery_id}")
        except (ConnectionError, TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            raise SendError(self.name, "lookup", str(exc) or type(exc).__name__, retryable=True) from None
        return None if status == 404 else Accepted(self.name, answer["id"])

    async def receipts(self) -> list[Receipt]:
        """The receipts the fake queued, as the webhooks would hand them to the sink."""
        _, answer = await self._call("GET", "/receipts")
        return [Receipt(self.name, r["status"], datetime.fromisoformat(r["at"]), provider_id=r["id"],
                        delivery_id=r["delivery_id"]) for r in answer["receipts"]]

    async def aclose(self) -> None:
        await self.pool.close()
