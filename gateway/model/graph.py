"""Compile the speech model's decoding graph once, so calls stop composing it on the fly.

vosk-model-small-cn ships its graph in two halves (graph/HCLr.fst, graph/Gr.fst)
that every Vosk recognizer composes lazily, caching what it expands: ~115 MB
and ~2.5x the CPU for a fresh recognizer, and still ~3x the CPU of a static
graph once warm (0.101 vs 0.032 s of CPU per second of phone audio on 150
caller utterances, with the same character error rate). OpenFst's command-line
tools compose the halves once (about a minute and 1 GB of memory) into a
static HCLG that all recognizers of the process share.

Grammar recognizers (phrase lists, per-turn vocabularies) still need the two
halves, from which Vosk builds a small graph per grammar; they are left as they
are. The compiled graph lives in `<model>/static-graph/`, a Vosk model folder
whose other parts link back to the model's own; it is rebuilt when the model
is re-fetched (the folder goes with it) and made in one rename, so a crash
leaves no half graph behind.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

from gateway.model.fetch import MARKER as SOURCE_MARKER  # the fetched model's verified sha256

log = logging.getLogger(__name__)

STATIC_DIR = "static-graph"
STAGING_PREFIX = ".static-graph-"
# A staging folder older than this was left by a compile that was killed (one takes about a minute).
STALE_STAGING_S = 3600.0
MARKER = ".compiled-from"  # holds the source model's verified sha256
FORMAT = "1"  # bump when the recipe changes: older graphs are rebuilt
TOOLS = ("fstsymbols", "fstarcsort", "fstcompose", "fstrelabel", "fstconnect", "fstconvert")
# The shipped halves are of these OpenFst types, loaded as plugins.
PLUGINS = ("olabel_lookahead-fst.so", "ngram-fst.so")
PLUGIN_GLOBS = ("/usr/lib/*/fst/*", "/usr/lib/*/fst", "/usr/lib/fst", "/usr/local/lib/fst", "/usr/local/lib")
INSTALL_HINT = "install OpenFst's tools and plugins (Debian: libfst-tools libfst22-plugins-base)"


class GraphCompileError(RuntimeError):
    """The static graph could not be made; the message says why in one line."""


@dataclass(frozen=True)
class OpenFst:
    """Where OpenFst's command-line tools and its FST-type plugins are."""

    tools: dict[str, str]  # tool name -> its path
    plugin_dir: Path

    @classmethod
    def find(cls, path: str | None = None, plugin_globs: Sequence[str] = PLUGIN_GLOBS) -> "OpenFst":
        """Tools from `path` (default $PATH), plugins from $LD_LIBRARY_PATH or the usual library folders."""
        tools = {tool: shutil.which(tool, path=path) for tool in TOOLS}
        missing = [tool for tool, found in tools.items() if found is None]
        if missing:
            raise GraphCompileError(f"OpenFst tools not found: {', '.join(missing)}; {INSTALL_HINT}")
        candidates = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
        for pattern in plugin_globs:
            candidates += sorted(glob.glob(pattern))
        for folder in candidates:
            if all((Path(folder) / plugin).is_file() for plugin in PLUGINS):
                return cls({tool: str(found) for tool, found in tools.items()}, Path(folder))
        raise GraphCompileError(f"OpenFst plugins not found: {', '.join(PLUGINS)}; {INSTALL_HINT}")

    def env(self) -> dict[str, str]:
        # OpenFst dlopen()s a plugin by its bare file name, so its folder must be on the library path.
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (str(self.plugin_dir), env.get("LD_LIBRARY_PATH", "")) if p)
        return env

    def tool(self, name: str, *args: str) -> list[str]:
        return [self.tools[name], *args]


def static_model_path(model_path: Path) -> Path:
    """The Vosk model folder that decodes with the compiled graph."""
    return model_path / STATIC_DIR


def _source_id(model_path: Path) -> str:
    marker = model_path / SOURCE_MARKER
    digest = marker.read_text().strip() if marker.is_file() else "unverified"
    return f"{digest} format {FORMAT}"


def is_compiled(model_path: Path) -> bool:
    marker = static_model_path(model_path) / MARKER
    return marker.is_file() and marker.read_text().strip() == _source_id(model_path)


