"""Make the reminder-call answer clips: espeak-ng (Mandarin read from pinyin, offline) at 8 kHz,
G.711 mu-law, as a phone line carries them.

usage: .venv/bin/python tests/data/audio/reminder/synth.py   (writes the WAVs and manifest.tsv here)

espeak-ng's `cmn` voice lacks most characters in the dictionary Debian ships, so the clips are
spoken from pinyin by `cmn-latn-pinyin`. Resampling to 8 kHz band-limits
them to the telephone band; mu-law is the line's coding. Rate and pitch are per clip: the
ones the small Vosk model hears with the reminder question's grammar.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import wave
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from speech.codecs import ulaw_encode  # noqa: E402
from speech.resample import StreamResampler  # noqa: E402

CLIPS = {  # file stem: (text, pinyin, rate in words a minute, pitch 0-99)
    "acknowledged": ("知道了", "zhi1 dao4 le5", 130, 40),
    "renewed": ("我已经续保了", "wo3 yi3 jing1 xu4 bao3 le5", 130, 40),
    "agent": ("我要转人工", "wo3 yao4 zhuan3 ren2 gong1", 130, 40),
    "refused": ("别再打了", "bie2, zai4 da3 le5", 140, 30),  # the comma: a short pause after 别
}


def mulaw_wav(ulaw: bytes, rate: int = 8000) -> bytes:
    fmt = struct.pack("<HHIIHHH", 7, 1, rate, rate, 1, 8, 0)
    body = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"fact" + struct.pack("<II", 4, len(ulaw))
    body += b"data" + struct.pack("<I", len(ulaw)) + ulaw + (b"\0" if len(ulaw) % 2 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def main() -> None:
    rows = ["file\ttext"]
    for stem, (text, pinyin, rate, pitch) in CLIPS.items():
        raw = subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-s", str(rate), "-p", str(pitch), "--stdout", pinyin],
                             check=True, capture_output=True).stdout
        with wave.open(io.BytesIO(raw)) as w:
            rate, pcm = w.getframerate(), w.readframes(w.getnframes())
        resampler = StreamResampler(rate, 8000)
        pcm8 = resampler.process(pcm) + resampler.flush()
        (HERE / f"{stem}.wav").write_bytes(mulaw_wav(ulaw_encode(pcm8)))
        rows.append(f"{stem}.wav\t{text}")
    (HERE / "manifest.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
