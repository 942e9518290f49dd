"""Outbound reminder calls through Twilio: `Calls.create`, answered by our own gateway.

    POST {api_base}/2010-04-01/Accounts/{AccountSid}/Calls.json      (basic auth: SID, auth token)
      To, From, Url, StatusCallback, StatusCallbackEvent (initiated ringing answered completed),
      MachineDetection, Timeout
    201 {"sid": "CA...", "status": "queued", ...}   error: {"code": 21211, "message": "...", "status": 400}

When the callee answers, Twilio fetches `Url` — the gateway's TwiML endpoint
(gateway/web/voice_hooks.py) — with `AnsweredBy` from machine detection; a person gets
`<Connect><Stream>` to the gateway's /ws/twilio, where the call runs its flow (the reminder
flow unless the message says another) with our delivery id, the flow and the message's params
as stream `<Parameter>`s. Status callbacks come back to the gateway and become `Receipt`s.
What the TwiML endpoint needs travels in the Url's query: Twilio signs the whole URL, so the
endpoint trusts it only with a valid `X-Twilio-Signature`.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping
from urllib.parse import urlencode

import httpx

from gateway.settings import Settings
from scheduler.channels.base import Accepted, OutboundMessage, SendError

log = logging.getLogger(__name__)

PROVIDER = "twilio_voice"
DEFAULT_FLOW = "reminder_call"
TWIML_PATH = "/voice/twilio/answer"
STATUS_PATH = "/voice/twilio/status"
PARAM_PREFIX = "p."  # message params in the TwiML Url's query: p.<name>=<value>
STATUS_EVENTS = "initiated ringing answered completed"
MACHINE_POLICIES = ("hangup", "leave_message")
_SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def http_base(public_url: str) -> str:
    """The gateway's public URL as http(s), whichever scheme the setting was written with."""
    url = public_url.rstrip("/")
    if url.startswith("wss://"):
        return "https://" + url[len("wss://"):]
    if url.startswith("ws://"):
        return "http://" + url[len("ws://"):]
    return url


def call_params(message: OutboundMessage) -> dict[str, str]:
    """What the call's flow gets: the message's params, and the message itself as `message`."""
    params = {str(k): str(v) for k, v in message.params.items()}
    params.setdefault("message", message.text)
    return params


def flow_of(message: OutboundMessage) -> str:
    return str(message.extra.get("flow") or DEFAULT_FLOW)


def machine_policy(message: OutboundMessage) -> str:
    policy = str(message.extra.get("machine") or "hangup")
    if policy not in MACHINE_POLICIES:
        raise SendError(PROVIDER, "bad_machine_policy",
                        f"extra.machine must be one of {', '.join(MACHINE_POLICIES)}, got {policy!r}")
    return policy


def twiml_url(public_url: str, message: OutboundMessage) -> str:
    query: dict[str, str] = {"delivery_id": message.delivery_id, "flow": flow_of(message),
                             "machine": machine_policy(message)}
    query.update({PARAM_PREFIX + k: v for k, v in call_params(message).items()})
    return f"{http_base(public_url)}{TWIML_PATH}?{urlencode(query)}"


def status_url(public_url: str, delivery_id: str) -> str:
    return f"{http_base(public_url)}{STATUS_PATH}?{urlencode({'delivery_id': delivery_id})}"


def create_form(message: OutboundMessage, *, from_number: str, public_url: str, machine_detection: str,
                ring_timeout_s: int) -> dict[str, str]:
    """The Calls.create form for one reminder (pure: no I/O)."""
    if not _SAFE_ID.fullmatch(message.delivery_id):
        raise SendError(PROVIDER, "bad_delivery_id", "delivery ids are 1-128 letters, digits and _.:-")
    form = {
        "To": message.to,
        "From": from_number,
        "Url": twiml_url(public_url, message),
        "Method": "POST",
        "StatusCallback": status_url(public_url, message.delivery_id),
        "StatusCallbackMethod": "POST",
        "StatusCallbackEvent": STATUS_EVENTS,
        "Timeout": str(ring_timeout_s),
    }
    if machine_detection:
        form["MachineDetection"] = machine_detection
    return form


def error_of(status: int, body: Any) -> SendError:
    """Twilio's error answer as a SendError: throttling and its own failures may pass later."""
    code = str(body.get("code", status)) if isinstance(body, Mapping) else str(status)
    text = str(body.get("message", "")) if isinstance(body, Mapping) else ""
    retryable = status == 429 or status >= 500
    return SendError(PROVIDER, code, text or f"HTTP {status}", retryable=retryable)


class TwilioVoice:
    """The Twilio voice channel: one `Calls.create` per reminder."""

    name = PROVIDER
    kind = "voice"

    def __init__(self, *, api_base: str, account_sid: str, auth_token: str, from_number: str, public_url: str,
                 machine_detection: str = "Enable", ring_timeout_s: int = 30, timeout_s: float = 10.0,
                 client: httpx.AsyncClient | None = None) -> None:
        if not (account_sid and auth_token and from_number and public_url):
            raise ValueError("twilio_voice needs twilio_account_sid, twilio_auth_token, twilio_from_number "
                             "and public_url")
        self.api_base = api_base.rstrip("/")
        self.account_sid = account_sid
        self.from_number = from_number
        self.public_url = public_url
        self.machine_detection = machine_detection
        self.ring_timeout_s = ring_timeout_s
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._auth = httpx.BasicAuth(account_sid, auth_token)

    @property
    def calls_url(self) -> str:
        return f"{self.api_base}/2010-04-01/Accounts/{self.account_sid}/Calls.json"

    async def send(self, message: OutboundMessage) -> Accepted:
        form = create_form(message, from_number=self.from_number, public_url=self.public_url,
                           machine_detection=self.machine_detection, ring_timeout_s=self.ring_timeout_s)
        try:
            response = await self._client.post(self.calls_url, data=form, auth=self._auth)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached Twilio: the same call may be placed again.
            raise SendError(PROVIDER, "network", f"{type(exc).__name__}: {exc}", retryable=True) from None
        except httpx.TransportError as exc:
            # The request went out and no answer came: Twilio may be dialling already.
            raise SendError(PROVIDER, "timeout", f"{type(exc).__name__}: {exc}", maybe_sent=True) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code not in (200, 201):
            raise error_of(response.status_code, body)
        sid = body.get("sid") if isinstance(body, Mapping) else None
        if not sid:
            raise SendError(PROVIDER, "bad_response", "Calls.create answered without a call sid", maybe_sent=True)
        log.info("reminder %s: Twilio call %s %s", message.delivery_id, sid, body.get("status", ""))
        return Accepted(PROVIDER, str(sid))

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


def from_settings(settings: Settings, client: httpx.AsyncClient | None = None) -> TwilioVoice:
    return TwilioVoice(
        api_base=settings.twilio_api_base, account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token, from_number=settings.twilio_from_number,
        public_url=settings.public_url, machine_detection=settings.twilio_machine_detection,
        ring_timeout_s=settings.voice_ring_timeout_s, client=client,
    )
