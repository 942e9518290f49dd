"""A real `gateway serve` subprocess on loopback, its stderr captured to a file, for tests of the CLI's server."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx

from conftest import ROOT, free_port


@contextlib.contextmanager
def gateway_process(tmp_path: Path, env: dict[str, str], port: int | None = None) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """Start `gateway serve` with these settings; yield (host:port, process, stderr log). Stopped with SIGINT."""
    port = port or free_port()
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
            cwd=ROOT, env={**os.environ, "GATEWAY_DATA_DIR": str(tmp_path), **env},
            stdout=err, stderr=subprocess.STDOUT,
        )
    try:
        yield f"127.0.0.1:{port}", process, log
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for(address: str, path: str, status: int, process: subprocess.Popen, timeout: float = 120.0) -> httpx.Response:
    """Poll GET path until it answers `status`; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gateway exited with {process.returncode} (last answer {last})")
        try:
            response = httpx.get(f"http://{address}{path}", timeout=5)
            if response.status_code == status:
                return response
            last = response.status_code
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"GET {path} did not answer {status} in {timeout} s (last answer {last})")
