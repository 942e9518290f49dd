"""Fetching the model: mirrors (directories and URLs), checksum, one clear error."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from gateway.model.fetch import ModelSpec, ModelUnavailable, ensure_model, is_installed

from conftest import ROOT, SHARED

NAME = "vosk-model-small-cn-0.22"
SHA = "3af8b0e7e0f835ae9d414ce5df580237a3cfb08d586c9fbbb0f7ff29ad5b14ba"
MIRROR = SHARED / "models"


def spec(cache: Path, *mirrors: str, url: str = "", sha: str = SHA, name: str = NAME) -> ModelSpec:
    return ModelSpec(name=name, sha256=sha, url=url, mirrors=tuple(mirrors), cache_dir=cache)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - keep test output clean
        pass


@contextlib.contextmanager
def serve_directory(directory: Path):
    """A real HTTP server on loopback serving a directory (an HTTP mirror)."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_from_a_mirror_directory_after_a_missing_one(tmp_path):
    path = ensure_model(spec(tmp_path, str(tmp_path / "nowhere"), str(MIRROR)))
    assert path == tmp_path / NAME
    assert (path / "am" / "final.mdl").is_file()
    assert is_installed(spec(tmp_path))
    # A second call finds the verified copy and touches no source.
    assert ensure_model(spec(tmp_path)) == path


def test_fetch_over_http_from_a_url_mirror(tmp_path):
    with serve_directory(MIRROR) as url:
        path = ensure_model(spec(tmp_path / "cache", url))
    assert (path / "graph" / "HCLr.fst").is_file()
    # Downloads are not left behind in the cache.
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [NAME]


def test_corrupt_archive_is_rejected_and_next_source_used(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / f"{NAME}.zip").write_bytes(b"PK\x03\x04 not really a zip")
    path = ensure_model(spec(tmp_path / "cache", str(bad), str(MIRROR)))
    assert path.is_dir()


def test_missing_model_is_one_clear_error_naming_every_source(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / f"{NAME}.zip").write_bytes(b"garbage")
    with serve_directory(tmp_path / "empty-dir-that-is-missing") as url:
        with pytest.raises(ModelUnavailable) as info:
            ensure_model(spec(tmp_path / "cache", str(tmp_path / "nowhere"), str(bad), url=url + f"/{NAME}.zip"))
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "nowhere") in message and "not found" in message
    assert "sha256" in message and "does not match" in message
    assert url in message and "HTTP 404" in message
    assert not (tmp_path / "cache" / NAME).exists()


def test_zip_with_paths_escaping_the_cache_is_refused(tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    archive = evil / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../outside.txt", "x")
        zf.writestr("m/README", "x")
    import hashlib

    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(ModelUnavailable, match="unsafe path"):
        ensure_model(spec(tmp_path / "cache", str(evil), sha=sha, name="m"))
    assert not (tmp_path / "outside.txt").exists()


def gateway_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )


def test_cli_model_fetch(tmp_path):
    # Fetch only: compiling the static graph (a minute or two of CPU) is test_model_graph's.
    result = gateway_cli("model", "fetch", env={
        "GATEWAY_MODEL_MIRRORS": str(MIRROR), "GATEWAY_MODEL_CACHE_DIR": str(tmp_path), "GATEWAY_MODEL_URL": "",
        "GATEWAY_STATIC_GRAPH": "false"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / NAME)


def test_cli_model_fetch_failure_is_one_line(tmp_path):
    result = gateway_cli("model", "fetch", env={
        "GATEWAY_MODEL_MIRRORS": str(tmp_path / "nowhere"), "GATEWAY_MODEL_CACHE_DIR": str(tmp_path / "c"),
        "GATEWAY_MODEL_URL": ""})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gateway: speech model vosk-model-small-cn-0.22 unavailable; tried:")


def test_cli_help_and_public_bind_refusal(tmp_path):
    result = gateway_cli("--help", env={})
    assert result.returncode == 0 and "serve" in result.stdout and "model" in result.stdout
    result = gateway_cli("serve", "--host", "0.0.0.0", env={"GATEWAY_API_KEYS": ""})
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in result.stderr


def test_serve_without_model_or_internet_says_where_to_point_the_mirror(tmp_path):
    # A fresh machine: empty cache, no mirror, and the official URL unreachable (a closed loopback port).
    from conftest import free_port

    unreachable = f"http://127.0.0.1:{free_port()}/{NAME}.zip"
    result = gateway_cli("serve", "--port", str(free_port()), env={
        "GATEWAY_MODEL_MIRRORS": "", "GATEWAY_MODEL_CACHE_DIR": str(tmp_path / "c"), "GATEWAY_MODEL_URL": unreachable,
        "GATEWAY_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("gateway: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"gateway: speech model {NAME} unavailable; tried: {unreachable}")
    assert f"set GATEWAY_MODEL_MIRRORS to a folder or URL holding {NAME}.zip" in errors[0]
    assert result.stderr.strip().splitlines()[-1] == errors[0]  # the last word, not buried in a traceback
