#!/usr/bin/env python3
"""Fail when the ``proxy`` package has an import cycle (``TYPE_CHECKING`` imports included).

Reads the sources with :mod:`ast` (nothing is imported or run), builds the graph of
``proxy.*`` imports between modules and prints every cycle found. Usage:
``python scripts/check_imports.py [package_dir]``; exit status 1 on a cycle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(tree: ast.AST, name: str, is_package: bool, known: set[str]) -> set[str]:
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # "from proxy.hls import tokens" imports the submodule proxy.hls.tokens
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            # a package's __init__ importing its own modules is not a cycle worth reporting
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parent.parent / "proxy").resolve()
    files = sorted(root.rglob("*.py"))
    names = {module_name(root, f): f for f in files}
    known = set(names)
    graph = {name: imports_of(ast.parse(path.read_text(encoding="utf-8"), str(path)), name,
                              path.name == "__init__.py", known)
             for name, path in names.items()}
    cycles = find_cycles(graph)
    for cycle in cycles:
        print("import cycle: " + " -> ".join(cycle), file=sys.stderr)
    print(f"{len(names)} modules, {sum(map(len, graph.values()))} imports, {len(cycles)} cycle(s)")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