def has_split_graph(model_path: Path) -> bool:
    graph = model_path / "graph"
    return (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file() and not (graph / "HCLG.fst").exists()


def compile_static_graph(model_path: Path, openfst: OpenFst | None = None) -> Path:
    """Compose graph/HCLr.fst with graph/Gr.fst into `<model>/static-graph/`; returns that folder.

    Raises GraphCompileError (tools missing, a step failed); nothing is left behind then.
    """
    if is_compiled(model_path):
        return static_model_path(model_path)
    if not has_split_graph(model_path):
        raise GraphCompileError(f"{model_path} has no graph/HCLr.fst + graph/Gr.fst to compile")
    openfst = openfst or OpenFst.find()
    _remove_stale_staging(model_path)
    graph = model_path / "graph"
    staging = Path(tempfile.mkdtemp(dir=model_path, prefix=STAGING_PREFIX))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users of the cache
        out_graph = staging / "graph"
        out_graph.mkdir()
        # Gr.fst carries the word table (its ids already relabelled to match HCLr's output side);
        # its symbol tables are dropped before composing, as OpenFst 1.7 writes a composed FST
        # with them that it cannot read back.
        plain_g = staging / "Gr.plain.fst"
        _run([openfst.tool("fstsymbols", f"--save_osymbols={out_graph / 'words.txt'}", "--clear_isymbols",
                           "--clear_osymbols", str(graph / "Gr.fst"), str(plain_g))], openfst)
        # Vosk turns the grammar-disambiguation transition ids into epsilons when it composes
        # (RemoveSomeInputSymbols); a static graph must have them gone too.
        pairs = staging / "disambig-to-eps.txt"
        disambig = (graph / "disambig_tid.int").read_text().split()
        pairs.write_text("".join(f"{tid} 0\n" for tid in disambig))
        hclg = out_graph / "HCLG.fst"
        _run([
            openfst.tool("fstarcsort", "--sort_type=ilabel", str(plain_g)),
            openfst.tool("fstcompose", str(graph / "HCLr.fst"), "-"),
            openfst.tool("fstrelabel", f"--relabel_ipairs={pairs}"),
            openfst.tool("fstconnect"),
            openfst.tool("fstconvert", "--fst_type=const", "-", str(hclg)),
        ], openfst)
        if not hclg.is_file() or hclg.stat().st_size == 0:
            raise GraphCompileError("fstconvert wrote no graph")
        plain_g.unlink()
        pairs.unlink()
        # The rest of the model is shared with the original folder, not copied.
        for part in ("am", "conf", "ivector"):
            if (model_path / part).exists():
                (staging / part).symlink_to(Path("..") / part)
        (out_graph / "phones").symlink_to(Path("..") / ".." / "graph" / "phones")
        (staging / MARKER).write_text(_source_id(model_path) + "\n")
        target = static_model_path(model_path)
        if target.exists():
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:
            if not is_compiled(model_path):  # not another process that finished first
                raise
    except OSError as exc:
        raise GraphCompileError(f"cannot write the static graph: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return static_model_path(model_path)


def _remove_stale_staging(model_path: Path) -> None:
    now = time.time()
    for folder in model_path.glob(STAGING_PREFIX + "*"):
        try:
            if now - folder.stat().st_mtime > STALE_STAGING_S:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue  # gone meanwhile


def ensure_static_graph(model_path: Path) -> Path | None:
    """The compiled model folder, compiling it first when needed; None (with one warning) when it
    cannot be: recognition then composes the graph per recognizer, as Vosk does by default."""
    if is_compiled(model_path):
        return static_model_path(model_path)
    if not has_split_graph(model_path):
        return None  # a model shipped with a static graph already, or not Vosk's two-part layout
    log.info("compiling a static decoding graph for %s (once; about a minute)", model_path.name)
    try:
        path = compile_static_graph(model_path)
    except GraphCompileError as exc:
        log.warning("no static decoding graph, recognition will cost ~3x the CPU: %s", exc)
        return None
    log.info("static decoding graph ready: %s", path)
    return path


def _run(commands: list[list[str]], openfst: OpenFst) -> None:
    """Run commands as a pipeline (each one's stdout into the next one's stdin)."""
    procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
    errors = []
    try:
        for i, command in enumerate(commands):
            stdin = procs[-1][0].stdout if procs else subprocess.DEVNULL
            last = i == len(commands) - 1
            stderr = tempfile.TemporaryFile()
            proc = subprocess.Popen(
                command, stdin=stdin, stdout=subprocess.DEVNULL if last else subprocess.PIPE,
                stderr=stderr, env=openfst.env(),
            )
            if procs and procs[-1][0].stdout is not None:
                procs[-1][0].stdout.close()  # so the writer sees a broken pipe if this one dies
            procs.append((proc, stderr))
        for command, (proc, stderr) in zip(commands, procs):
            code = proc.wait()
            if code != 0:
                errors.append(f"{Path(command[0]).name} exited with {code}: {_last_line(stderr)}")
    finally:
        for proc, stderr in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            stderr.close()
    if errors:
        raise GraphCompileError("; ".join(errors))


def _last_line(stream: IO[bytes]) -> str:
    stream.seek(0)
    lines = [line for line in stream.read().decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"
