"""Secrets never reach a log line: tokens in URLs, API keys and bearer tokens in headers are `***`."""

from __future__ import annotations

import json
import logging

import httpx
from websockets.asyncio.client import connect

from gateway.log_redaction import SecretRedactor, redact
from serve_process import gateway_process, wait_for


def test_redact_rewrites_every_kind_of_secret():
    assert redact('127.0.0.1:5 - "WebSocket /ws/call?token=k1" [accepted]') == \
        '127.0.0.1:5 - "WebSocket /ws/call?token=***" [accepted]'
    assert redact("GET /api/reports?status=complete&api_key=abc&limit=5") == \
        "GET /api/reports?status=complete&api_key=***&limit=5"
    assert redact("key=s3cret secret=xyz") == "key=*** secret=***"
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer ***"
    assert redact("headers {'authorization': 'Bearer abc', 'x-api-key': 'k2'}") == \
        "headers {'authorization': 'Bearer ***', 'x-api-key': '***'}"
    assert redact("X-API-Key: k3") == "X-API-Key: ***"
    assert redact("monkey=banana keys stay") == "monkey=banana keys stay"


def test_the_filter_redacts_messages_and_their_arguments():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/healthz?token=k1", "1.1", 200), None)
    assert SecretRedactor().filter(record) is True
    assert record.args == ("127.0.0.1:5", "GET", "/healthz?token=***", "1.1", 200)
    assert "k1" not in record.getMessage()


async def test_a_token_in_the_url_is_not_in_the_served_log(tmp_path, model_cache, test_database):
    env = {"GATEWAY_API_KEYS": "k1", "GATEWAY_MODEL_CACHE_DIR": str(model_cache), "GATEWAY_MODEL_MIRRORS": "",
           "GATEWAY_MODEL_URL": "", "GATEWAY_DATABASE_URL": test_database, "GATEWAY_LOG_LEVEL": "info",
           "GATEWAY_TTS_ENGINE": "none", "GATEWAY_RECOGNIZER_POOL_SIZE": "1", "GATEWAY_MAX_CALLS": "2"}
    with gateway_process(tmp_path, env) as (address, process, log):
        wait_for(address, "/healthz", 200, process)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://{address}/api/reports?token=k1")).status_code == 200
            assert (await client.get(f"http://{address}/api/reports", headers={"X-API-Key": "k1"})).status_code == 200
        async with connect(f"ws://{address}/ws/call?token=k1") as ws:
            await ws.send(json.dumps({"event": "start", "call_id": "redact-1", "sample_rate": 8000}))
            await ws.send(json.dumps({"event": "stop"}))
            async for _ in ws:
                pass
        process.terminate()
        process.wait(30)
    output = log.read_text()
    assert "/ws/call?token=***" in output and "/api/reports?token=***" in output  # the access log was on
    assert "k1" not in output, output
