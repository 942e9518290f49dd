"""A generic fake message provider: a real HTTP/1.1 server on loopback, and a Channel that calls it.

Not any one vendor's API (the Aliyun, Tencent, WeChat and voice fakes speak theirs): the
smallest provider shape the scheduler's tests and bench need, fast enough for 100,000 sends.

    POST /send  {"delivery_id", "kind", "to", "template", "params", "text"}
        200 {"code": "OK", "id": "<provider id>"}        accepted (logged, one line per accept)
        400 {"code": "REJECTED"}                          recipient in `reject`
        200 {"code": "UNREACHABLE"}                       recipient in `unreachable` (fall through)
        503 {"code": "BUSY"}                              while `fail_5xx` > 0 (counts down)
        (no answer)                                       recipient in `hang`, or `hang_all`
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
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
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
        holder["server"] = server
        started.set()
        async with server:
            await server.serve_forever()

    thread = threading.Thread(target=lambda: loop.run_until_complete(_quiet(main())), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield provider, f"http://127.0.0.1:{holder['port']}"
    finally:
        loop.call_soon_threadsafe(holder["server"].close)
        loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        thread.join(10)
        if provider._log:
            provider._log.close()


async def _quiet(coro: Any) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await coro


class GenericChannel:
    """A test-side Channel for the fake above (real channels live in scheduler/channels/)."""

    def __init__(self, base_url: str, *, name: str = "generic", kind: str = "sms", timeout_s: float = 5.0,
                 connections: int = 64) -> None:
        self.name = name
        self.kind = kind
        self.base_url = base_url.rstrip("/")
        self.client = httpx.AsyncClient(timeout=timeout_s, limits=httpx.Limits(max_connections=connections,
                                                                                max_keepalive_connections=connections))

    async def send(self, message: OutboundMessage) -> Accepted:
        body = {"delivery_id": message.delivery_id, "kind": message.kind, "to": message.to,
                "template": message.template, "params": dict(message.params), "text": message.text}
        try:
            response = await self.client.post(self.base_url + "/send", json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise SendError(self.name, "connect", str(exc) or type(exc).__name__, retryable=True) from None
        except httpx.HTTPError as exc:  # the request went out: it may have been accepted
            raise SendError(self.name, "timeout", str(exc) or type(exc).__name__, retryable=True, maybe_sent=True) from None
        answer = response.json()
        if response.status_code >= 500:
            raise SendError(self.name, answer.get("code", str(response.status_code)), "server error", retryable=True)
        if answer.get("code") == "UNREACHABLE":
            raise SendError(self.name, "UNREACHABLE", answer.get("message", ""), fall_through=True)
        if response.status_code != 200 or answer.get("code") != "OK":
            raise SendError(self.name, answer.get("code", str(response.status_code)), answer.get("message", ""))
        return Accepted(self.name, answer["id"])

    async def lookup(self, delivery_id: str) -> Accepted | None:
        try:
            response = await self.client.get(f"{self.base_url}/messages/{delivery_id}")
        except httpx.HTTPError as exc:
            raise SendError(self.name, "lookup", str(exc), retryable=True) from None
        if response.status_code == 404:
            return None
        return Accepted(self.name, response.json()["id"])

    async def receipts(self) -> list[Receipt]:
        """The receipts the fake queued, as the webhooks would hand them to the sink."""
        response = await self.client.get(self.base_url + "/receipts")
        return [Receipt(self.name, r["status"], datetime.fromisoformat(r["at"]), provider_id=r["id"],
                        delivery_id=r["delivery_id"]) for r in response.json()["receipts"]]

    async def aclose(self) -> None:
        await self.client.aclose()
