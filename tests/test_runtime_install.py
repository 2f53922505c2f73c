"""How a service gets its runtime: from its own folder, pinned, one version per virtualenv.

The service depends on ``mlgen-runtime @ {root:uri}/vendor/mlgen-runtime``. These tests install
rendered services the way their users and their Dockerfile do, offline: the third-party
dependencies come from the shared test venv (a ``.pth`` file), the runtime and the service are
built from the service folder.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import Venv, render
from test_ops_files import dockerfile, dockerignored, package_of

pytestmark = pytest.mark.e2e


def bare_venv(path: Path, deps: Venv) -> Path:
    """A venv whose own site-packages is empty; ``deps``' packages come after it on sys.path."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    deps_site = subprocess.run(
        [deps.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "service-deps.pth").write_text(f"{deps_site}\n")
    return python


def pip(deps: Venv, python: Path, *args: str, cwd: Path) -> None:
    """``pip`` of the deps venv acting on ``python``'s environment, offline."""
    proc = subprocess.run(
        [str(deps.python), "-m", "pip", "--python", str(python), *args, "-q", "--no-index",
         "--no-build-isolation"], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def runtime_of(python: Path, cwd: Path) -> tuple[str, str]:
    """The runtime version and file the service's interpreter imports."""
    out = subprocess.run(
        [str(python), "-c", "import mlgen_runtime as r; print(r.__version__); print(r.__file__)"],
        cwd=cwd, check=True, capture_output=True, text=True).stdout.split()
    return out[0], out[1]


def bump_runtime(service: Path, version: str) -> None:
    """What a later template does to the vendored runtime: a new version."""
    vendored = service / "vendor" / "mlgen-runtime"
    for rel in ("pyproject.toml", "src/mlgen_runtime/__init__.py"):
        path = vendored / rel
        text, count = re.subn(r'(?m)^(version|__version__) = "[^"]+"', rf'\1 = "{version}"',
                              path.read_text())
        assert count == 1, f"{rel} should state the version once"
        path.write_text(text)


def test_two_services_on_different_runtime_versions_install_side_by_side(
    tmp_path: Path, service_venv: Venv
) -> None:
    old = render(tmp_path / "old-svc", {"project_name": "old-svc"})
    new = render(tmp_path / "new-svc", {"project_name": "new-svc"})
    bump_runtime(new, "9.9.9")
    found = {}
    for service in (old, new):
        python = bare_venv(tmp_path / f"{service.name}-venv", service_venv)
        pip(service_venv, python, "install", "-e", str(service), cwd=service)
        found[service.name] = runtime_of(python, service)
        help_text = subprocess.run([str(python), "-m", package_of(service), "--help"],
                                   cwd=service, capture_output=True, text=True)
        assert help_text.returncode == 0 and "train" in help_text.stdout, help_text.stderr
    assert found["old-svc"][0] != "9.9.9" and found["new-svc"][0] == "9.9.9"
    assert "old-svc-venv" in found["old-svc"][1] and "new-svc-venv" in found["new-svc"][1]


def test_the_docker_build_stage_builds_from_the_service_folder_alone(
    tmp_path: Path, service_venv: Venv
) -> None:
    """The builder stage's commands, run on exactly what the build context sends."""
    service = render(tmp_path / "svc")
    patterns = [line.strip() for line in (service / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    context = tmp_path / "build"
    copies = [shlexed for op, args in dockerfile(service) if op == "COPY"
              for shlexed in [args.split()] if not shlexed[0].startswith("--")]
    builder_copies = [words for words in copies if words[0] in {"pyproject.toml", "src", "vendor"}]
    assert {words[0] for words in builder_copies} == {"pyproject.toml", "src", "vendor"}
    for source, *_ in builder_copies:
        for path in [service / source, *(service / source).rglob("*")]:
            rel = path.relative_to(service).as_posix()
            if path.is_file() and not dockerignored(rel, patterns):
                (context / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, context / rel)
    wheels = tmp_path / "wheels"
    # `pip wheel .` builds the service and, through its direct reference, the runtime; the
    # third-party wheels it would also download are left out here (no index offline).
    for project in (context, context / "vendor" / "mlgen-runtime"):
        proc = subprocess.run(
            [str(service_venv.python), "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
             "--no-build-isolation", "-w", str(wheels), str(project)],
            capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-4000:]
    built = sorted(path.name for path in wheels.glob("*.whl"))
    assert len(built) == 2 and any(name.startswith("mlgen_runtime-") for name in built)
    service_wheel = next(wheels.glob(f"{package_of(service)}-*.whl"))
    with zipfile.ZipFile(service_wheel) as wheel:
        metadata = next(n for n in wheel.namelist() if n.endswith("METADATA"))
        assert "Requires-Dist: mlgen-runtime @ file://" in wheel.read(metadata).decode()
    # The last stage: every wheel installed without resolving the direct reference.
    python = bare_venv(tmp_path / "image-venv", service_venv)
    pip(service_venv, python, "install", "--no-deps", *map(str, wheels.glob("*.whl")),
        cwd=tmp_path)
    run = subprocess.run([str(python), "-m", package_of(service), "--help"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 0 and "serve" in run.stdout, run.stderr
