"""``mlgen new --verify --venv DIR``: a reused virtualenv gets what the new service needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from mlgen.verify import RUNTIME_DIR, install_service

ROOT = Path(__file__).resolve().parents[1]

PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
dependencies = [{deps}]

[tool.setuptools]
py-modules = ["{module}"]
"""


def _package(folder: Path, name: str, deps: str = "") -> Path:
    folder.mkdir(parents=True)
    module = name.replace("-", "_")
    (folder / "pyproject.toml").write_text(PYPROJECT.format(name=name, deps=deps, module=module))
    (folder / f"{module}.py").write_text("VALUE = 1\n")
    return folder


def test_a_reused_venv_gets_the_new_services_new_dependency(tmp_path):
    # Seen on a forecasting service verified in the venv of a tabular one: its tests failed
    # with "No module named 'statsmodels'", the forecasting extra having never been installed.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    extra = _package(tmp_path / "extra-dep", "extra-dep")
    service = _package(tmp_path / "svc", "trial-service", f'"extra-dep @ {extra.as_uri()}"')
    shutil.copytree(ROOT / "runtime", service / RUNTIME_DIR,
                    ignore=shutil.ignore_patterns("tests", ".venv", "__pycache__", "*.egg-info"))
    assert install_service(service, venv) == python
    check = subprocess.run([str(python), "-c", "import extra_dep, trial_service"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
