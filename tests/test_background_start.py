"""`gateway serve` listens at once: /livez while the model is fetched and loaded, /healthz 503 until ready."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conftest import SHARED, free_port
from serve_process import gateway_process, wait_for
from vosk_server_client import run_test

NAME = "vosk-model-small-cn-0.22"


class HeldMirror(http.server.SimpleHTTPRequestHandler):
    """Serves the mirror folder, but only once the test releases it: start-up takes as long as the test needs."""

    release: threading.Event

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.release.wait(60)
        super().do_GET()

    def log_message(self, format, *args):  # noqa: A002 - keep test output clean
        pass


@contextlib.contextmanager
def held_mirror(directory: Path) -> Iterator[tuple[str, threading.Event]]:
    release = threading.Event()
    handler = functools.partial(type("Held", (HeldMirror,), {"release": release}), directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", release
    finally:
        release.set()
        server.shutdown()
        server.server_close()


async def test_serve_answers_while_the_model_is_fetched_then_is_ready(tmp_path, test_database):
    vosk_port = free_port()
    with held_mirror(SHARED / "models") as (mirror, release):
        env = {"GATEWAY_MODEL_CACHE_DIR": str(tmp_path / "empty-cache"), "GATEWAY_MODEL_MIRRORS": mirror,
               "GATEWAY_MODEL_URL": "", "GATEWAY_STATIC_GRAPH": "false", "GATEWAY_DATABASE_URL": test_database,
               "GATEWAY_TTS_ENGINE": "none", "GATEWAY_RECOGNIZER_POOL_SIZE": "1", "GATEWAY_MAX_CALLS": "2",
               "GATEWAY_VOSK_SERVER_PORT": str(vosk_port)}
        with gateway_process(tmp_path, env) as (address, process, log):
            assert wait_for(address, "/livez", 200, process, timeout=60).json() == {"status": "alive"}
            starting = httpx.get(f"http://{address}/healthz")
            assert starting.status_code == 503
            assert starting.json() == {"status": "starting", "doing": f"fetching the speech model {NAME}"}
            # The REST API works as soon as the database is migrated.
            assert httpx.get(f"http://{address}/api/reports").json()["total"] == 0
            # A call now is refused cleanly, to be tried again.
            with pytest.raises(ConnectionClosed) as closed:
                async with connect(f"ws://{address}/ws/call") as ws:
                    await ws.send(json.dumps({"event": "start", "call_id": "early", "sample_rate": 8000}))
                    await ws.recv()
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1013, "starting, try again")

            release.set()
            ready = wait_for(address, "/healthz", 200, process, timeout=120).json()
            assert ready["status"] == "ok" and ready["model"] == NAME
            assert httpx.get(f"http://{address}/livez").status_code == 200
            # Ready: calls are served, on the main port and on the vosk-server port alike.
            wav = tmp_path / "silence.wav"
            import wave

            with wave.open(str(wav), "wb") as wf:
                wf.setnchannels(1), wf.setsampwidth(2), wf.setframerate(8000), wf.writeframes(bytes(16000))
            for uri in (f"ws://{address}/ws/asr", f"ws://127.0.0.1:{vosk_port}"):
                assert "text" in json.loads((await run_test(uri, str(wav)))[-1])
        assert (tmp_path / "empty-cache" / NAME / "am" / "final.mdl").is_file()
