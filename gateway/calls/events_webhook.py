"""Call events POSTed to a configured URL, in order, with retries."""

from __future__ import annotations

import asyncio
import logging

import httpx

from gateway.calls.registry import CallRegistry

log = logging.getLogger(__name__)


async def forward_events(registry: CallRegistry, url: str, *, attempts: int = 5, backoff_s: float = 0.5) -> None:
    """Runs for the app's lifetime; a failing receiver delays its own events, never a call."""
    sub = registry.subscribe()
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            while True:
                event = await sub.queue.get()
                for attempt in range(attempts):
                    try:
                        response = await client.post(url, json=event)
                        if response.status_code < 500:
                            break
                    except httpx.HTTPError as exc:
                        log.debug("webhook attempt %d failed: %s", attempt + 1, exc)
                    await asyncio.sleep(backoff_s * 2**attempt)
                else:
                    log.warning("webhook gave up on a %s event after %d attempts", event.get("type"), attempts)
    finally:
        registry.unsubscribe(sub)
