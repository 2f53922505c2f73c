"""The audio kind on real synthesised speech: command words spoken by espeak-ng voices with sox
reverb and noise (examples/spoken-commands/make_clips.py), voices as groups.

What a user relies on: clips outside the limits are refused with the problem named (at training
they are skipped and listed, and training goes on); features are the same at training and
serving; voices never straddle the split; the trained model is registered, gated against its
baseline, quantised only when int8 keeps its accuracy, reproducible bit for bit; the API takes
multipart uploads, base64 JSON and raw WAV bodies, answers batches, refuses bad clips with a
4xx naming the problem, and exports its drift signals. One test runs a real uvicorn server.
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
import yaml
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from mlgen_runtime.config import AudioConfig, Config, load_config
from mlgen_runtime.errors import ConfigError
from mlgen_runtime.kinds import kind_of
from mlgen_runtime.kinds.audio.classifier import load_classifier
from mlgen_runtime.kinds.audio.clips import ClipError, decode, read_dataset
from mlgen_runtime.kinds.audio.features import FrontEnd, fit_length, spectrum
from mlgen_runtime.kinds.audio.models import Augment, OnnxModel, Recipe, fit_cnn
from mlgen_runtime.kinds.audio.serving import create_app
from mlgen_runtime.kinds.audio.train import recipe, train
from mlgen_runtime.kinds.labelled import split_examples
from mlgen_runtime.registry import champion_dir, use_store
from serving_support import live_server

REPO = Path(__file__).resolve().parents[2]
MAKE_CLIPS = REPO / "examples" / "spoken-commands" / "make_clips.py"
WORDS = "yes,no,up,down"
RATE = 16_000

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="needs espeak-ng and sox (apt-get install espeak-ng sox; .ci/run installs them)",
)


def wav(signal: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, signal, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def tone(seconds: float, rate: int = RATE, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 clips (4 words x 6 voices x 2 takes), plus two files training must skip."""
    out = tmp_path_factory.mktemp("audio") / "clips"
    subprocess.run(
        [sys.executable, str(MAKE_CLIPS), "--out", str(out), "--words", WORDS, "--voices", "6",
         "--takes", "2", "--seed", "3"],
        check=True, capture_output=True,
    )
    (out / "yes" / "broken_0.wav").write_bytes(b"RIFF this is not a wav file")
    (out / "no" / "long_0.wav").write_bytes(wav(tone(12.0)))
    with (out / "manifest.csv").open("a") as manifest:
        manifest.write("yes/broken_0.wav,yes,broken\nno/long_0.wav,no,long\n")
    return out


def write_config(root: Path, data: Path, **audio: object) -> Config:
    settings = {
        "project": {"name": "commands", "package": "commands", "description": "spoken words"},
        "kind": "audio",
        "task": "audio_classification",
        "seed": 7,
        "data": {"path": str(data)},
        "audio": {"epochs": 6, "patience": 3, "batch_size": 16, "bootstrap_samples": 50,
                  **audio},
        "tracking": {"experiment": "commands", "registered_model": "commands"},
        "drift": {"window": 50, "min_rows": 5},
    }
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "configs" / "config.yaml").write_text(yaml.safe_dump(settings))
    return load_config(root)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, clips: Path) -> tuple[Config, object]:
    config = write_config(tmp_path_factory.mktemp("service"), clips / "manifest.csv",
                          candidates=["cnn"])
    return config, train(config)


# --- clips and features ------------------------------------------------------------------------


def test_a_clip_outside_the_limits_is_refused_naming_the_problem():
    limits = AudioConfig(max_seconds=2.0, min_sample_rate=8_000, max_channels=1)
    cases = {
        "empty": b"",
        "not_audio": b"GIF89a not a sound",
        "too_long": wav(tone(3.0)),
        "wrong_rate": wav(tone(0.5, rate=4_000), rate=4_000),
        "too_many_channels": wav(np.stack([tone(0.5), tone(0.5)], axis=1)),
    }
    for problem, data in cases.items():
        with pytest.raises(ClipError) as caught:
            decode(data, limits, "upload.wav")
        assert caught.value.problem == problem
        assert "upload.wav" in str(caught.value)
    assert "audio.max_seconds (2 s)" in str(pytest.raises(
        ClipError, decode, cases["too_long"], limits).value)


