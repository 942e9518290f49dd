"""Settings: defaults from a TOML file, overridden by GATEWAY_* environment variables."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "GATEWAY_"
DEFAULT_SETTINGS_FILE = Path(__file__).resolve().parent.parent / "config" / "settings.toml"


WEBHOOKS_ENV_PREFIX = ENV_PREFIX + "WEBHOOKS_"
_TOPIC = re.compile(r"^[a-z][a-z0-9_]*$")  # lower case so GATEWAY_WEBHOOKS_<TOPIC>_URL maps back to one topic
CLAIMS_TOPIC = "claim_report"  # the route claims_webhook_* configure


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class WebhookRoute:
    """Where the outbox delivers one topic: `[webhooks.<topic>]` url, secret, backoff_s."""

    topic: str
    url: str
    secret: str = ""
    backoff_s: float = 2.0


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    # A second port (same host) speaking vosk-server's protocol on its root, as vosk-server's 2700; 0: off.
    vosk_server_port: int = 0
    data_dir: str = "var"
    database_url: str = ""
    timezone: str = "Asia/Shanghai"
    log_level: str = "info"

    model_name: str = "vosk-model-small-cn-0.22"
    model_sha256: str = "3af8b0e7e0f835ae9d414ce5df580237a3cfb08d586c9fbbb0f7ff29ad5b14ba"
    model_url: str = "https://alphacephei.com/vosk/models/vosk-model-small-cn-0.22.zip"
    model_mirrors: tuple[str, ...] = ()
    model_cache_dir: str = ""
    # Compose the model's two-part graph into one static graph after fetching (OpenFst tools).
    static_graph: bool = True

    api_keys: tuple[str, ...] = ()
    twilio_auth_token: str = ""
    public_url: str = ""

    max_calls: int = 32
    max_message_bytes: int = 262144
    idle_timeout_s: float = 30.0
    auth_timeout_s: float = 5.0  # a connection without a key on the upgrade must authenticate by then
    max_call_s: float = 3600.0
    recognizer_workers: int = 0
    # Recognizers kept between calls (without a static graph ~115 MB each once warm); 0: max_calls.
    recognizer_pool_size: int = 0
    # Without a static graph: WAV files of speech that warm recognizers before the first call (a
    # fresh one costs ~2.5x the CPU on its first ~40 s of speech); empty: calls warm them.
    warmup_audio_dir: str = ""
    # How many to warm (0: the whole pool), at this input rate (the callers' line rate).
    warmup_recognizers: int = 0
    warmup_sample_rate: int = 8000
    # New calls are refused (1013) while recognition trails real time by more than this; 0: never.
    max_decode_lag_s: float = 1.0

    vad_enabled: bool = True
    vad_preroll_ms: int = 300
    trailing_silence_ms: int = 600
    max_utterance_s: float = 20.0
    partial_interval_ms: int = 200
    # Gated audio is decoded in batches of at least this much (an utterance's end at once).
    recognize_batch_ms: int = 100

    webhook_url: str = ""

    # Dialogue timing: silence after a prompt (beyond its own duration) that counts as no answer;
    # prompt duration is estimated at this many characters a second when we don't play it.
    no_input_s: float = 8.0
    prompt_chars_per_s: float = 5.0
    # Prompts on platforms that play audio: "espeak" (offline, espeak-ng), "http" (a TTS
    # provider, see gateway/tts/http_engine.py) or "none".
    tts_engine: str = "espeak"
    tts_http_url: str = ""
    tts_http_api_key: str = ""
    tts_voice: str = ""
    # Where a transferred Twilio call is dialled (TwiML <Dial> after the stream ends).
    transfer_number: str = ""

    # Flows (config/flows/*.yaml) and dictionaries (config/dictionaries/); empty: the bundled config/.
    config_dir: str = ""
    # Finished claim reports are POSTed here, signed with the secret (HMAC-SHA256).
    claims_webhook_url: str = ""
    claims_webhook_secret: str = ""
    claims_webhook_backoff_s: float = 2.0
    # API keys that may see personal data (names, ID and phone numbers) unmasked.
    pii_api_keys: tuple[str, ...] = ()
    # Outbox routes of other topics ([webhooks.<topic>] url, secret, backoff_s in the TOML file).
    webhooks: tuple[WebhookRoute, ...] = ()
    # `gateway serve` migrates the database to the newest schema at start; off: it refuses an old one.
    db_auto_upgrade: bool = True
    # Crashes and shutdown: each process heartbeats its `instances` row this often; a peer whose
    # heartbeat is older than `instance_dead_after_s` is dead and its open calls are recovered.
    instance_heartbeat_s: float = 5.0
    instance_dead_after_s: float = 30.0
    # SIGTERM: calls in progress may go on this long, then they are ended as `shutdown`.
    shutdown_drain_s: float = 10.0

    # Message channels (scheduler/channels/): provider endpoints and credentials, see README "Channels".
    aliyun_access_key_id: str = ""
    aliyun_access_key_secret: str = ""
    aliyun_sms_endpoint: str = "https://dysmsapi.aliyuncs.com"
    aliyun_sms_sign_name: str = ""
    aliyun_voice_endpoint: str = "https://dyvmsapi.aliyuncs.com"
    aliyun_voice_show_number: str = ""  # CalledShowNumber of voice notifications; empty: the public pool
    tencent_secret_id: str = ""
    tencent_secret_key: str = ""
    tencent_sms_endpoint: str = "https://sms.tencentcloudapi.com"
    tencent_sms_region: str = "ap-guangzhou"
    tencent_sms_app_id: str = ""
    tencent_sms_sign_name: str = ""
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_app_id: str = ""
    wechat_app_secret: str = ""
    wechat_token: str = ""  # the server token WeChat signs its pushes with
    # The secret path segment of the webhooks of providers that do not sign their pushes (Aliyun, Tencent).
    provider_hook_secret: str = ""
    provider_timeout_s: float = 10.0
    sms_opt_out_line: str = "拒收请回复R"  # appended to marketing SMS
    # Outbound voice reminders (scheduler/channels/twilio_voice.py, freeswitch_voice.py). Twilio and
    # FreeSWITCH reach the gateway at `public_url` (its TwiML, status callbacks and media streams).
    twilio_api_base: str = "https://api.twilio.com"
    twilio_account_sid: str = ""
    twilio_from_number: str = ""
    twilio_machine_detection: str = "Enable"  # Twilio's MachineDetection: Enable, DetectMessageEnd, "" (off)
    voice_ring_timeout_s: int = 30  # how long an outbound call rings before it counts as no answer
    freeswitch_esl_host: str = "127.0.0.1"
    freeswitch_esl_port: int = 8021
    freeswitch_esl_password: str = "ClueCon"  # FreeSWITCH's stock password: change it there and here
    freeswitch_gateway: str = ""  # the sofia gateway calls go out through (sofia/gateway/<name>/<number>)
    freeswitch_stream_module: str = "audio_stream"  # audio_stream (uuid_audio_stream) or audio_fork
    freeswitch_stream_url: str = ""  # the ws:// URL FreeSWITCH streams to; empty: public_url + /ws/freeswitch

    # Reminders (scheduler/): `gateway serve` runs the scheduler too unless this is off.
    scheduler_enabled: bool = True
    campaigns_dir: str = ""  # empty: config/campaigns
    scheduler_tick_s: float = 5.0
    scheduler_plan_interval_s: float = 300.0
    scheduler_batch: int = 500
    scheduler_concurrency: int = 64
    scheduler_lease_s: float = 120.0
    scheduler_max_attempts: int = 5
    scheduler_retry_base_s: float = 30.0
    scheduler_reconcile_wait_s: float = 900.0
    # Local hours each channel may be used in (the timezone setting), and sends per recipient a day.
    scheduler_voice_hours: str = "09:00-21:00"
    scheduler_sms_hours: str = "08:00-22:00"
    scheduler_wechat_hours: str = "08:00-22:00"
    scheduler_voice_per_day: int = 1
    scheduler_sms_per_day: int = 3
    scheduler_wechat_per_day: int = 3
    # provider=sends_per_second, e.g. aliyun_sms=100 (per process).
    scheduler_provider_rates: tuple[str, ...] = ()

    # Follow-up surveys (surveys/, gateway/web/survey_pages.py): definitions in config/surveys/.
    surveys_dir: str = ""  # empty: config/surveys
    # Links are <survey_base_url>/s/<token>; empty: public_url, else http://host:port.
    survey_base_url: str = ""
    # Key of the links' tokens and checksums (HMAC); empty: a random key kept in data_dir/survey_link.key.
    survey_link_key: str = ""
    survey_cooling_off_days: int = 15  # a product's own days in config/surveys/products.yaml win
    survey_session_ttl_s: float = 1800.0  # a page session idle this long needs a fresh code
    survey_otp_ttl_s: float = 300.0
    survey_otp_per_minute: int = 1
    survey_otp_per_hour: int = 5
    survey_otp_max_wrong: int = 5  # wrong codes before the invitation is locked for an hour
    survey_otp_provider: str = "aliyun_sms"  # the SMS channel the codes go out on
    survey_otp_template: str = "SMS_SURVEY_CODE"
    survey_otp_text: str = "您的回访验证码为{code}，5分钟内有效，请勿告诉他人。"
    # A face/liveness provider (HTTP); empty: identity is the ID suffix and the SMS code.
    survey_liveness_url: str = ""
    survey_liveness_api_key: str = ""
    # Signals of answers not given by the policyholder.
    survey_min_seconds_per_question: float = 2.0
    survey_shared_device_limit: int = 3  # more policyholders than this on one device or address: flagged

    # Rows of `instances` (processes) stopped or dead this many days are pruned on a gateway's
    # heartbeat; 0: kept for ever.
    instance_retention_days: float = 7.0

    def __post_init__(self) -> None:
        if self.vosk_server_port and self.vosk_server_port == self.port:
            raise SettingsError(f"vosk_server_port {self.vosk_server_port} is the main port; pick another, or 0 for off")
        if self.instance_retention_days < 0 or 0 < self.instance_retention_days * 86400 <= self.instance_dead_after_s:
            raise SettingsError(f"instance_retention_days ({self.instance_retention_days:g}) must be 0 (keep) or "
                                f"longer than instance_dead_after_s ({self.instance_dead_after_s:g} s)")
        if self.instance_heartbeat_s <= 0 or self.instance_dead_after_s <= self.instance_heartbeat_s:
            raise SettingsError(
                f"instance_dead_after_s ({self.instance_dead_after_s:g}) must exceed instance_heartbeat_s "
                f"({self.instance_heartbeat_s:g}) > 0, or live gateways are taken for dead"
            )
        if self.claims_webhook_url and any(r.topic == CLAIMS_TOPIC for r in self.webhooks):
            raise SettingsError(
                f"the {CLAIMS_TOPIC!r} route is set twice: by claims_webhook_url and by [webhooks.{CLAIMS_TOPIC}]"
            )

    # Derived paths ---------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def model_cache_path(self) -> Path:
        if self.model_cache_dir:
            return Path(self.model_cache_dir).expanduser().resolve()
        return self.data_path / "models"

    @property
    def config_path(self) -> Path:
        if self.config_dir:
            return Path(self.config_dir).expanduser().resolve()
        return DEFAULT_SETTINGS_FILE.parent

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_path / 'gateway.db'}"

    @property
    def workers(self) -> int:
        return self.recognizer_workers or (os.cpu_count() or 1)

    @property
    def pool_size(self) -> int:
        return self.recognizer_pool_size or self.max_calls

    @property
    def delivery_routes(self) -> dict[str, WebhookRoute]:
        """Every outbox topic with a webhook: claims_webhook_* as the claim_report route, then [webhooks]."""
        routes = {r.topic: r for r in self.webhooks}
        if self.claims_webhook_url:
            routes[CLAIMS_TOPIC] = WebhookRoute(
                CLAIMS_TOPIC, self.claims_webhook_url, self.claims_webhook_secret, self.claims_webhook_backoff_s
            )
        return routes

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **_coerce_all(changes))


def _field_types() -> dict[str, Any]:
    defaults = Settings()
    return {f.name: type(getattr(defaults, f.name)) for f in dataclasses.fields(Settings)}


def _webhook_routes(value: Any) -> tuple[WebhookRoute, ...]:
    """[webhooks.<topic>] tables (a mapping of topic to url/secret/backoff_s), or routes as they are."""
    if isinstance(value, tuple) and all(isinstance(r, WebhookRoute) for r in value):
        return value
    if not isinstance(value, Mapping):
        raise SettingsError(
            "setting 'webhooks': expected [webhooks.<topic>] tables with url, secret, backoff_s "
            "(or GATEWAY_WEBHOOKS_<TOPIC>_URL / _SECRET / _BACKOFF_S)"
        )
    known = {f.name for f in dataclasses.fields(WebhookRoute)} - {"topic"}
    routes = []
    for topic, table in value.items():
        where = f"webhooks.{topic}"
        if not isinstance(topic, str) or not _TOPIC.match(topic):
            raise SettingsError(f"setting {where!r}: a topic is lower-case letters, digits and underscores")
        if not isinstance(table, Mapping):
            raise SettingsError(f"setting {where!r}: expected a table with url, secret, backoff_s")
        unknown = sorted(set(table) - known)
        if unknown:
            raise SettingsError(f"unknown setting {where + '.' + unknown[0]!r}")
        if not table.get("url"):
            raise SettingsError(f"setting {where + '.url'!r} is missing")
        try:
            routes.append(WebhookRoute(topic, str(table["url"]), str(table.get("secret", "")),
                                       float(table.get("backoff_s", 2.0))))
        except (TypeError, ValueError):
            raise SettingsError(f"setting {where + '.backoff_s'!r}: cannot read {table['backoff_s']!r} as float") from None
    return tuple(sorted(routes, key=lambda r: r.topic))


def _webhooks_from_env(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """GATEWAY_WEBHOOKS_<TOPIC>_URL / _SECRET / _BACKOFF_S as {topic: {key: value}}."""
    found: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(WEBHOOKS_ENV_PREFIX):
            continue
        rest = name[len(WEBHOOKS_ENV_PREFIX):]
        key = next((k for k in ("backoff_s", "secret", "url") if rest.endswith("_" + k.upper())), None)
        if key is None or len(rest) == len(key) + 1:
            raise SettingsError(f"environment variable {name}: expected {WEBHOOKS_ENV_PREFIX}<TOPIC>_URL, _SECRET or _BACKOFF_S")
        found.setdefault(rest[: -len(key) - 1].lower(), {})[key] = value
    return found


def _coerce(name: str, kind: Any, value: Any) -> Any:
    if name == "webhooks":
        return _webhook_routes(value)
    try:
        if kind is tuple:
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        if kind is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in {"1", "true", "yes", "on"}:
                    return True
                if lowered in {"0", "false", "no", "off", ""}:
                    return False
                raise ValueError(value)
            return bool(value)
        return kind(value)
    except (TypeError, ValueError):
        raise SettingsError(f"setting {name!r}: cannot read {value!r} as {kind.__name__}") from None


def _coerce_all(values: Mapping[str, Any]) -> dict[str, Any]:
    types = _field_types()
    out = {}
    for name, value in values.items():
        if name not in types:
            raise SettingsError(f"unknown setting {name!r}")
        out[name] = _coerce(name, types[name], value)
    return out


def load_settings(
    path: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (default config/settings.toml), then GATEWAY_* variables."""
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get(ENV_PREFIX + "SETTINGS") or DEFAULT_SETTINGS_FILE)
    values: dict[str, Any] = {}
    if path.exists():
        with path.open("rb") as fh:
            try:
                values.update(tomllib.load(fh))
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"{path}: {exc}") from None
    elif environ.get(ENV_PREFIX + "SETTINGS"):
        raise SettingsError(f"settings file {path} does not exist")
    types = _field_types()
    for name in types:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            values[name] = environ[env_name]
    overrides = _webhooks_from_env(environ)
    tables = values.get("webhooks", {})
    if overrides and isinstance(tables, Mapping):  # otherwise the webhooks value's own error is the one to see
        values["webhooks"] = {topic: {**tables.get(topic, {}), **overrides.get(topic, {})}
                              for topic in {*tables, *overrides}}
    return Settings(**_coerce_all(values))
