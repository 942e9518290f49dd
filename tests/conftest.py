"""Shared fixtures: the real model from the local mirror, a real gateway on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import uvicorn
from sqlalchemy.engine import make_url

from gateway.app import create_app, model_spec
from gateway.calls.flow_call import Dialogues
from gateway.model.fetch import ensure_model
from gateway.model.graph import ensure_static_graph
from gateway.settings import Settings, load_settings
from gateway.web.vosk_port import bind_sockets
from gateway.web.ws_protocol import BufferedWebSocketProtocol

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", ROOT.parent / "shared"))
AUDIO = SHARED / "audio"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that uses the `test_database` fixture, directly or through another fixture
    (make_settings, gateway, engines...), is marked `database`: CI runs exactly those again on
    PostgreSQL (`-m "database and not slow"`). A test making a database by other means
    (`isolated_database` in a module fixture) marks itself."""
    for item in items:
        if "test_database" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.database)


def _in_thread(coro) -> None:
    """Run a coroutine to completion on its own loop (fixtures are sync; a test loop may exist)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    parsed = make_url(url)
    conn = await asyncpg.connect(host=parsed.host, port=parsed.port or 5432, user=parsed.username,
                                 password=parsed.password, database=parsed.database)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def isolated_database(tmp_path: Path) -> Iterator[str]:
    """A database of the test's own: SQLite in a temporary folder, or, when CI gives a
    PostgreSQL server in GATEWAY_TEST_DATABASE_URL, a fresh database created on it."""
    server = os.environ.get("GATEWAY_TEST_DATABASE_URL")
    if not server:
        yield f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
        return
    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    _in_thread(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        _in_thread(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """The model fetched once per machine from the mirror in ../shared/models (verified by sha256)."""
    base = load_settings(environ={})
    cache = Path(os.environ.get("GATEWAY_MODEL_CACHE_DIR", ROOT / "var" / "models"))
    mirrors = tuple(filter(None, os.environ.get("GATEWAY_MODEL_MIRRORS", "").split(","))) or (str(SHARED / "models"),)
    settings = base.replace(model_cache_dir=str(cache), model_mirrors=mirrors, model_url="")
    # Compiled here, once, so that no server start in a test waits a minute for it.
    ensure_static_graph(ensure_model(model_spec(settings)))
    return cache


@pytest.fixture
def test_database(tmp_path: Path) -> Iterator[str]:
    with isolated_database(tmp_path) as url:
        yield url


@pytest.fixture
def make_settings(tmp_path: Path, model_cache: Path, test_database: str):
    def make(**overrides) -> Settings:
        base = load_settings(environ={})
        values = dict(
            data_dir=str(tmp_path),
            database_url=test_database,
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
def model_gateway(tmp: Path, model_cache: Path) -> Iterator[str]:
    """A real gateway with the real model on a database of its own (module-scoped fixtures of
    the recognition tests); yields its host:port."""
    with isolated_database(tmp) as url:
        settings = load_settings(environ={}).replace(
            data_dir=str(tmp), database_url=url, model_cache_dir=str(model_cache),
            model_mirrors=(), model_url="", recognizer_workers=2)
        with running_gateway(settings) as address:
            yield address

@contextlib.contextmanager
def running_gateway(settings: Settings, *, port: int | None = None, receipt_sink=None) -> Iterator[str]:
    """Run a real gateway (uvicorn, websockets) on a loopback port in a thread; yield its base URL.
    `port`: a port chosen beforehand (e.g. for `public_url`); `receipt_sink`: as create_app's."""
    port = port or free_port()
    # Bound here as `gateway serve` binds them: the main port and, when set, the vosk-server port.
    sockets = bind_sockets("127.0.0.1", [port] + ([settings.vosk_server_port] if settings.vosk_server_port else []))
    failures: list[BaseException] = []
    app = create_app(settings.replace(port=port), shared_dialogues() if not settings.config_dir else None,
                     on_start_failure=failures.append, receipt_sink=receipt_sink)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ws=BufferedWebSocketProtocol,  # as `gateway serve` runs it
        ws_max_size=settings.max_message_bytes,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, name=f"gateway-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    # Listening comes first now; calls need the model and recognizers the background start prepares.
    while not (server.started and app.state.services.startup.ready):
        if failures or not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=30)
            raise RuntimeError(f"gateway did not start: {failures[0] if failures else 'timed out'}")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        for sock in sockets:
            sock.close()


@pytest.fixture
def gateway(make_settings):
    """A gateway with default test settings; yields 'host:port'."""
    with running_gateway(make_settings()) as address:
        yield address
