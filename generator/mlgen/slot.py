"""A *slot* is a file of the service an LLM may write free code into: ``custom_features.py``.

Code for the slot is untrusted. Before it is written it must parse, pass an AST allowlist
(imports of pandas, numpy, math, re and datetime only; no builtins that reach files, the
interpreter or other modules; no dunder names, no attributes starting with ``_``; no
pandas/numpy I/O or string evaluation), and then run in a separate, resource-limited Python
process on a sample of the data, on an all-null row and on a frame lacking the expected columns
(the service's own tests run it on other data), each time returning a DataFrame with the same
rows that keeps every input column.
Anything else is rejected with :class:`SlotError` saying why.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlgen.environment import child_env
from mlgen.errors import SlotError

FUNCTION = "add_features"
ALLOWED_MODULES = frozenset({"pandas", "numpy", "math", "re", "datetime"})
FORBIDDEN_NAMES = frozenset(
    {
        "open",
        "exec",
        "eval",
        "compile",
        "__import__",
        "globals",
        "locals",
        "vars",
        "getattr",
        "setattr",
        "delattr",
        "hasattr",
        "input",
        "breakpoint",
        "help",
        "exit",
        "quit",
        "memoryview",
        "type",
        "super",
        "dir",
    }
)
# Attributes that read or write files, evaluate strings, or reach native code. str.format is
# here because "{0.__class__}".format(x) reaches attributes the AST never shows.
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "eval",
        "query",
        "load",
        "loads",
        "dump",
        "dumps",
        "save",
        "savez",
        "savez_compressed",
        "savetxt",
        "loadtxt",
        "genfromtxt",
        "fromfile",
        "tofile",
        "memmap",
        "ctypeslib",
        "ctypes",
        "io",
        "lib",
        "f2py",
        "testing",
        "DataSource",
        "HDFStore",
        "ExcelWriter",
        "ExcelFile",
        "plot",
        "savefig",
        "system",
        "set_option",
        "options",
        "format",
        "format_map",
    }
)
FORBIDDEN_ATTRIBUTE_PREFIXES = ("_", "read_", "to_")
# DataFrame/Series conversions named to_* that return values instead of writing anything.
SAFE_TO_ATTRIBUTES = frozenset(
    {
        "to_numeric",
        "to_datetime",
        "to_timedelta",
        "to_numpy",
        "to_list",
        "to_dict",
        "to_frame",
        "to_period",
        "to_timestamp",
    }
)
FORBIDDEN_NODES = (
    ast.With,
    ast.AsyncWith,
    ast.AsyncFunctionDef,
    ast.Await,
    ast.Yield,
    ast.YieldFrom,
    ast.Global,
    ast.Nonlocal,
    ast.ClassDef,
)
TIMEOUT_SECONDS = 60
MEMORY_BYTES = 4 << 30
SAMPLE_ROWS = 200


@dataclass(frozen=True)
class SlotCheck:
    """Code that passed every check, with what the sample run observed."""

    code: str
    added_columns: tuple[str, ...]


def check_slot(code: str, sample: pd.DataFrame, python: str | None = None) -> SlotCheck:
    """Validate ``code`` statically, lint it, then run it on ``sample`` in a sandboxed process."""
    check_source(code)
    code = lint(code)
    check_source(code)
    added = run_in_sandbox(code, sample, python=python)
    return SlotCheck(code=code, added_columns=tuple(added))


def lint(code: str) -> str:
    """``code`` with ruff's safe fixes applied (the service's CI runs ruff with these rules).

    Refuses code with violations ruff cannot fix. Skipped when ruff is not installed (it is a
    development tool, not a runtime dependency of mlgen); the safety checks never are.
    """
    ruff = shutil.which("ruff", path=f"{Path(sys.executable).parent}{os.pathsep}{os.defpath}")
    if ruff is None:
        return code
    proc = subprocess.run(
        [
            ruff,
            "check",
            "--isolated",
            "--no-cache",
            "--line-length",
            "100",
            "--target-version",
            "py311",
            "--select",
            "E,F,W,I,B,UP",
            "--fix",
            "--output-format",
            "concise",
            "--stdin-filename",
            "custom_features.py",
            "-",
        ],
        input=code,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        env=child_env(),
    )
    if proc.returncode != 0:
        found = [line for line in proc.stderr.splitlines() if line.startswith("custom_features")]
        raise SlotError("ruff finds problems it cannot fix: " + "; ".join(found[:5]))
    return proc.stdout.lstrip("\n")


def check_source(code: str) -> ast.Module:
    """Parse ``code`` and apply the allowlist; raise :class:`SlotError` on the first problem."""
    try:
        tree = ast.parse(code, filename="custom_features.py")
    except SyntaxError as exc:
        raise SlotError(f"the code does not parse: {exc.msg} (line {exc.lineno})") from exc
    long = [n for n, line in enumerate(code.splitlines(), 1) if len(line) > 100]
    if long:
        raise SlotError(f"lines longer than 100 characters: {long[:5]}")
    for statement in tree.body:
        _check_top_level(statement)
    functions = [s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == FUNCTION]
    if len(functions) != 1:
        raise SlotError(f"the code must define exactly one top-level `def {FUNCTION}(df)`")
    arguments = functions[0].args
    if len(arguments.args) != 1 or arguments.vararg or arguments.kwarg or arguments.kwonlyargs:
        raise SlotError(f"`{FUNCTION}` must take exactly one argument, the DataFrame")
    for node in ast.walk(tree):
        _check_node(node)
    return tree


def _check_top_level(statement: ast.stmt) -> None:
    docstring = isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Assign, ast.AnnAssign)
    if not (docstring or isinstance(statement, allowed)):
        raise SlotError(
            f"line {statement.lineno}: only imports, constants and functions may be at module "
            f"level (found {type(statement).__name__})"
        )


def _check_node(node: ast.AST) -> None:
    where = f"line {getattr(node, 'lineno', '?')}"
    if isinstance(node, FORBIDDEN_NODES):
        raise SlotError(f"{where}: `{type(node).__name__}` statements are not allowed in the slot")
    if isinstance(node, ast.Import):
        for alias in node.names:
            _check_module(alias.name, where)
    elif isinstance(node, ast.ImportFrom):
        if node.module == "__future__" and node.level == 0:
            return
        if node.level:
            raise SlotError(f"{where}: relative imports are not allowed")
        _check_module(node.module or "", where)
        for alias in node.names:
            _check_attribute(alias.name, where)
    elif isinstance(node, ast.Name):
        if node.id in FORBIDDEN_NAMES or node.id.startswith("__"):
            raise SlotError(f"{where}: the name `{node.id}` is not allowed")
    elif isinstance(node, ast.Attribute):
        _check_attribute(node.attr, where)
    elif isinstance(node, ast.arg | ast.FunctionDef | ast.alias):
        name = getattr(node, "asname", None) or getattr(node, "arg", None) or node.name
        if name.startswith("__"):
            raise SlotError(f"{where}: dunder names are not allowed (`{name}`)")


def _check_module(name: str, where: str) -> None:
    if name.split(".")[0] not in ALLOWED_MODULES or "." in name:
        allowed = ", ".join(sorted(ALLOWED_MODULES))
        raise SlotError(f"{where}: importing `{name}` is not allowed (only {allowed})")


def _check_attribute(attr: str, where: str) -> None:
    if attr in SAFE_TO_ATTRIBUTES:
        return
    if attr in FORBIDDEN_ATTRIBUTES or attr.startswith(FORBIDDEN_ATTRIBUTE_PREFIXES):
        raise SlotError(
            f"{where}: the attribute `{attr}` is not allowed (I/O, evaluation or "
            "interpreter internals)"
        )


# Runs in the sandbox: load the slot from a file, apply it to the sample and to an all-null row.
_RUNNER = """
import json, sys
import pandas as pd
namespace = {"__name__": "custom_features"}
source = open(sys.argv[1], encoding="utf-8").read()
sample = pd.read_csv(sys.argv[2])
exec(compile(source, "custom_features.py", "exec"), namespace)
function = namespace["add_features"]
report = {}
cases = (
    ("sample", sample),
    ("empty row", sample.head(1).map(lambda v: None)),
    ("frame without its columns", pd.DataFrame({"unrelated": [1.0, 2.0, 3.0]})),
)
for label, frame in cases:
    print(f"running on the {label}", file=sys.stderr)
    result = function(frame.copy())
    if not isinstance(result, pd.DataFrame):
        report["error"] = f"on the {label} it returned {type(result).__name__}, not a DataFrame"
        break
    if len(result) != len(frame):
        report["error"] = f"on the {label} it returned {len(result)} rows for {len(frame)}"
        break
    lost = [c for c in frame.columns if c not in result.columns]
    if lost:
        report["error"] = f"on the {label} it dropped input columns: {lost[:5]}"
        break
    if label == "sample":
        report["added"] = [str(c) for c in result.columns if c not in frame.columns]
