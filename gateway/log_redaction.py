"""Secrets out of the log: a filter that rewrites tokens, API keys and bearer tokens in every record to `***`.

uvicorn logs each request's path with its query (`"WebSocket /ws/call?token=k1"`), and
clients may pass their key there; the filter sits on the root and uvicorn loggers and
their handlers, so a line from any module is redacted before it is written.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

_PATTERNS = (
    # ?token=… &api_key=… key=… secret=… (query strings, form bodies, free text)
    re.compile(r"(?i)(?<![\w-])((?:access_)?token|api[_-]?key|key|secret|password)=([^&\s\"'#,;]+)"),
    # Authorization: Bearer …, 'authorization': 'Bearer …', and a bare "Bearer …"
    re.compile(r"(?i)(\bbearer\s+)([^\s\"',;]+)"),
    # X-API-Key: … and 'x-api-key': '…'
    re.compile(r"(?i)(\bx-api-key['\"]?\s*[:=]\s*['\"]?)([^\s\"',;&]+)"),
    # Authorization: <scheme-less value>
    re.compile(r"(?i)(\bauthorization['\"]?\s*[:=]\s*['\"]?)(?!bearer\s)([^\s\"',;&]+)"),
    # the secret last segment of the provider webhooks (/hooks/aliyun/sms-report/<secret>)
    re.compile(r"(/hooks/(?:aliyun|tencent)/[\w-]+/)([^\s\"'?/#]+)"),
)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) + "=" if m.group(0)[len(m.group(1))] == "=" else m.group(1)) + MASK,
                           text)
    return text


def _redact_value(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class SecretRedactor(logging.Filter):
    """Rewrites the message and its arguments in place (uvicorn's access formatter reads the arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_value(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_value(v) for k, v in record.args.items()}
        return True


LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


def install(logger_names: tuple[str, ...] = LOGGERS) -> None:
    """Put the filter on these loggers and on their handlers (records propagated from children skip
    a logger's own filters, not its handlers'); once each, so calling again after uvicorn set up its
    logging adds it to the new handlers."""
    for name in logger_names:
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            if not any(isinstance(f, SecretRedactor) for f in target.filters):
                target.addFilter(SecretRedactor())
