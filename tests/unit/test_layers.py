"""The house's rules, read from the source: no import cycle between modules (lazy imports inside functions
count too), and each layer imports only the layers below it. The layers, lowest first, are the folders of
src/cuecast (docs/architecture.md draws them)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
# Lowest first. Groups of one rank may not import each other (the two worker processes stay apart).
LAYERS: list[set[str]] = [
    {"core"},
    {"config"},
    {"protocol"},
    {"lens", "consumer"},
    {"table"},
    {"media"},
    {"capture", "streaming", "testcam"},
    {"supervisor"},
    {"cli"},
    {"__main__"},
]
RANK = {group: i for i, layer in enumerate(LAYERS) for group in layer}
# What a group may import beyond its own folder, where it is narrower than "every lower layer".
ONLY = {"consumer": {"core", "protocol"}}


def modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "cuecast").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every cuecast module `name` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t.startswith("cuecast") and t != "cuecast" and t != name:
                found.add(t)
    return found


def group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(m, p, set(mods)) for m, p in mods.items()}


def test_every_module_is_in_a_layer() -> None:
    assert {group(m) for m in graph() if m != "cuecast"} <= set(RANK)


def test_no_import_cycle() -> None:
    g = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g.get(m, ())):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_layers_import_only_downwards() -> None:
    wrong = []
    for m, targets in graph().items():
        gm = group(m)
        for t in targets:
            gt = group(t)
            if gt == gm or gt == "":
                continue
            allowed = gt in ONLY[gm] if gm in ONLY else RANK[gt] < RANK[gm]
            if not allowed:
                wrong.append(f"{m} imports {t} ({gm} may not use {gt})")
    assert not wrong, "\n".join(sorted(wrong))
