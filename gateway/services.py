"""Everything a request handler may use, built once per app and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass

from .auth import Authenticator
from .calls import CallRegistry
from .database import Database
from .metrics import Metrics
from .settings import Settings
from .speech_service import SpeechService


@dataclass
class Services:
    settings: Settings
    auth: Authenticator
    registry: CallRegistry
    metrics: Metrics
    database: Database
    speech: SpeechService
