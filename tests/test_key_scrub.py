"""The Anthropic API key reaches the Messages API and nothing else.

No process mlgen starts (its own git, Copier's git, pip, the service's tests and training) is
given the key, and no file holds it. Each check looks from where an
attacker would: a ``git`` first on PATH that saves the environment it was started with, an
audit hook in mlgen that saves the environment of every process it starts, a fake service
interpreter that saves its own, and a scan of every file mlgen could have written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mlgen.environment import SECRET_VARIABLES, child_env, take_api_key
from mlgen.errors import VerifyError
from mlgen.recording import Recording
from mlgen.store import TemplateStore
from mlgen.update import git, run_tests
from mlgen.verify import verify_service
from support import REPO

EXAMPLE = REPO / "examples" / "penguins"
KEY = "sk-ant-test-FAKE-keyscrub-5b8e0c71"
TOKEN = "sk-ant-test-FAKE-authtoken-91d2aa3f"
SECRETS = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_AUTH_TOKEN": TOKEN}
SPY_SCRIPT = """#!/bin/sh
# The environment this process was started with, as the kernel holds it.
{{ printf '== %s\\n' "$0 $*"; tr '\\0' '\\n' < /proc/$$/environ; }} >> '{log}'
{then}
"""
AUDIT_HOOK = """import json, os, sys

def _spy(event, args):
    if event == "subprocess.Popen":
        argv, env = args[1], args[3]
    elif event in ("os.exec", "os.posix_spawn"):
        argv, env = args[1], args[2]
    elif event == "os.system":
        argv, env = args[0], None
    else:
        return
    argv = [argv] if isinstance(argv, (str, bytes)) else argv
    seen = os.environ if env is None else env
    record = {{"argv": [os.fsdecode(a) for a in argv],
               "env": {{os.fsdecode(k): os.fsdecode(v) for k, v in seen.items()}}}}
    with open({log!r}, "a") as out:
        out.write(json.dumps(record) + "\\n")

sys.addaudithook(_spy)
"""


@dataclass(frozen=True)
class Spies:
    """A spying ``git`` (first on PATH) and an audit hook (``sitecustomize``) with their logs."""

    folder: Path

    @property
    def git_log(self) -> Path:
        return self.folder / "git.log"

    @property
    def spawn_log(self) -> Path:
        return self.folder / "spawn.log"

    @property
    def bin(self) -> Path:
        return self.folder / "bin"

    @classmethod
    def install(cls, folder: Path) -> Spies:
        spies = cls(folder)
        spies.bin.mkdir(parents=True)
        real_git = shutil.which("git")
        write_script(spies.bin / "git", SPY_SCRIPT.format(log=spies.git_log,
                                                          then=f'exec {real_git} "$@"'))
        (folder / "site").mkdir()
        (folder / "site" / "sitecustomize.py").write_text(AUDIT_HOOK.format(log=str(
            spies.spawn_log)))
        return spies

    def environment(self, **extra: str) -> dict[str, str]:
        """The user's shell, with the secrets set and both spies in place."""
        env = {**os.environ, **SECRETS, **extra}
        env["PATH"] = f"{self.bin}{os.pathsep}{env['PATH']}"
        env["PYTHONPATH"] = str(self.folder / "site")
        return env

    def git_calls(self) -> list[str]:
        return self.git_log.read_text().split("== ")[1:]

    def spawns(self) -> list[dict]:
        return [json.loads(line) for line in self.spawn_log.read_text().splitlines()]


def write_script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


def files_holding_a_secret(*folders: Path) -> list[Path]:
    return [path for folder in folders for path in folder.rglob("*")
            if path.is_file() and not path.is_symlink()
            and any(value.encode() in path.read_bytes() for value in SECRETS.values())]


@dataclass
class FakeMessagesServer:
    """The example recording's answers over real HTTP on 127.0.0.1, and the headers it got."""

    answers: list[dict]
    headers: list[dict[str, str]]

    @classmethod
    @contextmanager
    def serve(cls) -> Iterator[tuple[FakeMessagesServer, str]]:
        fake = cls(list(Recording.load(EXAMPLE / "llm-recording.json").exchanges), [])

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                fake.headers.append(dict(self.headers))
                answer = fake.answers.pop(0)
                body = json.dumps(answer["body"]).encode()
                self.send_response(answer["status"])
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield fake, f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()


@dataclass(frozen=True)
class Session:
    """``mlgen new`` then ``mlgen update`` run as a user would, with the key set and spied on."""

    spies: Spies
    api: FakeMessagesServer
    work: Path
    home: Path
    tmp: Path
    output: str


