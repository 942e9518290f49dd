"""Secrets never reach a log line (tokens in URLs, API keys and bearer tokens in headers, credentials
in a message's dicts are `***`) nor the call events: a call's credential parameters are dropped."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
from websockets.asyncio.client import connect

from gateway.log_redaction import SecretRedactor, is_credential, redact, without_credentials
from calls import silence, twilio_messages
from conftest import running_gateway
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


def test_credentials_inside_dicts_and_json_are_redacted_and_templates_keep_their_placeholders():
    assert redact("""params {'token': 'k1', "api_key": "k2", 'Signature': 'k3', 'flow': 'renewal'}""") == \
        """params {'token': '***', "api_key": "***", 'Signature': '***', 'flow': 'renewal'}"""
    record = logging.LogRecord("gateway", logging.INFO, __file__, 1, "call %s params %s key=%s",
                               ("c1", {"token": "k1", "policy": "P1"}, "k2"), None)
    assert SecretRedactor().filter(record) is True
    assert record.getMessage() == "call c1 params {'token': '***', 'policy': 'P1'} key=***"


def test_which_parameters_are_credentials():
    names = ["token", "access_token", "api_key", "apiKey", "X-Api-Key", "key", "AccessKeySecret", "secret",
             "password", "pwd", "signature", "sig", "auth", "Authorization", "credentials"]
    assert all(is_credential(n) for n in names), [n for n in names if not is_credential(n)]
    plain = ["flow", "delivery_id", "name", "policy_number", "caller_number", "monkey", "keys", "turkey_farm"]
    assert not any(is_credential(n) for n in plain), [n for n in plain if is_credential(n)]
    assert without_credentials({"token": "k", "flow": "renewal", "api_key": "k"}) == {"flow": "renewal"}


async def test_the_twilio_token_parameter_is_not_published_on_the_events_socket_nor_logged(make_settings, caplog):
    caplog.set_level(logging.DEBUG)
    params = {"token": "k-secret-1", "api_key": "k-secret-2", "password": "k-secret-3", "policy": "P-123"}
    with running_gateway(make_settings(api_keys=("k-secret-1",))) as address:
        async with connect(f"ws://{address}/ws/events", additional_headers={"X-API-Key": "k-secret-1"}) as events:
            async with connect(f"ws://{address}/ws/twilio") as ws:
                for message in twilio_messages(silence(0.3, 8000), "CA" + "7" * 32, params):
                    await ws.send(message)
                async for _ in ws:
                    pass
            seen = []
            while not seen or seen[-1]["type"] != "call.ended":
                seen.append(json.loads(await asyncio.wait_for(events.recv(), 10)))
    started = next(e for e in seen if e["type"] == "call.started")
    assert started["params"] == {"policy": "P-123"}
    assert not any("k-secret" in json.dumps(e) for e in seen), seen
    lines = [r.getMessage() for r in caplog.records]
    assert any("CA" + "7" * 32 in line for line in lines)  # the call was logged ...
    assert not any("k-secret" in line for line in lines), lines  # ... its credentials not


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
