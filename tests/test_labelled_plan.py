"""The heuristic planner on audio and text briefs, on real data: which briefs become the audio
or text kind, and what it reads from the data (speakers from clip file names, the clip length
from WAV headers; the free-text column and the label), while a tabular brief with a text
feature stays tabular."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlgen.brief import Brief
from mlgen.errors import DataError, PlanError
from mlgen.plan import Plan
from mlgen.planners import get_planner
from mlgen.profile import profile_file
from realdata import rdataset

REPO = Path(__file__).resolve().parents[1]
MAKE_CLIPS = REPO / "examples" / "spoken-commands" / "make_clips.py"


def plan_for(brief: str, folder: Path) -> Plan:
    (folder / "brief.md").write_text(brief)
    parsed = Brief.load(folder / "brief.md")
    return get_planner().plan(parsed, profile_file(parsed.data_path()))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("needs espeak-ng and sox (apt-get install espeak-ng sox)")
    out = tmp_path_factory.mktemp("clips") / "clips"
    subprocess.run([sys.executable, str(MAKE_CLIPS), "--out", str(out), "--words", "yes,no",
                    "--voices", "3", "--takes", "1", "--seed", "2"],
                   check=True, capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="module")
def reviews(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("reviews")
    rdataset("modeldata", "training_data").head(300)[["product", "review", "score"]].to_csv(
        folder / "reviews.csv", index=False)
    return folder


def test_a_folder_of_clips_is_the_audio_kind_with_speakers_from_file_names(clips: Path) -> None:
    plan = plan_for("---\ndata: clips\n---\nThe audio classification model works locally. How "
                    "do I deploy this to production?\n", clips.parent)
    assert plan.kind == "audio" and plan.data_path == str(clips)
    assert plan.group_pattern == "^(?P<group>[^_]+)_"
    # make_clips writes 1.2 s clips: the median, rounded up to half a second.
    assert plan.clip_seconds == 1.5, plan.rationale["clip_seconds"]
    assert plan.primary_metric == "accuracy"


def test_a_clip_manifest_is_the_audio_kind_with_its_groups(clips: Path) -> None:
    plan = plan_for("---\ndata: clips/manifest.csv\n---\nClassify audio clips of commands.\n",
                    clips.parent)
    assert plan.kind == "audio" and plan.data_path.endswith("manifest.csv")
    assert plan.group_pattern == "" and "group column" in plan.rationale["group_pattern"]


def test_a_folder_without_clips_says_how_to_lay_them_out(tmp_path: Path) -> None:
    (tmp_path / "empty" / "yes").mkdir(parents=True)
    with pytest.raises(DataError, match="<label>/ folders"):
        plan_for("---\ndata: empty\n---\nClassify audio clips.\n", tmp_path)


def test_a_manifest_with_other_column_names_is_refused_saying_what_to_rename(
    clips: Path, tmp_path: Path
) -> None:
    manifest = pd.read_csv(clips / "manifest.csv").rename(columns={"path": "file"})
    manifest["file"] = [str(clips / name) for name in manifest["file"]]
    manifest.to_csv(tmp_path / "clips.csv", index=False)
    with pytest.raises(PlanError, match="path,label"):
        plan_for("---\ndata: clips.csv\n---\nClassify audio clips.\n", tmp_path)


@pytest.mark.parametrize(
    "prose",
    [
        "Classify support tickets by the team that should answer them.",
        "Classify reviews as great or other, so that support reads the other ones first.",
        "Tell great reviews from the rest.",
    ],
)
def test_a_brief_asking_to_classify_texts_is_the_text_kind(reviews: Path, prose: str) -> None:
    plan = plan_for(f"---\ndata: reviews.csv\n---\n{prose}\n", reviews)
    assert plan.kind == "text" and (plan.text_column, plan.target) == ("review", "score")
    assert plan.class_weight == "balanced" and plan.primary_metric == "accuracy"


def test_a_tabular_brief_over_text_stays_tabular(reviews: Path) -> None:
    plan = plan_for("---\ndata: reviews.csv\ntarget: score\ntask: classification\n---\n"
                    "Predict the score.\n", reviews)
    assert plan.kind == "tabular"


def test_front_matter_states_the_text_kind_and_its_columns(reviews: Path) -> None:
    plan = plan_for("---\ndata: reviews.csv\nkind: text_classification\ntarget: score\n"
                    "text_categorical_columns: [product]\n---\nGrades.\n", reviews)
    assert plan.kind == "text" and plan.text_categorical_columns == ["product"]
    assert plan.rationale["text_categorical_columns"] == "stated in the brief"


def test_the_label_is_the_column_of_classes_the_prose_names_in_words(tmp_path: Path) -> None:
    # HHS health-data breach reports (Ecdat): several columns of classes, the prose says one of
    # them ("type of breach", column Type.of.Breach); classes under 5 rows dropped, as the
    # planner asks.
    breaches = rdataset("Ecdat", "HHSCyberSecurityBreaches")
    counts = breaches["Type.of.Breach"].value_counts()
    breaches[breaches["Type.of.Breach"].map(counts) >= 5].to_csv(tmp_path / "breaches.csv",
                                                                  index=False)
    plan = plan_for("# Breach triage\n\nClassify each new breach report by its type of breach "
                    "so it goes to the right team. The reports are in breaches.csv.\n", tmp_path)
    assert (plan.kind, plan.target) == ("text", "Type.of.Breach")


def test_the_label_is_named_in_words_with_words_between_and_at_a_sentence_end(
    tmp_path: Path,
) -> None:
    # openintro's wildlife strikes: "how many birds were struck" says birds_struck, though
    # two words sit between and a full stop follows it; the remarks are the text.
    birds = rdataset("openintro", "birds")
    birds[["remarks", "phase_of_flt", "sky", "birds_seen", "birds_struck"]].to_csv(
        tmp_path / "strikes.csv", index=False)
    plan = plan_for("# Strikes\n\nReports in strikes.csv. Classify each report's remarks by how "
                    "many birds were struck.\n", tmp_path)
    assert (plan.kind, plan.target, plan.text_column) == ("text", "birds_struck", "remarks")
