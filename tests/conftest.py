"""Shared fixtures. Helpers the tests import live in support.py: a module named conftest would
clash with runtime/tests/conftest.py when one pytest run collects both folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlgen.jinja_cache import compiled_once
from mlgen.verify import build_requirements
from support import (
    AUDIO_EXTRA,
    FORECASTING_EXTRA,
    TEST_TOOLS,
    Venv,
    deps_key,
    install_runtime,
    render,
)


@pytest.fixture(scope="session", autouse=True)
def _compile_templates_once() -> Iterator[None]:
    """The tests render the template ~150 times in one process: each Jinja source is compiled
    once (mlgen.jinja_cache, as mlgen's own renders do; test_template_render checks that the
    bytes rendered are the same)."""
    with compiled_once():
        yield


@pytest.fixture(scope="session")
def service_venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """One virtualenv with the rendered services' dependencies, built once per session."""
    override = os.environ.get("MLGEN_TEST_VENV")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlgen-tests"
    path = Path(override) if override else cache / f"venv-{deps_key()}"
    venv = Venv(path)
    marker = path / ".mlgen-deps-ready"
    if marker.exists() and venv.python.exists():
        install_runtime(venv)
        return venv
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    # A recommendation service: its dependencies are a tabular service's plus the runtime's
    # recommendation extra, so every rendered service finds what it needs.
    seed = render(tmp_path_factory.mktemp("venv-seed") / "svc",
                  {"kind": "recommendation", "project_name": "venv-seed"})
    venv.run(str(venv.python), "-m", "pip", "install", "-q", "-U", "pip", cwd=seed)
    # With the service's build backend in the venv, installing a service into it needs no
    # network (verify uses --no-build-isolation there).
    venv.run(str(venv.python), "-m", "pip", "install", "-q", f"{seed}[dev]", *TEST_TOOLS,
             *build_requirements(seed), cwd=seed, timeout=1800)
    # The forecasting and audio kinds' extras (statsmodels; soundfile, torch, onnx), which
    # the recommendation seed lacks.
    venv.run(str(venv.python), "-m", "pip", "install", "-q", *FORECASTING_EXTRA, *AUDIO_EXTRA,
             cwd=seed, timeout=1800)
    # The seed service itself is not kept installed: only its dependencies are shared.
    venv.run(str(venv.python), "-m", "pip", "uninstall", "-q", "-y", "venv-seed", cwd=seed)
    marker.write_text(deps_key())
    install_runtime(venv)
    return venv
