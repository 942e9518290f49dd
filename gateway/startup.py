"""What the gateway is doing while it starts: the state /healthz reports and call endpoints check.

The server listens as soon as the database is migrated; the speech model's fetch,
its static-graph compile (about a minute and a half on first start) and the
recognizer pool are prepared in the background. Until then /healthz answers 503
with what is being done, /livez 200, and calls are refused with 1013.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Startup:
    doing: str = "starting"
    ready: bool = False

    def step(self, doing: str) -> None:
        self.doing = doing

    def done(self) -> None:
        self.doing, self.ready = "", True
