"""Real Mandarin through every endpoint: the gateway must recognize as well as raw in-process Vosk.

Reference transcripts: shared/audio/real/manifest.tsv (spoken_transcript). The
phone/ set is the same speech through a simulated telephone line (8 kHz G.711).
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
import vosk
from websockets.asyncio.client import connect

from calls import AUDIO, frames, load_pcm, manifest, silence, twilio_messages, wait_for_transcript
from conftest import running_gateway
from speech.cer import character_errors
from speech.codecs import Encoding
from speech.wavfile import read_wav

pytestmark = [pytest.mark.slow, pytest.mark.database]  # model_gateway makes its own database

CLIPS = manifest(AUDIO / "real")
SETS = {"real": AUDIO / "real", "phone": AUDIO / "phone"}
MARGIN = 0.03  # absolute CER the gateway may lose against raw Vosk (VAD gating, resampling)


def raw_vosk_text(model: vosk.Model, pcm: bytes, rate: int) -> str:
    """What a user of the plain Vosk API gets: the whole file, at its own rate."""
    rec = vosk.KaldiRecognizer(model, rate)
    texts = []
    for chunk in frames(pcm, rate, 250):
        if rec.AcceptWaveform(chunk):
            texts.append(json.loads(rec.Result())["text"])
    texts.append(json.loads(rec.FinalResult())["text"])
    return " ".join(t for t in texts if t)


@pytest.fixture(scope="module")
def accuracy_gateway(tmp_path_factory, model_cache):
    from conftest import model_gateway

    with model_gateway(tmp_path_factory.mktemp("accuracy"), model_cache) as address:
        yield address


@pytest.fixture(scope="module")
def baseline(model_cache):
    model = vosk.Model(str(model_cache / "vosk-model-small-cn-0.22"))
    return {
        name: {clip["file"]: raw_vosk_text(model, *load_pcm(folder / clip["file"])) for clip in CLIPS}
        for name, folder in SETS.items()
    }


async def via_generic(address: str, path, call_id: str) -> None:
    pcm, rate = load_pcm(path)
    async with connect(f"ws://{address}/ws/call") as ws:
        await ws.send(json.dumps({"event": "start", "call_id": call_id, "sample_rate": rate}))
        for frame in frames(pcm + silence(1.0, rate), rate):
            await ws.send(frame)
        await ws.send(json.dumps({"event": "stop"}))
        async for _ in ws:
            pass


async def via_vosk(address: str, path, call_id: str) -> str:
    pcm, rate = load_pcm(path)
    texts = []
    async with connect(f"ws://{address}/ws/asr?call_id={call_id}") as ws:
        await ws.send(json.dumps({"config": {"sample_rate": rate}}))
        for chunk in frames(pcm + silence(1.0, rate), rate, 100):
            await ws.send(chunk)
            reply = json.loads(await ws.recv())
            if reply.get("text"):
                texts.append(reply["text"])
        await ws.send('{"eof" : 1}')
        reply = json.loads(await ws.recv())
        if reply.get("text"):
            texts.append(reply["text"])
    return " ".join(texts)


async def via_freeswitch(address: str, path, call_id: str) -> str:
    pcm, rate = load_pcm(path)
    texts = []
    async with connect(f"ws://{address}/ws/freeswitch?sample_rate={rate}") as ws:
        await ws.send(json.dumps({"callId": call_id, "caller": "13800138000"}))
        for frame in frames(pcm + silence(1.0, rate), rate):
            await ws.send(frame)
        await ws.close()
    return ""


async def via_twilio(address: str, path, call_id: str) -> None:
    encoding, rate, _, payload = read_wav(path)
    assert (encoding, rate) == (Encoding.MULAW, 8000)  # Twilio's own format: sent byte for byte
    pcm, _ = load_pcm(path)
    async with connect(f"ws://{address}/ws/twilio") as ws:
        for message in twilio_messages(pcm + silence(1.0, 8000), call_id):
            await ws.send(message)
        async for _ in ws:
            pass


ENDPOINTS = {"call": via_generic, "asr": via_vosk, "freeswitch": via_freeswitch, "twilio": via_twilio}


# Twilio carries only 8 kHz mu-law: it is measured on the phone set alone.
CASES = [(e, s) for e in ENDPOINTS for s in SETS if not (e == "twilio" and s == "real")]


@pytest.mark.parametrize("endpoint, audio_set", CASES)
async def test_gateway_cer_matches_in_process_vosk(accuracy_gateway, baseline, endpoint, audio_set):
    folder = SETS[audio_set]
    gateway_errors = raw_errors = total = 0
    report = []
    for n, clip in enumerate(CLIPS):
        call_id = f"CA{endpoint}{audio_set}{n:02d}".ljust(34, "0") if endpoint == "twilio" else f"acc-{endpoint}-{audio_set}-{n}"
        direct = await ENDPOINTS[endpoint](accuracy_gateway, folder / clip["file"], call_id)
        stored = await wait_for_transcript(accuracy_gateway, call_id, timeout=30)
        text = "".join(s["text"] for s in stored["segments"])
        if direct:  # the protocol's own transcript equals the stored one
            assert direct.replace(" ", "") == text
        edits, length = character_errors(clip["spoken_transcript"], text)
        raw_edits, _ = character_errors(clip["spoken_transcript"], baseline[audio_set][clip["file"]])
        gateway_errors += edits
        raw_errors += raw_edits
        total += length
        report.append(f"{clip['file']}: gateway {text!r} raw {baseline[audio_set][clip['file']]!r}")
    gateway_cer, raw_cer = gateway_errors / total, raw_errors / total
    print(f"\n{endpoint}/{audio_set}: gateway CER {gateway_cer:.3f}, in-process Vosk CER {raw_cer:.3f}")
    assert gateway_cer <= raw_cer + MARGIN, "\n".join(report)
