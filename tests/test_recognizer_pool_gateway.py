"""The gateway's recognizer pool: on the static graph, or warmed at start from a folder of speech
without one; and fed in batches."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from calls import AUDIO, load_pcm, silence, to_rate, wait_for_transcript
from conftest import running_gateway
from test_load import twilio_call

pytestmark = pytest.mark.slow


def metric(text: str, name: str) -> float:
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[1])


async def metrics(address: str) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"http://{address}/metrics")).text


async def test_static_graph_serves_calls_without_warm_up(make_settings):
    settings = make_settings(warmup_audio_dir=str(AUDIO / "real"), recognizer_pool_size=4)
    with running_gateway(settings) as address:
        text = await metrics(address)
        assert metric(text, "gateway_static_graph") == 1
        assert metric(text, "gateway_recognizers_warming") == 0  # nothing to warm on a static graph
        pcm, rate = load_pcm(AUDIO / "real" / "fireredasr2s_hello_zh.wav")
        await twilio_call(address, to_rate(pcm, rate, 8000), "CA" + "6" * 32)
        stored = await wait_for_transcript(address, "CA" + "6" * 32)
        assert "".join(s["text"] for s in stored["segments"]).startswith("你好")
        assert metric(await metrics(address), "gateway_recognizers_idle") == 1  # kept for the next call


async def test_pool_is_warmed_at_start_and_calls_use_it(make_settings):
    settings = make_settings(warmup_audio_dir=str(AUDIO / "real"), warmup_recognizers=2, recognizer_pool_size=4,
                             static_graph=False)
    with running_gateway(settings) as address:
        assert metric(await metrics(address), "gateway_static_graph") == 0
        deadline = time.monotonic() + 120
        while metric(text := await metrics(address), "gateway_recognizers_warming") > 0:
            assert time.monotonic() < deadline, "warm-up did not finish"
            await asyncio.sleep(0.5)
        assert metric(text, "gateway_recognizers_idle") == 2

        pcm, rate = load_pcm(AUDIO / "real" / "fireredasr2s_hello_zh.wav")
        await twilio_call(address, to_rate(pcm, rate, 8000), "CA" + "7" * 32)
        stored = await wait_for_transcript(address, "CA" + "7" * 32)
        assert "".join(s["text"] for s in stored["segments"]).startswith("你好")
        assert stored["segments"][0]["start"] < 1.0  # on the call's clock, not the warm-up's
        assert metric(await metrics(address), "gateway_recognizers_idle") == 2  # back in the pool


async def test_a_folder_without_speech_does_not_stop_the_gateway(make_settings, tmp_path):
    (tmp_path / "empty").mkdir()
    settings = make_settings(warmup_audio_dir=str(tmp_path / "empty"), static_graph=False)
    with running_gateway(settings) as address:
        text = await metrics(address)
        assert metric(text, "gateway_recognizers_warming") == 0
        assert metric(text, "gateway_recognizers_idle") == 0


async def test_twilio_frames_reach_the_recognizer_in_batches_without_delaying_finals(make_settings):
    pcm, rate = load_pcm(AUDIO / "real" / "fireredasr2s_hello_zh.wav")
    pcm8k = to_rate(pcm, rate, 8000)
    with running_gateway(make_settings()) as address:
        await twilio_call(address, pcm8k + silence(0.5, 8000) + pcm8k, "CA" + "8" * 32)
        stored = await wait_for_transcript(address, "CA" + "8" * 32)
        text = await metrics(address)
    # two utterances, two finals (Vosk hears the second 你好世界 as 您好设计: not our doing)
    assert [s["text"][1] for s in stored["segments"]] == ["好", "好"], stored
    decoded = metric(text, "gateway_audio_seconds_decoded_total")
    batches = metric(text, "gateway_recognizer_batches_total")
    frames = decoded / 0.02
    # 100 ms batches, plus one per utterance end and the final flush; not one per 20 ms frame
    assert batches <= decoded / 0.1 + 2 * 2 + 2
    assert batches < frames / 3
