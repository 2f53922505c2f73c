"""`pip install -U mlgen` then `mlgen update`: from installed wheels, offline, tests passing.

mlgen 0.1.0 is built as a wheel from this checkout and installed (not editable) into a small
user venv; `mlgen new` renders a service from a brief on real data; the owner commits and edits it;
mlgen 0.2.0 (this checkout with the next release's template changes) is built and installed over
it; `mlgen update --verify` brings the changes in and runs the service's own tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import realdata
from support import REPO, Venv
from test_update import (
    RUNTIME_PYPROJECT,
    SLOT,
    USER_FEATURES,
    USER_LOCAL,
    answers_of,
    commit_all,
    release_next_version,
)

pytestmark = pytest.mark.e2e

# The last commit of the 0.1.0 layout (the engine inside every service's src/<package>/).
RELEASE_0_1_0 = "e4dc8050ee3e25a03a5c6288cf7db108dbb56c21"
SOURCE_PARTS = ("pyproject.toml", "README.md", "LICENSE", "copier.yml", "generator", "template",
                "runtime",
                "prompts")
BRIEF = """---
data: {data}
target: species
project_name: churn-svc
package_name: churn_svc
---
# Penguin species

Predict the species of a penguin from its measurements, island and sex.
"""


def mlgen_source(dst: Path, version: str) -> Path:
    """A copy of this checkout's package sources, at ``version``."""
    for part in SOURCE_PARTS:
        if (REPO / part).is_dir():
            shutil.copytree(REPO / part, dst / part, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_template"))
        elif (REPO / part).is_file():
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / part, dst / part)
    pyproject = dst / "pyproject.toml"
    text, count = re.subn(r'(?m)^version = "[^"]+"$', f'version = "{version}"',
                          pyproject.read_text())
    assert count == 1, "pyproject.toml should have one `version = ...` line"
    pyproject.write_text(text)
    return dst


def released_source(dst: Path, commit: str) -> Path:
    """mlgen's sources as released at ``commit`` of this repository (its git history)."""
    dst.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit],
                             capture_output=True)
    assert archive.returncode == 0, (
        f"commit {commit} (mlgen 0.1.0) is not in this clone's history: "
        f"{archive.stderr.decode()}. Clone without --depth to run this test."
    )
    subprocess.run(["tar", "-x", "-C", str(dst)], input=archive.stdout, check=True)
    return dst


def build_wheel(source: Path, out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(out), str(source)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = out.glob("mlgen-*.whl")
    return wheel


def user_venv(path: Path) -> Path:
    """A small venv for mlgen itself: mlgen's dependencies come from the dev venv via a .pth
    file, so ``pip install -U`` upgrades mlgen the ordinary way without downloading anything."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    dev_site = sysconfig.get_path("purelib")
    Path(site, "mlgen-deps.pth").write_text(f"{dev_site}\n")
    return path


def pip_install_upgrade(venv: Path, wheel: Path) -> None:
    """``pip install -U <wheel>`` into the user's venv, offline."""
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
         "--no-deps", "--no-index", "--upgrade", str(wheel)],
        check=True, capture_output=True, text=True,
    )