def committed(service: Path) -> None:
    """The rendered service committed to git (as README asks before an update), spy-free."""
    env = {**child_env(), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "Generated by mlgen"]):
        subprocess.run(["git", *args], cwd=service, env=env, check=True)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    root = tmp_path_factory.mktemp("keyscrub")
    spies = Spies.install(root / "spies")
    work, home, tmp = root / "work", root / "mlgen-home", root / "tmp"
    for folder in (work, home, tmp):
        folder.mkdir()
    shutil.copytree(EXAMPLE, work / "brief", ignore=shutil.ignore_patterns("llm-recording.json"))
    output = []

    def mlgen(*args: str, env: dict[str, str]) -> None:
        proc = subprocess.run([sys.executable, "-m", "mlgen", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)
        output.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    with FakeMessagesServer.serve() as (api, url):
        env = spies.environment(MLGEN_HOME=str(home), TMPDIR=str(tmp), ANTHROPIC_BASE_URL=url,
                                NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
        env.pop("MLGEN_MODEL", None)
        mlgen("new", "--brief", "brief/brief.md", "--out", "svc", "--llm-required",
              "--llm-record", "recording.json", env=env)
    committed(work / "svc")
    mlgen("update", "svc", "--data", "tuning_trials=5", env=env)
    return Session(spies, api, work, home, tmp, "\n".join(output))


def test_the_key_from_the_environment_reaches_the_messages_api(session: Session):
    # The SDK sends it as x-api-key or as a bearer token, depending on its version.
    assert [leaks(json.dumps(headers)) for headers in session.api.headers] == [
        ["ANTHROPIC_API_KEY"]]
    manifest = json.loads((session.work / "svc" / ".mlgen" / "manifest.json").read_text())
    assert manifest["planner"] == "llm" and "bill_ratio" in manifest["transforms"]


def test_no_git_started_by_new_or_update_is_given_the_key(session: Session):
    calls = session.spies.git_calls()
    # Both mlgen's own git calls (the template store, the update) and Copier's (clone, diff).
    assert any(" tag " in call for call in calls) and any(" clone " in call for call in calls)
    assert [call.splitlines()[0] for call in calls if leaks(call)] == []


def test_no_process_started_by_new_or_update_is_given_the_key(session: Session):
    spawns = session.spies.spawns()
    programs = {Path(spawn["argv"][0]).name for spawn in spawns}
    assert "git" in programs
    # Nothing runs the model's answer: no Python is started to check or lint code.
    assert not any(name.startswith(("python", "ruff")) for name in programs)
    assert [spawn["argv"] for spawn in spawns if leaks(json.dumps(spawn["env"]))] == []


def test_no_file_and_no_output_holds_the_key(session: Session):
    assert (session.work / "recording.json").is_file()
    assert files_holding_a_secret(session.work, session.home, session.tmp) == []
    assert leaks(session.output) == []


@pytest.fixture
def secrets_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """mlgen used as a library: the secrets are still in this process's environment."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def test_verify_and_update_start_the_service_python_without_the_key(
    tmp_path: Path, secrets_in_environment: None
):
    log = tmp_path / "python.log"
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = write_script(venv / "bin" / "python", SPY_SCRIPT.format(log=log, then="exit 0"))
    service = tmp_path / "svc"
    service.mkdir()
    with pytest.raises(VerifyError, match="metadata.json"):
        verify_service(service, "svc", venv)
    assert run_tests(service, str(python)) == (True, "")
    calls = log.read_text().split("== ")[1:]
    # verify: install the runtime, the service; tests; train. update: the same two installs,
    # then its tests.
    assert len(calls) == 7
    assert [call.splitlines()[0] for call in calls if leaks(call)] == []


def test_mlgens_own_git_calls_are_not_given_the_key(
    tmp_path: Path, secrets_in_environment: None, monkeypatch: pytest.MonkeyPatch
):
    spies = Spies.install(tmp_path / "spies")
    monkeypatch.setenv("PATH", f"{spies.bin}{os.pathsep}{os.environ['PATH']}")
    git(tmp_path, "--version")
    TemplateStore(tmp_path).git("--version")
    calls = spies.git_calls()
    assert len(calls) == 2
    assert [call.splitlines()[0] for call in calls if leaks(call)] == []


def test_child_env_drops_the_secrets_and_keeps_the_rest(secrets_in_environment: None):
    env = child_env({"MLFLOW_DISABLE_TELEMETRY": "true"})
    assert set(SECRETS) <= SECRET_VARIABLES
    assert not set(SECRETS) & set(env)
    assert env["PATH"] == os.environ["PATH"] and env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["ANTHROPIC_API_KEY"] == KEY  # the helper leaves this process alone


def test_taking_the_key_empties_the_environment_and_copiers_copy_of_it(
    secrets_in_environment: None,
):
    from plumbum import local

    # plumbum copied os.environ when it was imported, perhaps while the key was set.
    local.env.update(SECRETS)
    assert take_api_key() == KEY
    assert not set(SECRETS) & (set(os.environ) | set(local.env.keys()))
    assert take_api_key() is None
