"""Command line: `gateway serve`, `gateway scheduler`, `gateway model fetch`, `gateway db upgrade`, `gateway db current`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING

from gateway import log_redaction
from gateway.auth import is_loopback_bind
from gateway.model.fetch import ModelUnavailable, ensure_model
from gateway.model.graph import ensure_static_graph
from gateway.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Voice and notification gateway for insurance customer service. "
        "Settings come from config/settings.toml (or GATEWAY_SETTINGS) and GATEWAY_* environment variables.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway (fetches the speech model on first start)")
    serve.add_argument("--host", help="address to listen on (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default from settings: 8000)")
    model = commands.add_parser("model", help="manage the speech model")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    model_commands.add_parser(
        "fetch", help="fetch, verify (sha256) and unpack the speech model into the cache, then compile its "
        "static decoding graph (unless static_graph is off)"
    )
    commands.add_parser("scheduler", help="run the reminder scheduler on its own (no web server); with "
                        "PostgreSQL several may share one database, with SQLite run one")
    db = commands.add_parser("db", help="the database schema (migrations)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="migrate the database to the newest schema (a database made before "
                           "migrations is recognized and stamped first)")
    db_commands.add_parser("current", help="print the schema revision of the database and whether it is at head")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log_redaction.install()  # keys passed as ?token= or in headers never reach a log line
    # Alembic narrates its set-up at INFO; gateway.storage.migrate says what was migrated.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.command == "model":
        return _fetch_model(settings)
    if args.command == "db":
        return _db(settings, args.db_command)
    if args.command == "scheduler":
        return _scheduler(settings)
    code = _serve(settings, args.host, args.port)
    # Stopped: every call is stored and the database closed. The interpreter's own teardown would
    # spend seconds collecting the speech model and dictionaries; a stop takes the drain and no more.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _db_command(settings: Settings, command: str) -> str:
    from gateway.storage import migrate
    from gateway.storage.database import create_engine

    engine = create_engine(settings.effective_database_url)
    try:
        if command == "upgrade":
            before, after = await migrate.migrate(engine)  # `before` as found under the lock
            if before.current == after and before.stamped:
                return f"{after} head (nothing to do)"
            return f"{after} head (upgraded from {before.current or 'empty'})"
        return (await migrate.state(engine)).describe()
    finally:
        await engine.dispose()


def _db(settings: Settings, command: str) -> int:
    try:
        print(asyncio.run(_db_command(settings, command)))
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback, for an unreachable or broken database
        print(f"gateway: database {command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _scheduler(settings: Settings) -> int:
    """`gateway scheduler`: migrate (or check) the schema, then tick until SIGINT or SIGTERM."""
    import signal

    from gateway.storage import migrate
    from gateway.storage.database import create_engine
    from scheduler.campaigns import CampaignError
    from scheduler.service import SchedulerService, build_dispatcher

    async def run() -> int:
        engine = create_engine(settings.effective_database_url)
        try:
            await migrate.prepare(engine, auto_upgrade=settings.db_auto_upgrade)
            service = SchedulerService(build_dispatcher(settings, engine), settings.scheduler_tick_s,
                                       settings.scheduler_plan_interval_s)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await service.start()
            await stop.wait()
            await service.stop()
            return 0
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (migrate.SchemaOutOfDate, CampaignError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1


def _schema_refusal(settings: Settings) -> str | None:
    """With db_auto_upgrade off, why the schema stops `serve` (None: it is at head)."""
    from gateway.storage import migrate
    from gateway.storage.database import create_engine

    async def check() -> str | None:
        engine = create_engine(settings.effective_database_url)
        try:
            await migrate.prepare(engine, auto_upgrade=False)
        except migrate.SchemaOutOfDate as exc:
            return str(exc)
        finally:
            await engine.dispose()
        return None

    return asyncio.run(check())


def model_unavailable_line(exc: ModelUnavailable, settings: Settings) -> str:
    """The one line a missing model is: what was tried, then where to point the gateway instead."""
    return (f"gateway: {exc}; set GATEWAY_MODEL_MIRRORS to a folder or URL holding {settings.model_name}.zip "
            "(see README, Set up)")


def _fetch_model(settings: Settings) -> int:
    from gateway.app import model_spec

    try:
        path = ensure_model(model_spec(settings))
    except ModelUnavailable as exc:
        print(model_unavailable_line(exc, settings), file=sys.stderr)
        return 1
    if settings.static_graph:
        ensure_static_graph(path)  # a failure is a warning: the model works without it
    print(path)
    return 0


GRACEFUL_S = 3.0  # after the drain: how long uvicorn may wait for connections before cancelling them


def _draining_server(config: "uvicorn.Config", app: "Starlette") -> "uvicorn.Server":
    """uvicorn's server, but SIGTERM (or SIGINT) first drains calls (gateway.app.drain), with the port
    still open so that new calls are refused with a reason; then uvicorn shuts down as usual. A second
    signal ends the calls at once, a third is uvicorn's forced exit."""
    import signal

    import uvicorn

    from gateway.app import drain

    class DrainingServer(uvicorn.Server):
        signals = 0

        def handle_exit(self, sig: int, frame: object) -> None:
            self.signals += 1
            services = getattr(app.state, "services", None)
            if not self.started or services is None or self.signals > 2 or self.should_exit:
                super().handle_exit(sig, frame)  # not serving yet, or done with patience
            elif self.signals == 1:
                logging.getLogger(__name__).info("%s: draining calls (at most %g s), then stopping",
                                                 signal.Signals(sig).name, services.settings.shutdown_drain_s)
                self._loop.call_soon_threadsafe(self._start_drain)
            else:
                self._loop.call_soon_threadsafe(services.registry.end_all, "shutdown")

        def _start_drain(self) -> None:
            self._drain = asyncio.ensure_future(self._drain_then_exit())

        async def _drain_then_exit(self) -> None:
            try:
                await drain(app)
            finally:
                self.should_exit = True

        async def serve(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
            self._loop = asyncio.get_running_loop()
            await super().serve(sockets)

    return DrainingServer(config)


def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.web.vosk_port import bind_sockets
    from gateway.web.ws_protocol import BufferedWebSocketProtocol

    try:
        settings = settings.replace(**{k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    if not settings.api_keys and not is_loopback_bind(settings.host):
        print(
            f"gateway: refusing to listen on {settings.host} without API keys; "
            "set GATEWAY_API_KEYS or listen on 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    if not settings.db_auto_upgrade:
        refusal = _schema_refusal(settings)
        if refusal:
            print(f"gateway: {refusal}", file=sys.stderr)
            return 1
    ports = [settings.port] + ([settings.vosk_server_port] if settings.vosk_server_port else [])
    try:
        sockets = bind_sockets(settings.host, ports)
    except OSError as exc:
        print(f"gateway: cannot listen on {settings.host} port {' and '.join(map(str, ports))}: {exc}", file=sys.stderr)
        return 1
    # The model is fetched (and its graph compiled) after the server listens; a failure there
    # stops the server, and is the one line this command ends with.
    failures: list[BaseException] = []

    def stop(exc: BaseException) -> None:
        failures.append(exc)
        server.should_exit = True

    app = create_app(settings, on_start_failure=stop)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws=BufferedWebSocketProtocol,
        ws_max_size=settings.max_message_bytes,
        log_level=settings.log_level,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_S,  # the drain ended the calls; what is left is cut off
    )
    logging.getLogger(__name__).info(
        "listening on %s port %s", settings.host, " and ".join(
            [str(settings.port)] + [f"{settings.vosk_server_port} (vosk-server)"] * bool(settings.vosk_server_port)))
    server = _draining_server(config, app)
    server.run(sockets=sockets)
    if failures:
        exc = failures[0]
        if isinstance(exc, ModelUnavailable):
            print(model_unavailable_line(exc, settings), file=sys.stderr)
        else:
            print(f"gateway: start failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}", file=sys.stderr)
        return 1
    return 0
