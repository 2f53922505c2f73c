"""The code's shape: no import cycles, the import contracts of pyproject.toml, a typed runtime.

A cycle is a strongly connected group of modules of one package, each reachable from the others
by imports. Every import counts: at module level, inside a function, under TYPE_CHECKING, since
each is a dependency all the same, and hiding one in a function only postpones the cycle. A
package is its ``__init__`` module: a package that imports its own submodule is an import like
any other, and a cycle only if that submodule (or one it imports) imports the package back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_SRC = ROOT / "runtime" / "src"
GENERATOR_SRC = ROOT / "generator"
VENV_BIN = Path(sys.executable).parent


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    """The imports that tie ``cycle`` together, one per line with where they are."""
    lines = [" <-> ".join(cycle)]
    for importer in cycle:
        for imported in cycle:
            if graph.direct_import_exists(importer=importer, imported=imported):
                for detail in graph.get_import_details(importer=importer, imported=imported):
                    lines.append(
                        f"    {importer}:{detail['line_number']} {detail['line_contents']}"
                    )
    return "\n".join(lines)


@pytest.mark.parametrize("package", ["mlgen", "mlgen_runtime"])
def test_a_package_has_no_import_cycles(package):
    graph = grimp.build_graph(package, cache_dir=None)
    cycles = import_cycles(graph)
    assert not cycles, (
        f"Import cycles in {package}: move what both sides need into the module that owns it "
        "(or a small module of its own), rather than importing inside a function.\n"
        + "\n".join(describe(graph, cycle) for cycle in cycles)
    )


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path, monkeypatch):
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("from cyclic import a\n")
    (package / "a.py").write_text("from cyclic import b\n")
    (package / "b.py").write_text("def late():\n    from cyclic.a import thing\n")
    (package / "c.py").write_text("import cyclic.b\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("cyclic", cache_dir=None)
    assert import_cycles(graph) == [["cyclic.a", "cyclic.b"]]


def lint_imports(config: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on ``config``, analysing the working tree (not installed copies)."""
    path = os.pathsep.join([str(RUNTIME_SRC), str(GENERATOR_SRC), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [str(VENV_BIN / "lint-imports"), "--config", str(config), "--no-cache", "--no-logo"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_of_pyproject_are_kept():
    result = lint_imports(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_broken_import_contract_fails_lint_imports(tmp_path):
    # The generator's own modules, forbidden from importing one it does import: the contract
    # machinery must report it, or the check above proves nothing.
    config = tmp_path / "contracts.toml"
    config.write_text(
        "[tool.importlinter]\n"
        'root_packages = ["mlgen"]\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "render does not import errors"\n'
        'type = "forbidden"\n'
        'source_modules = ["mlgen.render"]\n'
        'forbidden_modules = ["mlgen.errors"]\n'
    )
    result = lint_imports(config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 broken" in result.stdout


def test_the_runtime_type_checks():
    # The configuration ([tool.mypy] in pyproject.toml) names the files; its cache keeps
    # repeated runs to seconds.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,  # a hang guard, not a speed check: cold, on a loaded 2-core box: 7 min
    )
    assert result.returncode == 0, result.stdout + result.stderr
