"""Fetch, verify and unpack the speech model.

Sources are tried in order: each configured mirror (a directory holding
`<model>.zip`, or a base URL), then the official download URL. The archive
must match the configured sha256 before anything is unpacked; the unpacked
model is moved into the cache in one rename so a crash never leaves half a
model behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx

log = logging.getLogger(__name__)

MARKER = ".verified-sha256"


class ModelUnavailable(RuntimeError):
    """No source gave a verified model; the message names every source tried."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    sha256: str
    url: str
    mirrors: tuple[str, ...]
    cache_dir: Path

    @property
    def path(self) -> Path:
        return self.cache_dir / self.name

    def sources(self) -> list[str]:
        found = []
        archive = f"{self.name}.zip"
        for mirror in self.mirrors:
            if urlparse(mirror).scheme in {"http", "https"}:
                found.append(mirror.rstrip("/") + "/" + archive)
            else:
                found.append(str(Path(mirror.removeprefix("file://")).expanduser() / archive))
        if self.url:
            found.append(self.url)
        return found


def is_installed(spec: ModelSpec) -> bool:
    marker = spec.path / MARKER
    return marker.is_file() and marker.read_text().strip() == spec.sha256


def ensure_model(spec: ModelSpec, *, timeout: float = 60.0) -> Path:
    """Return the unpacked model directory, fetching it first when needed."""
    if is_installed(spec):
        return spec.path
    spec.cache_dir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for source in spec.sources():
        try:
            archive = _obtain(source, spec.cache_dir, timeout)
        except (OSError, httpx.HTTPError) as exc:
            failures.append(f"{source}: {_reason(exc)}")
            continue
        try:
            digest = _sha256(archive)
            if digest != spec.sha256:
                failures.append(f"{source}: sha256 {digest} does not match {spec.sha256}")
                continue
            _unpack(archive, spec)
            log.info("model %s verified and unpacked from %s", spec.name, source)
            return spec.path
        except (OSError, zipfile.BadZipFile) as exc:
            failures.append(f"{source}: {_reason(exc)}")
        finally:
            if not _is_local(source):
                archive.unlink(missing_ok=True)
    tried = "; ".join(failures) or "no sources configured"
    raise ModelUnavailable(f"speech model {spec.name} unavailable; tried: {tried}")


def _is_local(source: str) -> bool:
    return urlparse(source).scheme not in {"http", "https"}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    # Keep the error on one line: some exceptions carry explanatory paragraphs.
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _obtain(source: str, cache_dir: Path, timeout: float) -> Path:
    if _is_local(source):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(source)
        return path
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".zip.part")
    with os.fdopen(fd, "wb") as out, httpx.stream(
        "GET", source, timeout=timeout, follow_redirects=True
    ) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 20):
            out.write(chunk)
    return Path(tmp)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unpack(archive: Path, spec: ModelSpec) -> None:
    staging = Path(tempfile.mkdtemp(dir=spec.cache_dir, prefix=".unpack-"))
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                # Refuse paths that would escape the staging directory.
                target = (staging / member).resolve()
                if not target.is_relative_to(staging.resolve()):
                    raise zipfile.BadZipFile(f"unsafe path in archive: {member}")
            zf.extractall(staging)
        unpacked = staging / spec.name
        if not unpacked.is_dir():
            raise zipfile.BadZipFile(f"archive has no top-level folder {spec.name}/")
        (unpacked / MARKER).write_text(spec.sha256 + "\n")
        if spec.path.exists():
            shutil.rmtree(spec.path)
        unpacked.rename(spec.path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
