"""The package's shape: its import graph has no cycle, and nothing shipped or benchmarked imports the tests."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "entrypoint" / "llama_ascend"
TEST_MODULES = {p.stem for p in (ROOT / "tests").glob("*.py")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, known: set[str]) -> set[str]:
    """The package modules `path` imports, at module level or inside functions (a lazy import is a dependency too;
    one under `if TYPE_CHECKING:` is not)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:  # for annotations only: not a dependency at run time
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != "llama_ascend":  # the root package only holds the version
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {name: imported(path, known) - {name} for name, path in sorted(files.items())}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_package_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert graph.get("llama_ascend.cli")
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def python_files(*folders: str) -> list[Path]:
    return [path for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))]


def edits_sys_path(node: ast.AST) -> bool:
    """`sys.path.insert(...)`, `sys.path.append(...)`, `sys.path += ...`, `sys.path[:0] = ...` and the like."""
    if isinstance(node, ast.Attribute) and node.attr in ("insert", "append", "extend"):
        return ast.unparse(node.value) == "sys.path"
    if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(ast.unparse(t).startswith("sys.path") for t in targets)
    return False


def test_nothing_shipped_or_benchmarked_imports_the_tests_or_edits_sys_path() -> None:
    offenders = []
    for path in python_files("entrypoint", "devtools", "bench", "scripts"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in TEST_MODULES:
                offenders.append(f"{path.relative_to(ROOT)} imports {node.module}")
            if isinstance(node, ast.Import):
                offenders += [
                    f"{path.relative_to(ROOT)} imports {a.name}" for a in node.names if a.name in TEST_MODULES
                ]
    for path in python_files("entrypoint", "devtools", "bench", "scripts", "tests", "docker"):
        offenders += [
            f"{path.relative_to(ROOT)} edits sys.path"
            for n in ast.walk(ast.parse(path.read_text()))
            if edits_sys_path(n)
        ]
    assert offenders == []


def test_the_sys_path_finder_finds_each_way_of_editing_it() -> None:
    edits = [
        "sys.path.insert(0, 'x')",
        "sys.path.append('x')",
        "sys.path.extend(['x'])",
        "sys.path += ['x']",
        "sys.path[:0] = ['x']",
        "sys.path = ['x']",
    ]
    for source in edits:
        assert any(edits_sys_path(n) for n in ast.walk(ast.parse(source))), source
    assert not any(edits_sys_path(n) for n in ast.walk(ast.parse("print(sys.path); path.insert(0, 1)")))
