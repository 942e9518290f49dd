"""The survey definitions, the product catalog, the link key and the links' base URL, loaded once
from settings: what the pages, the API, the voice flow and the scheduler share (app.state.surveys).

The link key is `survey_link_key` when set, else a random key created once in
data_dir/survey_link.key (mode 0600) and read from there by every later start (and by a separate
`gateway scheduler` process on the same data_dir), so links stay valid across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from surveys.definition import Survey, load_surveys
from surveys.otp import OtpPolicy
from surveys.products import Catalog
from surveys.tokens import load_key

from gateway.settings import Settings
from gateway.storage.surveys import link

KEY_FILE = "survey_link.key"
CATALOG_FILE = "products.yaml"


def surveys_path(settings: Settings) -> Path:
    return Path(settings.surveys_dir).expanduser().resolve() if settings.surveys_dir \
        else settings.config_path / "surveys"


def link_key(settings: Settings) -> bytes:
    """The key of the links' tokens: the setting, else the key file (created on first use, 0600)."""
    return load_key(settings.survey_link_key, settings.data_path / KEY_FILE)


def base_url(settings: Settings) -> str:
    return (settings.survey_base_url or settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


@dataclass(frozen=True)
class SurveyLinks:
    """What computing an invitation's link needs (the scheduler needs only this)."""

    key: bytes
    base_url: str

    def url(self, salt_hex: str) -> str:
        return link(self.base_url, self.key, salt_hex)

    @classmethod
    def from_settings(cls, settings: Settings) -> "SurveyLinks":
        return cls(link_key(settings), base_url(settings))


@dataclass(frozen=True)
class SurveyService:
    surveys: Mapping[str, Survey]
    catalog: Catalog
    links: SurveyLinks
    zone: ZoneInfo
    otp_policy: OtpPolicy
    session_ttl_s: float
    min_seconds_per_question: float
    shared_device_limit: int

    @property
    def key(self) -> bytes:
        return self.links.key

    @property
    def base_url(self) -> str:
        return self.links.base_url

    def survey(self, name: str) -> Survey:
        """KeyError when there is no such survey."""
        return self.surveys[name]

    def url(self, invitation: Mapping[str, Any]) -> str:
        return self.links.url(invitation["token_salt"])

    def signal_options(self) -> dict[str, Any]:
        """complete()'s keyword arguments for the signals and the time zone."""
        return {"min_seconds_per_question": self.min_seconds_per_question,
                "shared_limit": self.shared_device_limit, "zone": self.zone}

    @classmethod
    def from_settings(cls, settings: Settings) -> "SurveyService":
        folder = surveys_path(settings)
        surveys = load_surveys(folder) if folder.is_dir() else {}
        catalog = Catalog.load(folder / CATALOG_FILE, default_cooling_off_days=settings.survey_cooling_off_days)
        catalog.check_surveys(surveys)  # every product's survey is one of the files: else SurveyError
        return cls(
            surveys=surveys,
            catalog=catalog,
            links=SurveyLinks.from_settings(settings),
            zone=ZoneInfo(settings.timezone),
            otp_policy=OtpPolicy(length=6, ttl_s=settings.survey_otp_ttl_s, per_minute=settings.survey_otp_per_minute,
                                 per_hour=settings.survey_otp_per_hour, max_wrong=settings.survey_otp_max_wrong),
            session_ttl_s=settings.survey_session_ttl_s,
            min_seconds_per_question=settings.survey_min_seconds_per_question,
            shared_device_limit=settings.survey_shared_device_limit,
        )