print(json.dumps(report))
"""


def run_in_sandbox(
    code: str, sample: pd.DataFrame, python: str | None = None, timeout: int = TIMEOUT_SECONDS
) -> list[str]:
    """Run ``code`` on ``sample`` in a fresh interpreter with CPU, memory and time limits."""
    with tempfile.TemporaryDirectory(prefix="mlgen-slot-") as folder:
        work = Path(folder)
        (work / "custom_features.py").write_text(code, encoding="utf-8")
        sample.head(SAMPLE_ROWS).to_csv(work / "sample.csv", index=False)
        # -I: ignore PYTHON* variables and the user site; the working folder is the empty
        # temporary one, and the environment carries nothing but a PATH and thread limits: an
        # allowlist, stricter than the child_env every other child process of mlgen gets.
        command = [
            python or sys.executable,
            "-I",
            "-c",
            _RUNNER,
            "custom_features.py",
            "sample.csv",
        ]
        try:
            proc = subprocess.run(
                command,
                cwd=work,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={"PATH": os.defpath, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
                preexec_fn=functools.partial(_limit_resources, timeout + 1),
            )
        except subprocess.TimeoutExpired as exc:
            raise SlotError(f"running it on the data sample took over {timeout} s") from exc
    # The CPU limit is a backstop one second past the wall clock, but a busy machine can let
    # the child's SIGXCPU land before the parent wakes to see the wall clock: same verdict.
    if proc.returncode == -signal.SIGXCPU:
        raise SlotError(f"running it on the data sample took over {timeout} s")
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["no output"]
        case = next(
            (line for line in reversed(lines) if line.startswith("running on the ")),
            "running on the data sample",
        )
        raise SlotError(f"{case} failed: {lines[-1]}")
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise SlotError("running it on the data sample printed no result") from exc
    if "error" in report:
        raise SlotError(report["error"])
    return report["added"]


def _limit_resources(cpu_seconds: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