def test_clips_are_mixed_to_mono_and_resampled_to_the_service_rate():
    stereo = np.stack([tone(0.5, 8_000), tone(0.5, 8_000)], axis=1)
    decoded = decode(wav(stereo, 8_000), AudioConfig())
    assert decoded.sample_rate == RATE and decoded.original_rate == 8_000
    assert decoded.channels == 2 and decoded.signal.ndim == 1
    assert len(decoded.signal) == RATE // 2


def test_features_ignore_loudness_and_have_the_model_shapes():
    front = FrontEnd()
    signal = tone(0.7, hz=880.0) + 0.01 * np.random.default_rng(0).normal(size=int(0.7 * RATE))
    mel = spectrum(signal, front).log_mel()
    assert mel.shape == (front.n_mels, front.frames) and mel.dtype == np.float32
    assert abs(float(mel.mean())) < 1e-5 and abs(float(mel.std()) - 1.0) < 1e-4
    # Per-clip normalisation: a quieter recording of the same sound has the same features.
    np.testing.assert_allclose(spectrum(0.25 * signal, front).log_mel(), mel, atol=2e-3)
    assert spectrum(signal, front).mfcc_stats().shape == (2 * front.n_mfcc,)
    stats = spectrum(np.concatenate([signal, np.zeros(RATE)]), front).clip_stats()
    assert stats["duration_s"] == pytest.approx(1.7)
    assert 0.5 < stats["silence_ratio"] < 0.7
    assert 700 < stats["spectral_centroid_hz"] < 1100


@pytest.mark.parametrize("seconds", [0.43, 1.0, 1.2, 1.23456, 3.7])
def test_one_spectrum_gives_the_features_of_the_fitted_clip_bit_for_bit(seconds):
    """Serving computes one spectrum of the whole clip for the features and the drift signals;
    its model window must be the spectrogram of the clip fitted to clip_seconds exactly."""
    front = FrontEnd()
    signal = np.random.default_rng(5).normal(scale=0.1, size=round(seconds * RATE))
    whole = spectrum(signal.astype(np.float32), front)
    fitted = spectrum(fit_length(signal.astype(np.float32), front.samples), front)
    assert len(fitted.power) == front.frames
    # A longer clip's spectrum covers it all: its frames outside the window feed the drift.
    assert (len(whole.power) > front.frames) == (seconds > front.clip_seconds)
    assert np.array_equal(whole.power[whole.window], fitted.power)
    assert np.array_equal(whole.log_mel(), fitted.log_mel())
    assert np.array_equal(whole.mfcc_stats(), fitted.mfcc_stats())
    # The drift signals describe the clip as sent, not the fitted one.
    assert whole.clip_stats()["duration_s"] == pytest.approx(seconds, abs=1e-4)


def test_training_data_skips_bad_clips_and_lists_them(clips: Path):
    dataset = read_dataset(clips / "manifest.csv", AudioConfig())
    assert len(dataset.signals) == 48
    reasons = dict(dataset.skipped)
    assert set(Path(p).name for p in reasons) == {"broken_0.wav", "long_0.wav"}
    assert "not audio" in next(r for p, r in reasons.items() if p.endswith("broken_0.wav"))
    assert "audio.max_seconds" in next(r for p, r in reasons.items() if p.endswith("long_0.wav"))


