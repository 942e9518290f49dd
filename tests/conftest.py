"""Shared fixtures: the real model from the local mirror, a real gateway on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import uvicorn

from gateway.app import create_app, model_spec
from gateway.claim_calls import Dialogues
from gateway.model_fetch import ensure_model
from gateway.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", ROOT.parent / "shared"))
AUDIO = SHARED / "audio"


def database_url_for_tests(tmp_path: Path) -> str:
    """SQLite in a temporary folder, or the PostgreSQL URL CI gives in GATEWAY_TEST_DATABASE_URL."""
    return os.environ.get("GATEWAY_TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """The model fetched once per machine from the mirror in ../shared/models (verified by sha256)."""
    base = load_settings(environ={})
    cache = Path(os.environ.get("GATEWAY_MODEL_CACHE_DIR", ROOT / "var" / "models"))
    mirrors = tuple(filter(None, os.environ.get("GATEWAY_MODEL_MIRRORS", "").split(","))) or (str(SHARED / "models"),)
    settings = base.replace(model_cache_dir=str(cache), model_mirrors=mirrors, model_url="")
    ensure_model(model_spec(settings))
    return cache


@pytest.fixture
def make_settings(tmp_path: Path, model_cache: Path):
    def make(**overrides) -> Settings:
        base = load_settings(environ={})
        values = dict(
            data_dir=str(tmp_path),
            database_url=database_url_for_tests(tmp_path),
            model_cache_dir=str(model_cache),
            model_mirrors=(),
            model_url="",
            recognizer_workers=2,
            idle_timeout_s=10.0,
        )
        values.update(overrides)
        return base.replace(**values)

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_dialogues: list[Dialogues] = []


def shared_dialogues() -> Dialogues:
    """Flows and understanding of config/, loaded once for the whole test run (they take seconds)."""
    if not _dialogues:
        _dialogues.append(Dialogues.from_config(ROOT / "config"))
    return _dialogues[0]


@contextlib.contextmanager
def running_gateway(settings: Settings) -> Iterator[str]:
    """Run a real gateway (uvicorn, websockets) on a loopback port in a thread; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings.replace(port=port), shared_dialogues() if not settings.config_dir else None),
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        ws_max_size=settings.max_message_bytes,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"gateway-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("gateway did not start")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def gateway(make_settings):
    """A gateway with default test settings; yields 'host:port'."""
    with running_gateway(make_settings()) as address:
        yield address
