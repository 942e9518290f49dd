"""FreeSWITCH's Event Socket protocol (ESL), sans I/O: frames parsed and written, and the
client's side of one inbound-mode connection as a state machine.

A frame is header lines `Name: value` ended by a blank line, then `Content-Length` bytes of body:

    Content-Type: auth/request                          FreeSWITCH, on connect
    auth ClueCon                                        us
    Content-Type: command/reply                         FreeSWITCH
    Reply-Text: +OK accepted                            (or -ERR invalid)
    event plain BACKGROUND_JOB CHANNEL_ANSWER …         us: subscribe
    bgapi originate {…}sofia/gateway/gw/138… &park()    us, with a `Job-UUID: …` header line
    Content-Type: command/reply / Reply-Text: +OK Job-UUID: …
    Content-Type: api/response + body                   the answer to `api …`
    Content-Type: text/event-plain + body               an event: its own header block, values
                                                        URL-encoded, and maybe a body of its own
                                                        (BACKGROUND_JOB: "+OK <uuid>" / "-ERR USER_BUSY")
    Content-Type: text/disconnect-notice                FreeSWITCH closes

Commands are answered in the order they were sent; `EslClient` pairs each `command/reply` (or
`api/response`) with the tag it was sent under. No sockets, clocks or threads here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Union
from urllib.parse import quote, unquote

MAX_HEADER_BYTES = 64 * 1024  # a header block longer than this is not ESL
MAX_BODY_BYTES = 16 * 1024 * 1024


class EslError(ValueError):
    """The peer broke the protocol (or a command would): the message says how."""


@dataclass(frozen=True)
class EslFrame:
    headers: Mapping[str, str]
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text", "")


@dataclass(frozen=True)
class EslEvent:
    name: str  # Event-Name (CUSTOM events: their Event-Subclass)
    headers: Mapping[str, str]  # URL-decoded
    body: str = ""

    def get(self, key: str, default: str = "") -> str:
        return self.headers.get(key, default)

    @property
    def unique_id(self) -> str:
        return self.get("Unique-ID")


def _header_block(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise EslError(f"ESL header line without a colon: {line[:60]!r}")
        headers[name.strip()] = value.strip()
    return headers


class EslParser:
    """Bytes in, whole frames out; a frame split across reads waits for its rest."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._headers: dict[str, str] | None = None
        self._length = 0

    def feed(self, data: bytes) -> list[EslFrame]:
        self._buffer += data
        frames: list[EslFrame] = []
        while True:
            if self._headers is None:
                end = self._buffer.find(b"\n\n")
                if end < 0:
                    if len(self._buffer) > MAX_HEADER_BYTES:
                        raise EslError(f"no end of an ESL header block in {len(self._buffer)} bytes")
                    return frames
                block = bytes(self._buffer[:end]).decode("utf-8", "replace").replace("\r", "")
                del self._buffer[:end + 2]
                if not block.strip():
                    continue  # stray blank lines between frames
                self._headers = _header_block(block)
                try:
                    self._length = int(self._headers.get("Content-Length", "0"))
                except ValueError:
                    raise EslError(f"bad Content-Length {self._headers.get('Content-Length')!r}") from None
                if not 0 <= self._length <= MAX_BODY_BYTES:
                    raise EslError(f"Content-Length {self._length} out of range")
            if len(self._buffer) < self._length:
                return frames
            body = bytes(self._buffer[:self._length])
            del self._buffer[:self._length]
            frames.append(EslFrame(self._headers, body))
            self._headers = None


def parse_event(frame: EslFrame) -> EslEvent:
    """A `text/event-plain` frame's event: URL-decoded headers, and its own body if it has one."""
    text = frame.body.decode("utf-8", "replace").replace("\r", "")
    block, _, rest = text.partition("\n\n")
    headers = {k: unquote(v) for k, v in _header_block(block).items()}
    body = ""
    if "Content-Length" in headers:
        raw = rest.encode("utf-8")
        body = raw[: int(headers["Content-Length"])].decode("utf-8", "replace")
    name = headers.get("Event-Name", "")
    if name == "CUSTOM" and headers.get("Event-Subclass"):
        name = headers["Event-Subclass"]
    return EslEvent(name, headers, body)


# --- writing -------------------------------------------------------------------

_LINE_BREAK = re.compile(r"[\r\n]")


