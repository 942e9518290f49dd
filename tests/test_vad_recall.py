"""Over /ws/asr the gateway hears what raw Vosk hears, on quiet speech and speech under line noise.

Each real clip is made quiet (speech at -55 dBFS) or noisy (telephone-band line noise 10 dB under
speech at -30 dBFS) and streamed as ../shared/eval/vad_recall.py streams it: from its first
sample, then 5 s of faint line noise. Raw Vosk is plain Vosk on the model the gateway decodes free
speech with, fed the same clip whole. Vosk dithers (Kaldi's default), so quiet audio decodes a
little differently run to run (a word swapped for a like-sounding one): raw Vosk is run twice,
and the gateway may not lose more characters of a clip than the worse run, plus one (lost:
deleted in the cheapest alignment with the reference; a swapped word is not a lost one), nor
make more edits over all clips than raw Vosk plus one a clip.

The dither comes from the C library's process-wide rand(), so every decode compared here starts
from a seeded stream: what it hears depends on the clip and the code, not on what other tests
decoded earlier in the same process.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import vosk

from audio_helpers import REAL, line_noise, load_pcm, seed_dither, to_pcm
from calls import vosk_call
from conftest import running_gateway
from speech.cer import character_errors, normalize_for_cer
from test_vad_quiet import at_level, tail_noise

pytestmark = [pytest.mark.slow, pytest.mark.database]  # model_gateway makes its own database

RATE = 16000
MANIFEST = {
    line.split("\t")[0]: line.split("\t")[3]
    for line in (REAL[0].parent / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]
    if line.strip()
}


def quiet(x: np.ndarray) -> np.ndarray:
    return at_level(x, -55)


def noisy(x: np.ndarray) -> np.ndarray:
    y = at_level(x, -30)
    return y + line_noise(len(y) / RATE, RATE, -40, seed=3)


CONDITIONS = {"quiet": quiet, "line-noise": noisy}
# Dither seeds: two for raw Vosk, to see its spread; the gateway's is a fresh process's (glibc
# starts rand() at seed 1). The margin is thin on one clip: the gate ends the line-noise funasr
# clip at 5.02 of its 5.55 s, so its last word 模型 is heard as 吗 (1 lost, in the margin); at
# other seeds (5, 8, 12...; 10 of seeds 1-30) 识别 goes too (3 lost), for the gateway as for raw
# Vosk fed only what the gate passed.
RAW_SEEDS = (1, 2)
GATEWAY_SEED = 1


@pytest.fixture(scope="module")
def recall_gateway(tmp_path_factory, model_cache):
    from conftest import model_gateway

    with model_gateway(tmp_path_factory.mktemp("recall"), model_cache) as address:
        yield address


@pytest.fixture(scope="module")
def free_model(model_cache) -> vosk.Model:
    """The model the gateway decodes free speech with: the static graph, compiled by model_cache."""
    from gateway.model.graph import static_model_path

    return vosk.Model(str(static_model_path(model_cache / "vosk-model-small-cn-0.22")))


def raw_vosk(model: vosk.Model, pcm: bytes) -> str:
    rec = vosk.KaldiRecognizer(model, RATE)
    rec.AcceptWaveform(pcm)
    return json.loads(rec.FinalResult())["text"]


def characters_lost(reference: str, heard: str) -> int:
    """Reference characters deleted in the cheapest alignment with what was heard (fewest
    deletions among the cheapest): a word swapped for a like-sounding one is not lost."""
    ref, hyp = normalize_for_cer(reference), normalize_for_cer(heard)
    previous = [(j, 0) for j in range(len(hyp) + 1)]  # (edits, deletions)
    for i, r in enumerate(ref, 1):
        current = [(i, i)]
        for j, h in enumerate(hyp, 1):
            deleted, inserted, matched = previous[j], current[j - 1], previous[j - 1]
            current.append(min((deleted[0] + 1, deleted[1] + 1), (inserted[0] + 1, inserted[1]),
                               (matched[0] + (r != h), matched[1])))
        previous = current
    return previous[-1][1]


async def via_asr(address: str, pcm: bytes) -> str:
    """What a vosk-server client hears over /ws/asr, in 0.2 s chunks as vad_recall.py sends them."""
    return " ".join(r["text"] for r in await vosk_call(address, pcm, RATE, 200) if r.get("text"))


@pytest.mark.parametrize("condition", CONDITIONS)
async def test_gateway_hears_what_raw_vosk_hears(recall_gateway, free_model, condition):
    tail = to_pcm(tail_noise())
    report, gateway_total, raw_total, raw_heard = [], 0, 0, 0
    for path in REAL:
        ref = MANIFEST[path.name]
        pcm = to_pcm(CONDITIONS[condition](load_pcm(path).astype(float)))
        raw = []
        for seed in RAW_SEEDS:
            seed_dither(seed)
            raw.append(raw_vosk(free_model, pcm))
        raw_errors = max(character_errors(ref, text)[0] for text in raw)
        raw_lost = max(characters_lost(ref, text) for text in raw)
        raw_heard += all(raw)
        seed_dither(GATEWAY_SEED)  # the gateway decodes in this process (a thread of its own)
        heard = await via_asr(recall_gateway, pcm + tail)
        gateway_total += character_errors(ref, heard)[0]
        raw_total += raw_errors
        lost = characters_lost(ref, heard)
        if lost > raw_lost + 1:
            report.append(f"{path.name}: gateway {heard!r} (lost {lost}) raw {raw!r} (lost {raw_lost})")
    assert raw_heard >= len(REAL) - 1  # raw Vosk hears these clips: there is something to lose
    assert not report, "\n".join(report)
    assert gateway_total <= raw_total + len(REAL), (gateway_total, raw_total)