def test_a_clip_folder_takes_its_voices_from_the_file_names(clips: Path):
    dataset = read_dataset(clips, AudioConfig(group_pattern=r"^(?P<group>.+)_\d+\.wav$"))
    # The six voices; the two bad clips are skipped.
    assert dataset.groups is not None and len(set(dataset.groups)) == 6
    split = split_examples(dataset.labels, dataset.groups, 0.2, 0.2, seed=1)
    parts = [set(dataset.groups[rows]) for rows in (split.train, split.validation, split.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


# --- training ----------------------------------------------------------------------------------


def test_training_registers_a_gated_model_and_measures_int8_against_fp32(trained):
    config, result = trained
    meta = result.metadata
    assert meta["model_family"] == "cnn" and meta["held_out_groups"]
    assert meta["clips"]["skipped"] == 2
    assert set(meta["groups"]["test"]).isdisjoint(meta["groups"]["validation"])
    variants = {row["variant"]: row for row in meta["quantisation"]}
    assert set(variants) == {"fp32", "int8"}
    fp32 = variants["fp32"]["validation_accuracy"]
    chosen = variants[meta["serving_variant"]]
    assert chosen["validation_accuracy"] >= fp32 - config.audio.quantize_tolerance
    assert chosen["latency_ms"] == min(
        r["latency_ms"] for r in variants.values()
        if r["validation_accuracy"] >= fp32 - config.audio.quantize_tolerance
    )
    assert meta["baseline"] == "MFCC + logistic regression"
    # How the CNN was trained is tracked with the run, not only in the config file.
    assert meta["recipe"] == asdict(recipe(config.audio))
    use_store(config)
    params = MlflowClient().get_run(meta["run_id"]).data.params
    assert params["cnn_mixup"] == str(config.audio.mixup)
    assert params["cnn_schedule"] == config.audio.schedule
    assert "skipped" in kind_of(config).summary(result)
    assert result.baseline_comparison.test.startswith("exact McNemar")


@pytest.fixture(scope="module")
def log_mels(clips: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Training and validation log-mels with label codes, validation voices held out."""
    dataset = read_dataset(clips / "manifest.csv", AudioConfig())
    codes = np.searchsorted(np.unique(dataset.labels), dataset.labels)
    front = FrontEnd()
    x = np.stack([spectrum(signal, front).log_mel() for signal in dataset.signals])[:, None]
    split = split_examples(dataset.labels, dataset.groups, 0.2, 0.2, seed=7)
    return (x[split.train], codes[split.train]), (x[split.validation], codes[split.validation])


def test_augmentation_is_seeded_and_leaves_the_stored_features_alone(log_mels):
    batch = log_mels[0][0][:8]
    kept = batch.copy()
    first = Augment()(batch, np.random.default_rng(5))
    # Never in place: the training features stay what serving computes.
    np.testing.assert_array_equal(batch, kept)
    np.testing.assert_array_equal(first, Augment()(batch, np.random.default_rng(5)))
    assert not np.array_equal(first, Augment()(batch, np.random.default_rng(6)))
    assert first.shape == batch.shape and first.dtype == np.float32


def test_spec_augment_masks_whole_mel_bands_and_frame_spans():
    batch = np.ones((16, 1, 40, 49), np.float32)
    only_masks = Augment(shift=0.0, gain=0.0, noise=0.0, masks=2, mask_width=0.3)
    masked = only_masks(batch, np.random.default_rng(0))[:, 0]
    zero = masked == 0.0
    assert zero.any() and np.all(masked[~zero] == 1.0)
    for clip in zero:
        bands, spans = clip.all(axis=1), clip.all(axis=0)
        np.testing.assert_array_equal(clip, bands[:, None] | spans[None, :])


def test_the_cnn_is_scored_on_clean_validation_clips_with_its_best_epoch(log_mels):
    """Augmentation, mixup, label smoothing and dropout are training only: the exported
    model scores the validation clips exactly as the early-stopping history recorded."""
    train_set, (x, y) = log_mels
    fitted = fit_cnn(train_set, (x, y), n_classes=int(y.max()) + 1, seed=3, threads=1,
                     recipe=recipe(AudioConfig(epochs=4, patience=4, batch_size=8, width=8,
                                               mixup=0.4, label_smoothing=0.1,
                                               schedule="onecycle")))
    best = fitted.history[fitted.epochs - 1]
    # The best epoch's (a later one counts only if it improves by more than 1e-4).
    assert best["validation_loss"] <= min(r["validation_loss"] for r in fitted.history) + 1e-4
    probabilities, _ = OnnxModel(fitted.onnx).run(x)
    assert float(np.mean(probabilities.argmax(axis=1) == y)) == pytest.approx(
        best["validation_accuracy"])
    loss = -np.mean(np.log(probabilities[np.arange(len(y)), y]))
    assert loss == pytest.approx(best["validation_loss"], rel=1e-4)


@pytest.mark.parametrize("change", [{"mixup": 0.4}, {"label_smoothing": 0.2},
                                    {"schedule": "cosine"}, {"schedule": "onecycle"},
                                    {"masks": 0}, {"width": 12}])
def test_each_training_setting_changes_the_training(log_mels, change):
    train_set, validation = log_mels
    plain = recipe(AudioConfig(epochs=2, patience=2, batch_size=8, width=8, mixup=0.0,
                               label_smoothing=0.0, schedule="constant"))
    runs = [fit_cnn(train_set, validation, n_classes=int(train_set[1].max()) + 1, seed=3,
                    threads=1, recipe=r).history
            for r in (plain, replace(plain, **change))]
    assert runs[0] != runs[1]


def test_the_training_recipe_comes_from_the_config_and_a_bad_one_is_refused(
    tmp_path: Path, clips: Path
):
    config = write_config(tmp_path / "ok", clips / "manifest.csv", schedule="cosine",
                          mixup=0.4, width=8, label_smoothing=0.05, masks=1)
    assert recipe(config.audio) == Recipe(
        epochs=6, patience=3, batch_size=16, learning_rate=config.audio.learning_rate,
        weight_decay=config.audio.weight_decay, width=8, augment=True, masks=1, mixup=0.4,
        label_smoothing=0.05, schedule="cosine")
    with pytest.raises(ConfigError, match="schedule"):
        write_config(tmp_path / "bad", clips / "manifest.csv", schedule="sideways")


def test_same_seed_and_data_give_the_same_metrics_bit_for_bit(tmp_path: Path, clips: Path):
    runs = [
        train(write_config(tmp_path / name, clips / "manifest.csv", candidates=["cnn"],
                           epochs=2, quantize=False), promote=False)
        for name in ("one", "two")
    ]
    assert runs[0].metadata["metrics"] == runs[1].metadata["metrics"]
    assert runs[0].metadata["history"] == runs[1].metadata["history"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, clips: Path) -> tuple[Config, object]:
    """A champion for the API tests: the MFCC baseline alone trains in a second (the CNN of
    ``trained`` needs more clips and epochs than a test should spend to beat it)."""
    config = write_config(tmp_path_factory.mktemp("served"), clips / "manifest.csv",
                          candidates=["mfcc_logistic"])
    return config, train(config)


def test_the_baseline_chosen_must_beat_the_majority_class(served):
    _, result = served
    assert result.metadata["baseline"] == "majority class"
    assert result.metadata["metrics"]["accuracy"] > result.metadata["baseline_metrics"]["accuracy"]
    assert result.decision.promote, result.decision.reason


# --- serving -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(served, clips: Path):
    config, result = served
    folder = champion_dir(config)
    if not (folder / "metadata.json").exists():
        pytest.fail(f"no champion exported: {result.decision.reason}")
    with TestClient(create_app(config)) as test_client:
        yield test_client


def a_clip(clips: Path, word: str = "up") -> bytes:
    return next((clips / word).glob("*_0.wav")).read_bytes()


def test_predict_takes_a_multipart_upload_base64_json_and_raw_wav(client, clips: Path, served):
    data = a_clip(clips)
    answers = [
        client.post("/predict", files={"file": ("up.wav", data, "audio/wav")}),
        client.post("/predict", json={"audio_base64": base64.b64encode(data).decode()}),
        client.post("/predict", content=data, headers={"Content-Type": "audio/wav"}),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    bodies = [a.json() for a in answers]
    assert bodies[0]["label"] in WORDS.split(",")
    assert bodies[0]["probabilities"] == bodies[1]["probabilities"] == bodies[2]["probabilities"]
    assert sum(bodies[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert bodies[0]["duration_s"] == pytest.approx(1.2)
    # What serving answers is what training's classifier says about the same clip.
    classifier = load_classifier(champion_dir(served[0]))
    decoded = decode(data, served[0].audio)
    expected = classifier.predict([decoded.signal])[0][0]
    assert list(bodies[0]["probabilities"].values()) == expected.astype(float).tolist()


def test_the_batch_endpoint_answers_every_clip_in_order(client, clips: Path):
    words = ["yes", "down", "no"]
    files = [("files", (f"{w}.wav", a_clip(clips, w), "audio/wav")) for w in words]
    answer = client.post("/predict/batch", files=files)
    assert answer.status_code == 200
    multipart = answer.json()["predictions"]
    as_json = client.post("/predict/batch", json={"clips": [
        {"audio_base64": base64.b64encode(a_clip(clips, w)).decode()} for w in words]}).json()
    assert len(multipart) == 3
    assert [p["probabilities"] for p in multipart] == [
        p["probabilities"] for p in as_json["predictions"]]


@pytest.mark.parametrize(
    ("body", "status", "error", "words"),
    [
        (b"definitely not audio", 422, "not_audio", "not audio"),
        (b"", 422, "empty", "empty"),
        (wav(tone(11.0)), 422, "too_long", "audio.max_seconds"),
        (wav(tone(0.5, rate=6_000), rate=6_000), 422, "wrong_rate", "6000 Hz"),
        (wav(np.zeros((1600, 3), dtype=np.float32)), 422, "too_many_channels", "3 channels"),
    ],
)
def test_a_bad_upload_is_a_4xx_naming_the_problem(client, body, status, error, words):
    for answer in (
        client.post("/predict", files={"file": ("clip.wav", body, "audio/wav")}),
        client.post("/predict", json={"audio_base64": base64.b64encode(body).decode() or "AA=="}),
    ):
        if error == "empty" and answer.request.headers["content-type"] == "application/json":
            continue  # an empty file has no base64 (the schema asks for one character)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"] == error
        assert words in answer.json()["message"]


def test_requests_the_api_cannot_read_say_what_to_send(client, clips: Path):
    assert client.post("/predict", json={"audio_base64": "%%%"}).json()["error"] == "not_base64"
    plain = client.post("/predict", content=b"hello", headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415 and "multipart/form-data" in plain.json()["message"]
    missing = client.post("/predict", files={"upload": ("x.wav", a_clip(clips), "audio/wav")})
    assert missing.status_code == 422 and "-F file=@clip.wav" in missing.json()["message"]
    unknown = client.post("/predict", json={"audio": "AAAA"})
    assert unknown.status_code == 422
    bad_batch = client.post("/predict/batch", files=[
        ("files", ("good.wav", a_clip(clips), "audio/wav")),
        ("files", ("bad.wav", b"nope", "audio/wav")),
    ])
    assert bad_batch.status_code == 422 and "bad.wav" in bad_batch.json()["message"]


def test_metrics_export_the_audio_drift_signals(client, clips: Path):
    for word in WORDS.split(","):
        for path in sorted((clips / word).glob("*.wav"))[:3]:
            if "broken" not in path.name and "long" not in path.name:
                client.post("/predict", files={"file": (path.name, path.read_bytes())})
    text = client.get("/metrics").text
    for signal in ("duration_s", "rms_db", "silence_ratio", "spectral_centroid_hz",
                   "embedding_distance"):
        assert f'model_feature_drift{{feature="{signal}"' in text
    assert "model_embedding_centroid_shift " in text
    assert 'model_predictions_total{model_version="' in text
    meta = client.get("/metadata").json()
    assert meta["serving_variant"] in ("fp32", "int8") and meta["sample_rate"] == RATE


def test_a_real_server_classifies_an_uploaded_file(served, clips: Path):
    config, _ = served
    with live_server(create_app(config)) as url:
        answer = httpx.post(f"{url}/predict", files={"file": ("go.wav", a_clip(clips, "no"))})
        refused = httpx.post(f"{url}/predict", files={"file": ("x.wav", b"not audio at all")})
    assert answer.status_code == 200 and answer.json()["label"] in WORDS.split(",")
    assert refused.status_code == 422 and refused.json()["error"] == "not_audio"
