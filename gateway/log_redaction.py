"""Secrets out of the log and out of what calls publish.

A filter rewrites tokens, API keys, bearer tokens, passwords and signatures in every record to
`***`: uvicorn logs each request's path with its query (`"WebSocket /ws/call?token=k1"`), and
clients may pass their key there; the filter sits on the root and uvicorn loggers and their
handlers, so a line from any module is redacted before it is written.

`without_credentials` drops the same kinds of values from a call's parameters (Twilio passes
the API key as the stream parameter `token`) before they are published or stored.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

MASK = "***"

# Names that carry credentials, in parameters and fields (lower case, '-' and '_' removed): any
# name containing one of these words or ending in one of these keys, or one of the short ones.
_CREDENTIAL_WORDS = ("token", "secret", "password", "passwd", "signature", "credential", "authorization")
_CREDENTIAL_KEYS = ("apikey", "accesskey", "secretkey", "privatekey", "authkey", "appkey", "signkey", "signingkey")
_CREDENTIAL_SHORT = frozenset({"key", "pwd", "pass", "sig", "sign", "auth"})
_NAME = r"[A-Za-z][\w-]*"

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
# {'token': 'k1'} and "api_key": "k1" (dicts and JSON in a message); the name is checked by is_credential
_QUOTED = re.compile(r"""((["'])(""" + _NAME + r""")\2\s*:\s*(["']))((?:(?!\4).)+)""")


def is_credential(name: str) -> bool:
    """Does a parameter or field of this name carry a credential (a key, token, password, signature)?"""
    plain = name.lower().replace("-", "").replace("_", "")
    return plain in _CREDENTIAL_SHORT or plain.endswith(_CREDENTIAL_KEYS) or any(w in plain for w in _CREDENTIAL_WORDS)


def without_credentials(params: Mapping[str, str]) -> dict[str, str]:
    """A call's parameters without those that carry credentials (for events, results and logs)."""
    return {k: v for k, v in params.items() if not is_credential(k)}


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) + "=" if m.group(0)[len(m.group(1))] == "=" else m.group(1)) + MASK,
                           text)
    return _QUOTED.sub(lambda m: m.group(1) + MASK if is_credential(m.group(3)) and MASK not in m.group(5)
                       else m.group(0), text)


def _redact_value(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class SecretRedactor(logging.Filter):
    """Rewrites the arguments in place (uvicorn's access formatter reads them), then the message as
    formatted: a secret may be in an argument that is no string (a dict of parameters), and the
    template itself must not be rewritten (`"key=%s"` would lose its placeholder)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_value(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_value(v) for k, v in record.args.items()}
        if not isinstance(record.msg, str):
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: logging reports it; its template is still redacted
            record.msg = redact(record.msg)
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
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
