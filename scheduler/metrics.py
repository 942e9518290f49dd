"""Reminder metrics in the Prometheus text format: transitions counted in this process, and the
rows per campaign, channel and status read from the database (the same for every process)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


@dataclass
class ReminderMetrics:
    transitions: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (campaign, channel, status)
    send_errors: dict[tuple[str, str], int] = field(default_factory=dict)  # (provider, code)
    ticks: int = 0

    def count(self, campaign: str, channel: str, status: str, n: int = 1) -> None:
        key = (campaign, channel, status)
        self.transitions[key] = self.transitions.get(key, 0) + n

    def count_error(self, provider: str, code: str) -> None:
        self.send_errors[(provider, code)] = self.send_errors.get((provider, code), 0) + 1

    def render(self, rows: Iterable[tuple[str, str, str, int]]) -> str:
        lines = [
            "# HELP gateway_reminders Reminder rows in the database, by campaign, channel and status.",
            "# TYPE gateway_reminders gauge",
        ]
        lines += [f'gateway_reminders{{campaign="{c}",channel="{ch}",status="{s}"}} {n}' for c, ch, s, n in sorted(rows)]
        lines += ["# HELP gateway_reminder_transitions_total Reminder status changes made by this process.",
                  "# TYPE gateway_reminder_transitions_total counter"]
        lines += [f'gateway_reminder_transitions_total{{campaign="{c}",channel="{ch}",status="{s}"}} {n}'
                  for (c, ch, s), n in sorted(self.transitions.items())] or ["gateway_reminder_transitions_total 0"]
        lines += ["# HELP gateway_reminder_send_errors_total Provider send errors, by provider and code.",
                  "# TYPE gateway_reminder_send_errors_total counter"]
        lines += [f'gateway_reminder_send_errors_total{{provider="{p}",code="{code}"}} {n}'
                  for (p, code), n in sorted(self.send_errors.items())] or ["gateway_reminder_send_errors_total 0"]
        lines += ["# HELP gateway_scheduler_ticks_total Scheduler ticks run by this process.",
                  "# TYPE gateway_scheduler_ticks_total counter", f"gateway_scheduler_ticks_total {self.ticks}"]
        return "\n".join(lines) + "\n"
