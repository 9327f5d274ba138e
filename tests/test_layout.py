"""The code's shape: ruff-clean, short functions, no import cycle, every package installed, no test reaching
into a private part of the service."""

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import ROOT

RUFF = shutil.which("ruff", path=str(ROOT / ".venv" / "bin")) or shutil.which("ruff")
PACKAGE = ROOT / "rag"


@pytest.mark.skipif(RUFF is None, reason="ruff is a dev extra")
@pytest.mark.parametrize("args", [["check"], ["format", "--check"]])
def test_ruff(args: list[str]) -> None:
    done = subprocess.run(
        [RUFF or sys.executable, *args, "rag", "tests", "bench"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_functions_stay_short() -> None:
    """Every function in the package reads on one screen (80 lines at most)."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert long == []


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, at its top or inside a function."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return found & modules - {name}


def test_no_import_cycle() -> None:
    paths = list(PACKAGE.rglob("*.py"))
    modules = {_module(p) for p in paths}
    graph = {_module(p): _imports(p, modules) for p in paths}
    cycles, done, path = [], set(), []

    def visit(node: str) -> None:
        if node in path:
            cycles.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    assert cycles == []


@pytest.mark.slow
def test_every_module_imports_on_its_own() -> None:
    """Each module imported first in a fresh interpreter: an import cycle would leave one half-made."""
    modules = sorted(_module(p) for p in PACKAGE.rglob("*.py"))

    def imports(module: str) -> str | None:
        done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)
        return None if done.returncode == 0 else f"{module}: {done.stderr[-600:]}"

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:  # one interpreter per module, as many at once as cores
        failed = [found for found in pool.map(imports, modules) if found]
    assert failed == []


# the stages, lowest first: a module imports its own stage's modules, those of stages below it and the ground
STAGES = (
    "language",
    "corpus",
    "embedders",
    "indexing",
    "answer",
    "llm",
    "query",
    "store",
    "publishing",
    "channels",
    "web",
    "http",
    "evaluation",
    "cli",
)
GROUND = {
    "rag",
    "rag.errors",
    "rag.models",
    "rag.logs",
    "rag.jobs",
    "rag.egress",
    "rag.assets",
}  # the thin top level and settings
QUERY_NEVER = ("rag.publishing", "rag.corpus.web.fetch", "rag.corpus.web.sync", "rag.corpus.web.extract")


def _graph() -> dict[str, set[str]]:
    paths = list(PACKAGE.rglob("*.py"))
    modules = {_module(p) for p in paths}
    return {_module(p): _imports(p, modules) for p in paths}


def _stage(module: str) -> int | None:
    """-1 for the ground (the top level, the settings), else the stage's rank; None for a module of no stage."""
    if module in GROUND or module.startswith("rag.config"):
        return -1
    name = module.split(".")[1]
    return STAGES.index(name) if name in STAGES else None


def test_every_module_is_in_a_stage_or_on_the_thin_top_level() -> None:
    graph = _graph()
    assert [m for m in graph if _stage(m) is None] == []
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 12, top


def test_no_import_runs_up_the_stages() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if (_stage(target) or 0) > (_stage(module) or 0)
    ]
    assert upward == []


def test_the_query_path_never_imports_publishing_nor_the_crawler() -> None:
    graph = _graph()
    reached: set[str] = set()
    todo = [m for m in graph if m.startswith("rag.query")]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph.get(module, ()))
    assert sorted(m for m in reached if m.startswith(QUERY_NEVER)) == []


def test_modules_and_classes_stay_small() -> None:
    """No module over 400 lines; no class with more than 20 public methods and properties (data fields aside)."""
    big, wide = [], []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 400:
            big.append(str(path.relative_to(ROOT)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                public = [
                    n.name
                    for n in node.body
                    if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and not n.name.startswith("_")
                ]
                if len(public) > 20:
                    wide.append(f"{path.relative_to(ROOT)}:{node.name} ({len(public)})")
    assert big == [] and wide == []


def test_every_package_is_installed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {_module(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py")}
    assert packages <= listed


def test_tests_use_the_service_through_its_public_methods() -> None:
    private = re.compile(r"\b(?:service|svc|plain|served|local)\._[a-z]\w*\(")
    found = [
        f"{path.name}:{number}"
        for path in (ROOT / "tests").glob("test_*.py")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if private.search(line)
    ]
    assert found == []
