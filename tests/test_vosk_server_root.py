"""vosk-server clients unchanged: the protocol on the root path (`ws://host:port`) and on a port of its own."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import httpx
import pytest

from calls import AUDIO, load_pcm, manifest
from conftest import free_port, running_gateway
from speech.cer import character_error_rate
from vosk_server_client import run_test

CLIP = "wenet_aishell-BAC009S0724W0121.wav"  # 4.3 s over the phone line


def pcm_wav(path: Path, pcm: bytes, rate: int) -> Path:
    """The clip as the 16-bit PCM WAV file a vosk-server client reads with the wave module."""
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(pcm)
    return path


def silence_wav(tmp_path: Path) -> Path:
    return pcm_wav(tmp_path / "silence.wav", bytes(8000 * 2), 8000)  # 1 s at 8 kHz: two chunks


def check_protocol(replies: list[str]) -> dict:
    decoded = [json.loads(r) for r in replies]
    assert all("partial" in r for r in decoded[:-1]), decoded
    assert "text" in decoded[-1], decoded
    return decoded[-1]


async def test_the_root_path_speaks_vosk_server(tmp_path, make_settings):
    with running_gateway(make_settings()) as address:
        replies = await run_test(f"ws://{address}", str(silence_wav(tmp_path)))
        assert len(replies) == 3  # one per chunk, then the final
        assert check_protocol(replies)["text"] == ""
        async with httpx.AsyncClient() as client:  # a plain GET / says what this is
            response = await client.get(f"http://{address}/")
        assert response.status_code == 200 and "vosk-server" in response.text


async def test_a_port_of_its_own_speaks_vosk_server_on_its_root(tmp_path, make_settings):
    vosk_port = free_port()
    with running_gateway(make_settings(vosk_server_port=vosk_port)) as address:
        replies = await run_test(f"ws://127.0.0.1:{vosk_port}", str(silence_wav(tmp_path)))
        assert len(replies) == 3 and check_protocol(replies)["text"] == ""
        # The main port keeps every endpoint.
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://{address}/healthz")).status_code == 200


@pytest.mark.slow
async def test_a_vosk_server_client_recognizes_a_phone_clip_on_both(tmp_path, make_settings):
    [row] = [r for r in manifest(AUDIO / "phone") if r["file"] == CLIP]
    pcm, rate = load_pcm(AUDIO / "phone" / CLIP)
    assert rate == 8000
    wav = pcm_wav(tmp_path / CLIP, pcm, rate)
    vosk_port = free_port()
    with running_gateway(make_settings(vosk_server_port=vosk_port)) as address:
        for uri in (f"ws://{address}", f"ws://127.0.0.1:{vosk_port}"):
            final = check_protocol(await run_test(uri, str(wav)))
            assert character_error_rate(row["spoken_transcript"], final["text"]) <= 0.25, final


async def test_served_connections_have_nagle_off() -> None:
    """Sockets the gateway binds itself: accepted connections get TCP_NODELAY from asyncio, so a
    small reply (a partial result, a prompt event) is not held back for the peer's delayed ACK."""
    import asyncio
    import socket

    from gateway.web.vosk_port import bind_sockets

    (sock,) = bind_sockets("127.0.0.1", [0])
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    sock.listen()
    server = await asyncio.start_server(handle, sock=sock)
    try:
        port = sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.02)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert seen and seen[0] != 0
