"""The one holder of the official account's access token, shared by every process through the
`provider_tokens` table.

WeChat gives one valid access token per account at a time: a process that fetched its own would
invalidate the others'. So the token lives in the database (name, token, expires_at, updated_at)
and each process reads it from there, keeping a copy in memory until shortly before it expires.
Refreshing happens under a lock on the row (PostgreSQL `SELECT ... FOR UPDATE`, SQLite
`BEGIN IMMEDIATE`), and only when the stored token is still the stale one: a process that waited
for the lock finds the token another process just stored and uses it instead of fetching again,
so concurrent refreshers never stampede. Tokens come from `/cgi-bin/stable_token` — in its
normal mode it answers the same token while it is valid; `force_refresh` is used only when
WeChat itself said the stored token is invalid (40001 / 42001).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator, Awaitable, Callable

import httpx
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.storage.database import provider_tokens
from scheduler.channels.base import SendError

log = logging.getLogger(__name__)

PROVIDER = "wechat"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# (token, seconds it is valid for); force=True asks WeChat for a new one.
Fetch = Callable[[bool], Awaitable[tuple[str, int]]]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)  # SQLite hands back naive UTC


@dataclass(frozen=True)
class StoredToken:
    token: str
    expires_at: datetime
    updated_at: datetime

    def fresh(self, now: datetime, margin: timedelta) -> bool:
        """Valid for longer than the margin (at most half its lifetime, for short-lived tokens)."""
        if not self.token:
            return False
        lifetime = self.expires_at - self.updated_at
        return now < self.expires_at - min(margin, lifetime / 2)


class StableTokenClient:
    """`POST /cgi-bin/stable_token` (grant_type client_credential)."""

    def __init__(self, api_base: str, app_id: str, app_secret: str, client: httpx.AsyncClient) -> None:
        self.url = api_base.rstrip("/") + "/cgi-bin/stable_token"
        self.app_id, self.app_secret = app_id, app_secret
        self._client = client

    async def __call__(self, force: bool) -> tuple[str, int]:
        if not self.app_id or not self.app_secret:
            raise SendError(PROVIDER, "not_configured", "wechat_app_id / wechat_app_secret are not set")
        body = {"grant_type": "client_credential", "appid": self.app_id, "secret": self.app_secret,
                "force_refresh": force}
        try:
            response = await self._client.post(self.url, json=body)
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SendError(PROVIDER, "token_unavailable", f"stable_token: {type(exc).__name__}: {exc}",
                            retryable=True) from None
        if isinstance(answer, dict) and answer.get("access_token"):
            return str(answer["access_token"]), int(answer.get("expires_in") or 7200)
        code = str(answer.get("errcode", f"http_{response.status_code}")) if isinstance(answer, dict) else "unreadable"
        message = str(answer.get("errmsg", "")) if isinstance(answer, dict) else response.text[:200]
        # -1 system busy, 45009 / 45011 rate limits: later may work; a wrong appid/secret or IP whitelist will not.
        retryable = code in ("-1", "45009", "45011") or response.status_code >= 500
        raise SendError(PROVIDER, f"token_{code}", f"stable_token: {message}", retryable=retryable)


class WechatTokenHolder:
    def __init__(self, engine: AsyncEngine, fetch: Fetch, *, name: str = "wechat", margin_s: float = 300.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.engine = engine
        self.fetch = fetch
        self.name = name
        self.margin = timedelta(seconds=margin_s)
        self._clock = clock
        self._cached: StoredToken | None = None
        self._lock = asyncio.Lock()  # one refresher per process; the row lock covers the others
        self.fetches = 0  # how many times this holder asked WeChat (for tests and metrics)

    async def token(self) -> str:
        cached = self._cached
        if cached and cached.fresh(self._clock(), self.margin):
            return cached.token
        async with self._lock:
            cached = self._cached
            if cached and cached.fresh(self._clock(), self.margin):
                return cached.token
            stored = await self._read()
            if stored and stored.fresh(self._clock(), self.margin):
                self._cached = stored
                return stored.token
            return await self._refresh(stale=None)

    async def invalidate(self, bad: str) -> str:
        """WeChat refused `bad` (40001 / 42001): a new token, fetched once across all processes."""
        async with self._lock:
            if self._cached and self._cached.token != bad and self._cached.fresh(self._clock(), self.margin):
                return self._cached.token
            self._cached = None
            return await self._refresh(stale=bad)

    async def _read(self) -> StoredToken | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(provider_tokens).where(provider_tokens.c.name == self.name))).first()
        return StoredToken(row.token, _aware(row.expires_at), _aware(row.updated_at)) if row else None

    @contextlib.asynccontextmanager
    async def _locked_row(self) -> AsyncIterator[tuple[AsyncConnection, StoredToken]]:
        """The row, locked until the block ends (created first, expired, if missing)."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(provider_tokens).values(name=self.name, token="", expires_at=EPOCH,
                                                                  updated_at=EPOCH))
        except IntegrityError:
            pass  # there already is one
        async with self.engine.connect() as conn:
            query = select(provider_tokens).where(provider_tokens.c.name == self.name)
            if conn.dialect.name == "sqlite":
                await conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock: one refresher at a time
            else:
                await conn.begin()
                query = query.with_for_update()
            try:
                row = (await conn.execute(query)).one()
                yield conn, StoredToken(row.token, _aware(row.expires_at), _aware(row.updated_at))
                await conn.commit()
            except BaseException:
                await conn.rollback()
                raise

    async def _refresh(self, stale: str | None) -> str:
        async with self._locked_row() as (conn, stored):
            now = self._clock()
            if stored.token and stored.token != stale and stored.fresh(now, self.margin):
                self._cached = stored  # another process refreshed while we waited for the lock
                return stored.token
            force = stale is not None and stored.token == stale
            token, expires_in = await self.fetch(force)
            self.fetches += 1
            now = self._clock()
            new = StoredToken(token, now + timedelta(seconds=expires_in), now)
            await conn.execute(update(provider_tokens).where(provider_tokens.c.name == self.name)
                               .values(token=new.token, expires_at=new.expires_at, updated_at=new.updated_at))
        self._cached = new
        log.info("wechat access token %s (valid %d s)", "force-refreshed" if force else "refreshed", expires_in)
        return new.token
