"""Command line: `gateway serve`, `gateway model fetch`."""

from __future__ import annotations

import argparse
import logging
import sys

from gateway.auth import is_loopback_bind
from gateway.model.fetch import ModelUnavailable, ensure_model
from gateway.model.graph import ensure_static_graph
from gateway.settings import Settings, SettingsError, load_settings


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
    if args.command == "model":
        return _fetch_model(settings)
    return _serve(settings, args.host, args.port)


def _fetch_model(settings: Settings) -> int:
    from gateway.app import model_spec

    try:
        path = ensure_model(model_spec(settings))
    except ModelUnavailable as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    if settings.static_graph:
        ensure_static_graph(path)  # a failure is a warning: the model works without it
    print(path)
    return 0


def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    import uvicorn

    from gateway.app import create_app, model_spec
    from gateway.web.ws_protocol import BufferedWebSocketProtocol

    settings = settings.replace(**{k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    if not settings.api_keys and not is_loopback_bind(settings.host):
        print(
            f"gateway: refusing to listen on {settings.host} without API keys; "
            "set GATEWAY_API_KEYS or listen on 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    # Fetch before the server starts so a missing model is one clear line, not a traceback.
    try:
        ensure_model(model_spec(settings))
    except ModelUnavailable as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ws=BufferedWebSocketProtocol,
        ws_max_size=settings.max_message_bytes,
        log_level=settings.log_level,
        lifespan="on",
    )
    return 0