def mlgen(venv: Path, *args: str, cwd: Path, path_first: Path | None = None
          ) -> subprocess.CompletedProcess[str]:
    """The installed ``mlgen`` command, as a user runs it."""
    env = {**os.environ, "GIT_ALLOW_PROTOCOL": "file"}
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("PYTHONPATH", None)
    if path_first:
        env["PATH"] = f"{path_first}{os.pathsep}{env['PATH']}"
    return subprocess.run([str(venv / "bin" / "mlgen"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1800)


def installed_then_new(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       source: Path) -> tuple[Path, Path]:
    """mlgen built from ``source`` and installed in a user venv, then `mlgen new` on penguins:
    (the user's venv, the service)."""
    monkeypatch.setenv("MLGEN_HOME", str(tmp_path / "mlgen-home"))
    venv = user_venv(tmp_path / "user-venv")
    pip_install_upgrade(venv, build_wheel(source, tmp_path / "w1"))
    data = realdata.write_csv(realdata.penguins(), tmp_path / "penguins.csv")
    (tmp_path / "brief.md").write_text(BRIEF.format(data=data))
    made = mlgen(venv, "new", "--brief", "brief.md", "--out", "svc", cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    return venv, tmp_path / "svc"


def test_pip_upgrade_then_mlgen_update_works_offline_and_the_service_passes_its_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service_venv: Venv
) -> None:
    venv, service = installed_then_new(tmp_path, monkeypatch,
                                       mlgen_source(tmp_path / "src-0.1.0", "0.1.0"))
    store = (tmp_path / "mlgen-home" / "template-store").resolve()
    assert answers_of(service)["_src_path"] == str(store)
    assert answers_of(service)["_commit"] == "v0.1.0"
    commit_all(service, "Generated by mlgen")
    (service / SLOT).write_text(USER_FEATURES)
    (service / "configs" / "local.yaml").write_text(USER_LOCAL)
    commit_all(service, "Our features and settings")

    next_source = mlgen_source(tmp_path / "src-0.2.0", "0.2.0")
    release_next_version(next_source)
    pip_install_upgrade(venv, build_wheel(next_source, tmp_path / "w2"))
    service_venv.install_service(service)
    updated = mlgen(venv, "update", str(service), "--verify", cwd=tmp_path,
                    path_first=service_venv.bin)

    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert "tests pass" in updated.stdout
    assert answers_of(service)["_commit"] == "v0.2.0"
    assert (service / "RELEASE_NOTES.md").is_file()
    assert '"scikit-learn>=1.7,<1.10"' in (service / RUNTIME_PYPROJECT).read_text()
    assert (service / SLOT).read_text() == USER_FEATURES
    assert (service / "configs" / "local.yaml").read_text() == USER_LOCAL
    assert not list(service.rglob("*.rej"))


ENGINE_EDIT = "# Our team's note: requests are logged by the gateway, not here.\n"


def test_a_0_1_0_service_moves_to_the_runtime_layout_and_keeps_every_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service_venv: Venv
) -> None:
    venv, service = installed_then_new(tmp_path, monkeypatch,
                                       released_source(tmp_path / "src-0.1.0", RELEASE_0_1_0))
    assert answers_of(service)["_commit"] == "v0.1.0"
    engine_file = service / "src" / "churn_svc" / "serving" / "app.py"
    assert engine_file.is_file(), "0.1.0 kept the engine inside the service"
    commit_all(service, "Generated by mlgen 0.1.0")
    (service / SLOT).write_text(USER_FEATURES)
    (service / "configs" / "local.yaml").write_text(USER_LOCAL)
    edited_engine = ENGINE_EDIT + engine_file.read_text()
    engine_file.write_text(edited_engine)
    (service / "tests" / "test_our_rules.py").write_text(
        "def test_our_own_rule():\n    assert 2 + 2 == 4\n"
    )
    commit_all(service, "Our features, settings, an engine tweak and a test of our own")

    pip_install_upgrade(venv, build_wheel(mlgen_source(tmp_path / "src-now", "0.2.0"),
                                          tmp_path / "w2"))
    updated = mlgen(venv, "update", str(service), "--verify", cwd=tmp_path,
                    path_first=service_venv.bin)

    output = updated.stdout + updated.stderr
    assert updated.returncode == 0, output
    assert "tests pass" in updated.stdout
    assert answers_of(service)["_commit"] == "v0.2.0"
    # The new layout: the engine is the vendored runtime, the package is the user's skeleton.
    assert (service / RUNTIME_PYPROJECT).is_file()
    assert not (service / "src" / "churn_svc" / "serving").exists()
    assert (service / "src" / "churn_svc" / "app.py").is_file()
    # Every edit survived: owned files byte for byte, the engine edit kept aside and reported,
    # the user's own test still there (and it ran with the service's tests).
    assert (service / SLOT).read_text() == USER_FEATURES
    assert (service / "configs" / "local.yaml").read_text() == USER_LOCAL
    kept = service / ".mlgen" / "kept" / "v0.1.0" / "src" / "churn_svc" / "serving" / "app.py"
    assert kept.read_text() == edited_engine
    assert "src/churn_svc/serving/app.py" in updated.stdout
    assert (service / "tests" / "test_our_rules.py").is_file()
    assert not list(service.rglob("*.rej"))
    assert "<<<<<<<" not in "".join(
        p.read_text(errors="replace") for p in service.rglob("*") if p.is_file()
        and ".git" not in p.parts and "vendor" not in p.parts
    )
