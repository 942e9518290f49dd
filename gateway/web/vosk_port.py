"""The vosk-server port: a listening port of its own on which every path is the vosk-server protocol.

alphacep's vosk-server listens on a port (2700) and speaks its protocol on any path;
clients connect to `ws://host:2700`. With `vosk_server_port` set, `gateway serve`
listens there too, in the same process and app; this middleware sends whatever
arrives on that port to the root path, where the vosk-server endpoint and a plain
GET answer. The gateway's other endpoints stay on the main port.
"""

from __future__ import annotations

import socket

from starlette.types import ASGIApp, Receive, Scope, Send


class VoskServerPort:
    """ASGI middleware: requests to `port` go to "/" (the vosk-server endpoint, or what GET / says)."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.port and scope["type"] in {"http", "websocket"} and (scope.get("server") or (None, None))[1] == self.port:
            scope = {**scope, "path": "/", "raw_path": b"/", "root_path": ""}
        await self.app(scope, receive, send)


def bind_sockets(host: str, ports: list[int]) -> list[socket.socket]:
    """One listening socket per port on `host`, bound now (uvicorn serves them all in one server)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets = []
    try:
        for port in ports:
            # IPPROTO_TCP said, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that
            # say so, and with Nagle on every small reply waited ~40 ms for the peer's delayed ACK
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