def command(line: str, headers: Mapping[str, str] | None = None) -> bytes:
    """One command frame; a line break inside would start another command, so it is refused."""
    parts = [line, *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if any(_LINE_BREAK.search(p) for p in parts):
        raise EslError("an ESL command cannot contain a line break")
    return ("\n".join(parts) + "\n\n").encode("utf-8")


def serialize_event(headers: Mapping[str, str], body: str = "") -> bytes:
    """A `text/event-plain` frame as FreeSWITCH writes it (for fakes and tests)."""
    fields = dict(headers)
    raw_body = body.encode("utf-8")
    if raw_body:
        fields["Content-Length"] = str(len(raw_body))
    inner = "".join(f"{k}: {quote(str(v), safe='')}\n" for k, v in fields.items()).encode("utf-8") + b"\n" + raw_body
    return f"Content-Length: {len(inner)}\nContent-Type: text/event-plain\n\n".encode() + inner


def serialize_frame(headers: Mapping[str, str], body: bytes = b"") -> bytes:
    """Any other frame FreeSWITCH writes (auth/request, command/reply, api/response)."""
    fields = dict(headers)
    if body:
        fields["Content-Length"] = str(len(body))
    return "".join(f"{k}: {v}\n" for k, v in fields.items()).encode("utf-8") + b"\n" + body


_VARIABLE_VALUE = re.compile(r"[^,{}'\s\r\n]*")


def originate(uuid: str, dial_string: str, variables: Mapping[str, str], app: str = "&park()") -> str:
    """`originate {origination_uuid=…,k=v}<dial string> <app>` (the command, without bgapi)."""
    values = {"origination_uuid": uuid, **variables}
    for name, value in values.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or not _VARIABLE_VALUE.fullmatch(value):
            raise EslError(f"channel variable {name!r} has a name or value that would break the dial string")
    if not re.fullmatch(r"[^\s{}]+", dial_string):
        raise EslError(f"dial string {dial_string!r} is not one token")
    assignments = ",".join(f"{k}={v}" for k, v in values.items())
    return f"originate {{{assignments}}}{dial_string} {app}"


# --- the client's connection -------------------------------------------------------


@dataclass(frozen=True)
class Authenticated:
    pass


@dataclass(frozen=True)
class AuthFailed:
    reply: str


@dataclass(frozen=True)
class Reply:
    """The answer to the command sent under `tag`: `ok` when it began with +OK."""

    tag: str
    ok: bool
    text: str  # Reply-Text, or an api/response body


@dataclass(frozen=True)
class Disconnected:
    notice: str


ClientEvent = Union[Authenticated, AuthFailed, Reply, EslEvent, Disconnected]


@dataclass
class EslClient:
    """One inbound-mode connection, client side: `receive(bytes)` -> what happened; the `*_frame`
    methods give the bytes to write and remember which reply is whose."""

    password: str = field(repr=False)  # a secret: never in a repr or a log line
    parser: EslParser = field(default_factory=EslParser, repr=False)
    state: str = "connecting"  # connecting -> authenticating -> ready | failed | closed
    _pending: list[str] = field(default_factory=list)  # tags of commands awaiting replies, in order

    def receive(self, data: bytes) -> tuple[list[ClientEvent], bytes]:
        """What the bytes meant, and any bytes to write back at once (the auth answer)."""
        out: list[ClientEvent] = []
        write = b""
        for frame in self.parser.feed(data):
            kind = frame.content_type
            if kind == "auth/request":
                if self.state != "connecting":
                    raise EslError("auth/request on an authenticated connection")
                self.state = "authenticating"
                write += command(f"auth {self.password}")
            elif kind == "command/reply" and self.state == "authenticating":
                if frame.reply_text.startswith("+OK"):
                    self.state = "ready"
                    out.append(Authenticated())
                else:
                    self.state = "failed"
                    out.append(AuthFailed(frame.reply_text))
            elif kind in ("command/reply", "api/response"):
                if not self._pending:
                    raise EslError(f"a {kind} nobody asked for: {frame.reply_text or frame.body[:60]!r}")
                text = frame.reply_text if kind == "command/reply" else frame.body.decode("utf-8", "replace").strip()
                out.append(Reply(self._pending.pop(0), text.startswith("+OK"), text))
            elif kind == "text/event-plain":
                out.append(parse_event(frame))
            elif kind == "text/disconnect-notice":
                self.state = "closed"
                out.append(Disconnected(frame.body.decode("utf-8", "replace").strip()))
            # log/data and others: not subscribed to, nothing to act on
        return out, write

    def _command(self, tag: str, line: str, headers: Mapping[str, str] | None = None) -> bytes:
        if self.state != "ready":
            raise EslError(f"the connection is {self.state}, not ready for commands")
        frame = command(line, headers)
        self._pending.append(tag)
        return frame

    def subscribe_frame(self, events: tuple[str, ...], tag: str = "subscribe") -> bytes:
        return self._command(tag, "event plain " + " ".join(events))

    def bgapi_frame(self, line: str, job_uuid: str, tag: str | None = None) -> bytes:
        return self._command(tag or job_uuid, f"bgapi {line}", {"Job-UUID": job_uuid})

    def api_frame(self, line: str, tag: str) -> bytes:
        return self._command(tag, f"api {line}")

    def abandon(self) -> list[str]:
        """The connection is gone: the tags whose replies will never come."""
        tags, self._pending = self._pending, []
        self.state = "closed"
        return tags
