"""A fake claims system: a real HTTP server on loopback that records the webhooks it gets."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from dataclasses import dataclass, field
from typing import Iterator


@dataclass
class ClaimsSystem:
    url: str = ""
    received: list[dict] = field(default_factory=list)  # {"headers": {...}, "body": bytes, "json": {...}}
    fail_next: int = 0  # answer this many requests with HTTP 503 first
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deliveries(self) -> list[dict]:
        with self.lock:
            return list(self.received)


@contextlib.contextmanager
def fake_claims_system() -> Iterator[ClaimsSystem]:
    system = ClaimsSystem()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with system.lock:
                if system.fail_next > 0:
                    system.fail_next -= 1
                    status = 503
                else:
                    system.received.append(
                        {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                         "json": json.loads(body)}
                    )
                    status = 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    system.url = f"http://127.0.0.1:{server.server_address[1]}/claims"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield system
    finally:
        server.shutdown()
        server.server_close()
