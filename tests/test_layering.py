"""Dependencies point one way: every import of the project's packages is checked against the layers.

speech/ knows no HTTP, database or gateway; the scheduler knows no web server; inside gateway/,
adapters know nothing of calls, storage or the web, storage knows nothing of calls or the web,
and no two packages import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "speech", "scheduler", "surveys")

# package -> what it must never import (module prefixes)
FORBIDDEN = {
    "speech": ("gateway", "scheduler", "starlette", "uvicorn", "sqlalchemy", "httpx", "websockets", "alembic"),
    "surveys": ("gateway", "scheduler", "starlette", "uvicorn", "sqlalchemy", "httpx", "websockets", "alembic"),
    "scheduler": ("gateway.web", "gateway.calls", "starlette", "uvicorn"),
    "gateway.telephony": ("gateway.calls", "gateway.storage", "gateway.web", "gateway.app"),
    "gateway.storage": ("gateway.calls", "gateway.web", "gateway.telephony", "gateway.app"),
    "gateway.model": ("gateway.calls", "gateway.storage", "gateway.web", "gateway.telephony", "gateway.app"),
    "gateway.tts": ("gateway.calls", "gateway.storage", "gateway.web", "gateway.app"),
    "gateway.calls": ("gateway.web", "gateway.app"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_no_module_imports_a_forbidden_layer():
    problems = []
    for name, path in sorted(_modules().items()):
        for layer, forbidden in FORBIDDEN.items():
            if not _under(name, layer):
                continue
            for module in sorted(_imports(name, path)):
                if any(_under(module, f) for f in forbidden):
                    problems.append(f"{name} imports {module}")
    assert not problems, "\n".join(problems)


def test_no_cycles_between_packages():
    """Sub-packages of gateway/ (and the top-level packages) form a graph without cycles."""
    modules = _modules()

    def unit(module: str) -> str | None:
        parts = module.split(".")
        if parts[0] not in PACKAGES:
            return None
        if parts[0] == "gateway" and len(parts) > 1 and f"gateway.{parts[1]}" in modules and \
                (ROOT / "gateway" / parts[1]).is_dir():
            return f"gateway.{parts[1]}"
        return parts[0] if parts[0] != "gateway" else "gateway"

    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        source = unit(name)
        for module in _imports(name, path):
            target = unit(module)
            if source and target and target != source and target != "gateway":
                # gateway's own top-level modules (settings, services, app, cli) may use any sub-package
                edges.setdefault(source, set()).add(target)
    cycles = []
    for start in edges:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*trail, nxt]))
                elif nxt not in trail:
                    stack.append((nxt, [*trail, nxt]))
    assert not cycles, "\n".join(sorted(set(cycles)))
