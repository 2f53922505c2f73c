"""The audio kind end to end through ``mlgen new --verify --no-llm``, on real synthesised speech.

Clips: three command words spoken by twelve espeak-ng voices, four takes each, with sox reverb and
noise (examples/spoken-commands/make_clips.py), in a folder of ``<label>/<voice>_<take>.wav``.
The brief is the user's question, "The audio classification model works locally. How do I
deploy this to production?", with two epochs (tests check that it works; the benchmark measures
how well). Planned offline: the audio kind from the data's shape, speakers from the file names.
Verify installs the service into the shared test venv, runs its own tests, trains (the model
must beat the majority class), serves it on 127.0.0.1 and uploads a clip and three files it must
refuse (not audio, empty, too long). Then the README's own curl commands are run against the
served API, as a user would paste them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import REPO, Venv, labels_of, new_verified, readme_answers, running_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                       reason="needs espeak-ng and sox (apt-get install espeak-ng sox)"),
]
MAKE_CLIPS = REPO / "examples" / "spoken-commands" / "make_clips.py"
BRIEF = """---
data: clips
epochs: 2
---
# Spoken commands

The audio classification model works locally. How do I deploy this to production?
"""


@pytest.fixture(scope="module")
def service(service_venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("audio-e2e")
    subprocess.run([sys.executable, str(MAKE_CLIPS), "--out", str(folder / "clips"), "--words",
                    "yes,no,up", "--voices", "12", "--takes", "4", "--seed", "5"],
                   check=True, capture_output=True, timeout=300)
    (folder / "brief.md").write_text(BRIEF)
    root = folder / "commands"
    summary = new_verified(folder / "brief.md", root, service_venv)
    return root, summary


def test_the_brief_plans_the_audio_kind_with_speakers_held_out(service) -> None:
    root, _ = service
    config = yaml.safe_load((root / "configs" / "config.yaml").read_text())
    assert config["kind"] == "audio" and config["audio"]["group_pattern"] == "^(?P<group>[^_]+)_"
    metadata = json.loads((root / "artifacts" / "champion" / "metadata.json").read_text())
    assert metadata["held_out_groups"] and sorted(metadata["classes"]) == ["no", "up", "yes"]
    assert metadata["metrics"]["accuracy"] > metadata["baseline_metrics"]["accuracy"]


def test_verify_uploaded_a_clip_and_saw_bad_files_refused(service) -> None:
    _, summary = service
    calls = summary["verification"]["calls"]
    assert re.match(r"POST /predict \S+\.wav: 200, '(yes|no|up)'", calls[0]), calls
    assert calls[1:] == ["POST /predict notes.wav: 422 not_audio",
                         "POST /predict empty.wav: 422 empty",
                         "POST /predict long.wav: 422 too_long"]


def test_the_readme_curls_work_as_written(service, service_venv: Venv) -> None:
    root, _ = service
    package = yaml.safe_load((root / "configs" / "config.yaml").read_text())["project"]["package"]
    with running_server(service_venv, root, package) as url:
        answers = readme_answers(root, url)
    assert len(answers) == 3, answers
    for answer in answers:
        assert set(labels_of(answer)) <= {"yes", "no", "up"} and labels_of(answer), answer
