"""The static decoding graph: compiled once from the model's two halves, same transcripts,
clear failures that leave nothing behind."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from calls import AUDIO, load_pcm, manifest
from gateway.model.graph import (
    MARKER,
    GraphCompileError,
    OpenFst,
    compile_static_graph,
    ensure_static_graph,
    is_compiled,
    static_model_path,
)
from speech.cer import character_errors
from speech.recognizer import Recognizer, load_model

MODEL = "vosk-model-small-cn-0.22"


def test_missing_tools_are_named_with_what_to_install(tmp_path):
    with pytest.raises(GraphCompileError, match=r"OpenFst tools not found: fstsymbols, .*fstconvert; install"):
        OpenFst.find(path=str(tmp_path))


def test_missing_plugins_are_named(tmp_path, monkeypatch):
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    with pytest.raises(GraphCompileError, match="plugins not found: olabel_lookahead-fst.so, ngram-fst.so"):
        OpenFst.find(plugin_globs=[str(tmp_path)])


def fake_model(root: Path, model_cache: Path) -> Path:
    """A model folder shaped like the real one whose graph halves are not FSTs."""
    src = model_cache / MODEL
    model = root / MODEL
    (model / "graph").mkdir(parents=True)
    for name in ("HCLr.fst", "Gr.fst"):
        (model / "graph" / name).write_bytes(b"not an fst\n" * 10)
    shutil.copy(src / "graph" / "disambig_tid.int", model / "graph")
    (model / ".verified-sha256").write_text("abc\n")
    return model


def test_a_failed_compile_says_which_tool_failed_and_leaves_nothing(tmp_path, model_cache, caplog):
    model = fake_model(tmp_path, model_cache)
    killed = model / ".static-graph-killed"  # left by a compile killed two hours ago
    (killed / "graph").mkdir(parents=True)
    os.utime(killed, (time.time() - 7200, time.time() - 7200))
    with pytest.raises(GraphCompileError, match=r"fstsymbols exited with 1: .*Gr\.fst"):
        compile_static_graph(model)
    assert sorted(p.name for p in model.iterdir()) == [".verified-sha256", "graph"]  # no staging left
    with caplog.at_level(logging.WARNING, logger="gateway.model.graph"):
        assert ensure_static_graph(model) is None  # the gateway goes on with the graph as shipped
    assert "no static decoding graph" in caplog.text


def test_a_model_without_the_two_halves_needs_no_compiling(tmp_path):
    (tmp_path / "m" / "graph").mkdir(parents=True)
    (tmp_path / "m" / "graph" / "HCLG.fst").write_bytes(b"x")
    assert ensure_static_graph(tmp_path / "m") is None
    with pytest.raises(GraphCompileError, match="no graph/HCLr.fst"):
        compile_static_graph(tmp_path / "m")


def test_a_graph_compiled_from_another_model_version_is_stale(tmp_path, model_cache):
    model = fake_model(tmp_path, model_cache)
    static = static_model_path(model)
    static.mkdir()
    (static / MARKER).write_text("abc format 1\n")
    assert is_compiled(model)
    (model / ".verified-sha256").write_text("def\n")  # the model was re-fetched at another version
    assert not is_compiled(model)


@pytest.mark.slow
def test_static_graph_recognizes_as_well_as_the_shipped_one(model_cache):
    """Not word for word: the two graphs prune differently (the on-the-fly composition looks
    ahead at language-model weights), so an uncertain word can come out either way."""
    model_path = model_cache / MODEL
    assert is_compiled(model_path)  # by the model_cache fixture
    refs = {row["file"]: row["spoken_transcript"] for row in manifest(AUDIO / "real")}
    items = [(AUDIO / "phone" / f, text) for f, text in refs.items() if (AUDIO / "phone" / f).exists()]
    items += [(AUDIO / "callers-dev" / row["file"], row["text"]) for row in manifest(AUDIO / "callers-dev")[:60]]
    rate = load_pcm(items[0][0])[1]
    errors = {}
    for name, model in (("shipped", load_model(model_path)), ("static", load_model(static_model_path(model_path)))):
        rec = Recognizer(model, rate)  # one per model across files, as a pooled recognizer
        wrong = total = 0
        for path, reference in items:
            pcm, _ = load_pcm(path)
            e, n = character_errors(reference, "".join(finals(rec, pcm, rate)))
            wrong, total = wrong + e, total + n
        errors[name] = wrong / total
    assert errors["static"] <= errors["shipped"] + 0.01, errors


def finals(rec: Recognizer, pcm: bytes, rate: int) -> list[str]:
    """The text of every final result of `pcm` fed in 100 ms chunks."""
    step = rate // 5
    results = [rec.accept(pcm[i : i + step], i / 2 / rate) for i in range(0, len(pcm), step)]
    results = [r for r in results if r is not None and r.final] + [rec.finish()]
    return [r.text.replace(" ", "") for r in results]


@pytest.mark.slow
def test_phrase_lists_on_a_static_graph_come_from_the_shipped_one(model_cache):
    """Free speech on the static graph, a grammar turn on the shipped graph, then free again:
    one call clock throughout, and the static recognizer goes back to the pool."""
    from speech.recognizer import RecognizerPool, grammar_phrases

    model_path = model_cache / MODEL
    shipped, static = load_model(model_path), load_model(static_model_path(model_path))
    files = {row["text"]: row["file"] for row in manifest(AUDIO / "callers-dev")}
    pcm, rate = load_pcm(AUDIO / "callers-dev" / files["身份证号是四四零幺零六幺九六零零九幺零零七六五"])
    hello, _ = load_pcm(AUDIO / "phone" / "fireredasr2s_hello_zh.wav")
    pool = RecognizerPool(static)
    rec = Recognizer(static, rate, pool=pool, grammar_model=shipped)
    rec.accept(hello, 0.0)
    first = rec.finish()
    rec.set_phrases(grammar_phrases(["零", "一", "幺", "二", "三", "四", "五", "六", "七", "八", "九", "身份证号", "是"]))
    assert pool.idle == 1  # the static recognizer cannot take a grammar: it went back
    rec.accept(pcm, 10.0)
    digits = "".join(ch for ch in rec.finish().text if ch in "零一幺二三四五六七八九")
    assert len(digits) == 18
    rec.set_phrases(None)
    assert pool.idle == 0  # free speech again, on the pooled static recognizer
    rec.accept(hello, 40.0)
    again = rec.finish()
    assert again.text.replace(" ", "").startswith("你好")
    assert again.start == pytest.approx(first.start + 40.0, abs=0.05)
    rec.close()
    assert pool.idle == 1
