"""The audio kind against its own baseline, and its three ways of running the CNN.

Synthesised spoken command words (examples/spoken-commands/make_clips.py: 10 words, espeak-ng
voices with variants, speeds and pitches, sox reverb and noise), voices held out: the test clips
are spoken by voices training never heard. One training run of the kind (train.py, as `make
train` runs it) gives:

* the CNN's test accuracy next to the MFCC + logistic regression baseline's (issue 16's goal:
  the CNN at least 10 points above it), both with bootstrap intervals;
* fp32 eager (PyTorch) vs ONNX fp32 vs ONNX int8 (static QDQ): test accuracy and the median
  latency of one 1 s clip, the model alone and end to end (decode a WAV, log-mel, model);
* ``/predict`` of one 1.2 s WAV over HTTP, the service (its own process, uvicorn, one worker,
  as ``make serve`` runs it) next to ``mlflow models serve`` of the same model as a pyfunc
  (decode, features and the served ONNX graph in its ``predict``), both sent the clip as base64
  JSON; the service also with the clip as a multipart upload and as a raw ``audio/wav`` body,
  and its ``/health`` (the framework's floor). Sequential requests from one client (the raw
  HTTP/1.1 load generator of ``benchmarks/serving.py``, in its own process) for the same
  seconds, in alternating turns so a shared machine's load falls on every target; each server's
  CPU time per request is read from /proc, which a loaded machine distorts less than its rate;
* the in-process CPU cost of each step of the service's ``/predict`` (base64, decoding, the
  spectrum, the features, the model, the drift monitor; ``time.process_time`` over 500 calls).

Usage (from the repo root, with the dev venv; needs espeak-ng and sox):

    PYTHONPATH=runtime/src python benchmarks/audio.py              # 960 clips, ~10-20 min
    PYTHONPATH=runtime/src python benchmarks/audio.py --voices 12 --takes 2 --epochs 10
    PYTHONPATH=runtime/src python benchmarks/audio.py --serving-only SERVICE   # its champion

Results: benchmarks/results/audio.json (and a Markdown table on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import serving as load_generator  # noqa: E402  (benchmarks/serving.py: the same client)

ROOT = HERE.parent
RUNTIME_SRC = ROOT / "runtime" / "src"


def median_ms(call, repeats: int = 200) -> float:
    for _ in range(10):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", type=int, default=32)
    parser.add_argument("--takes", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--clips", type=Path, help="reuse a folder make_clips.py wrote")
    parser.add_argument("--seconds", type=float, default=5.0, help="per turn of each target")
    parser.add_argument("--rounds", type=int, default=3, help="turns each target takes")
    parser.add_argument("--serving-only", type=Path, metavar="SERVICE",
                        help="a service folder this benchmark trained: measure its serving only")
    args = parser.parse_args()

    import torch
    from mlgen_runtime.config import load_config
    from mlgen_runtime.kinds.audio.classifier import load_classifier
    from mlgen_runtime.kinds.audio.clips import decode, read_dataset
    from mlgen_runtime.kinds.audio.train import train
    from mlgen_runtime.kinds.labelled import split_examples
    from mlgen_runtime.registry import champion_dir

    if args.serving_only:
        config = load_config(args.serving_only)
        manifest = Path(config.data.path)
        wav = (manifest.parent / next(iter(manifest.read_text().splitlines()[1:])).split(",")[0]
               ).read_bytes()
        work = Path(tempfile.mkdtemp(prefix="mlgen-audio-serving-"))
        print(json.dumps(compare_serving(config, champion_dir(config), wav, work,
                                         args.seconds, args.rounds), indent=1))  # the champion's
        return 0
    work = Path(tempfile.mkdtemp(prefix="mlgen-audio-bench-"))
    clips = args.clips or work / "clips"
    if args.clips is None:
        subprocess.run([sys.executable, str(ROOT / "examples/spoken-commands/make_clips.py"),
                        "--out", str(clips), "--voices", str(args.voices),
                        "--takes", str(args.takes), "--seed", str(args.seed)], check=True)
    (work / "service" / "configs").mkdir(parents=True)
    (work / "service" / "configs" / "config.yaml").write_text(yaml.safe_dump({
        "project": {"name": "commands", "package": "commands"},
        "kind": "audio", "task": "audio_classification", "seed": args.seed,
        "data": {"path": str(clips / "manifest.csv")},
        "audio": {"epochs": args.epochs, "patience": 8, "threads": args.threads},
        "tracking": {"experiment": "commands", "registered_model": "commands"},
    }))
    config = load_config(work / "service")
    started = time.perf_counter()
    result = train(config, promote=True)
    seconds = time.perf_counter() - started
    meta = result.metadata
    print(f"trained in {seconds:.0f} s: {meta['model_family']} chosen, "
          f"{result.decision.reason}")

    # The same split as training (seeded), to score every variant on the test voices.
    audio = config.audio
    dataset = read_dataset(clips / "manifest.csv", audio)
    split = split_examples(dataset.labels, dataset.groups, audio.test_size,
                           audio.validation_size, config.seed)
    test_signals = [dataset.signals[i] for i in split.test]
    truth = dataset.labels[split.test]
    wav = Path(dataset.paths[split.test[0]]).read_bytes()
    rows = []
    folder = champion_dir(config)
    if not (folder / "metadata.json").exists():
        # Not promoted (it did not beat the baseline): measure the registered version's bundle.
        import mlflow

        folder = Path(mlflow.artifacts.download_artifacts(
            run_id=meta["run_id"], artifact_path="bundle", dst_path=str(work / "registered")))
    cnn = result.fitted["cnn"]
    for variant in ("fp32", "int8"):
        try:
            classifier = load_classifier(folder, variant)
        except Exception as exc:  # int8 absent when quantisation is off
            print(f"{variant}: {exc}")
            continue
        if classifier.metadata["model_family"] != "cnn":
            break
        probabilities, _ = classifier.predict(test_signals)
        accuracy = float(np.mean(np.asarray(classifier.classes)[probabilities.argmax(1)] == truth))
        x = classifier.features(test_signals[:1])
        rows.append({
            "variant": f"ONNX {variant}", "test_accuracy": accuracy,
            "model_ms": median_ms(lambda c=classifier, x=x: c.model.run(x)),
            "end_to_end_ms": median_ms(lambda c=classifier: c.predict(
                [decode(wav, audio).signal])),
        })
    if cnn.module is not None:
        classifier = load_classifier(folder, "fp32")
        module = cnn.module.eval()
        torch.set_num_threads(1)
        features = classifier.features(test_signals)
        with torch.no_grad():
            logits, _ = module(torch.from_numpy(features))
        accuracy = float(np.mean(np.asarray(classifier.classes)[logits.argmax(1).numpy()] == truth))
        one = torch.from_numpy(features[:1])

        def eager() -> None:
            with torch.no_grad():
                module(one)

        def eager_end_to_end() -> None:
            with torch.no_grad():
                module(torch.from_numpy(classifier.features([decode(wav, audio).signal])))

        rows.insert(0, {"variant": "PyTorch eager fp32", "test_accuracy": accuracy,
                        "model_ms": median_ms(eager), "end_to_end_ms": median_ms(eager_end_to_end)})
    serving = (
        compare_serving(config, folder, wav, work, args.seconds, args.rounds)
        if (champion_dir(config) / "metadata.json").exists()
        else {"skipped": "no champion to serve: the model did not pass the gate"}
    )
    metrics, baseline = meta["metrics"], meta["baseline_metrics"]
    report = {
        "serving": serving,
        "clips": meta["clips"], "classes": len(meta["classes"]),
        "voices": {part: len(v) for part, v in meta["groups"].items()},
        "chosen": meta["model_family"], "serving_variant": meta["serving_variant"],
        "validation_accuracy": meta["validation_accuracy"], "epochs": meta["epochs"],
        "test_accuracy": [metrics["accuracy"], metrics["accuracy_ci_low"],
                          metrics["accuracy_ci_high"]],
        "baseline_test_accuracy": [baseline["accuracy"], baseline["accuracy_ci_low"],
                                   baseline["accuracy_ci_high"]],
        "baseline": meta["baseline"], "training_seconds": seconds,
        "variants": rows, "quantisation_at_training": meta["quantisation"],
        "decision": result.decision.reason,
    }
    out = ROOT / "benchmarks" / "results" / "audio.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "variants"}, indent=1))
    print(json.dumps(serving, indent=1))
    print("| variant | test accuracy | model ms / 1 s clip | end to end ms |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['variant']} | {row['test_accuracy']:.4f} | {row['model_ms']:.3f} | "
              f"{row['end_to_end_ms']:.3f} |")
    return 0


class AudioPyfunc:
    """The served model as an MLflow pyfunc: base64 WAVs in, labels out (what a user would
    wrap by hand to serve it with `mlflow models serve`)."""

    def load_context(self, context):  # noqa: ANN001
        from mlgen_runtime.kinds.audio.classifier import load_classifier

        self.classifier = load_classifier(Path(context.artifacts["bundle"]))

    def predict(self, context, model_input, params=None):  # noqa: ANN001
        import base64

        from mlgen_runtime.config import AudioConfig
        from mlgen_runtime.kinds.audio.clips import decode

        limits = AudioConfig(sample_rate=self.classifier.front.sample_rate)
        signals = [decode(base64.b64decode(text), limits).signal
                   for text in model_input["audio_base64"]]
        probabilities, _ = self.classifier.predict(signals)
        return [self.classifier.classes[i] for i in probabilities.argmax(axis=1)]


def compare_serving(config, folder: Path, wav: bytes, work: Path, seconds: float,
                    rounds: int = 3) -> dict:
    """Requests per second and server CPU per request: /predict (the service, the clip sent
    as base64 JSON, as multipart and as a raw audio/wav body), its /health (the framework's
    floor), and /invocations (mlflow models serve, base64 JSON); with the in-process cost of
    each step of the service's /predict."""
    import base64

    import mlflow.pyfunc

    started_load = os.getloadavg()
    in_process = profile_predict(config, folder, wav)
    pyfunc_type = type("AudioPyfunc", (mlflow.pyfunc.PythonModel,), dict(AudioPyfunc.__dict__))
    model_dir = work / "pyfunc"
    mlflow.pyfunc.save_model(str(model_dir), python_model=pyfunc_type(),
                             artifacts={"bundle": str(folder)},
                             pip_requirements=["mlflow", "onnxruntime", "soundfile"])
    ours, theirs = load_generator.free_port(), load_generator.free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(RUNTIME_SRC),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # Each server in its own process, as `make serve` and `mlflow models serve` run: the
    # service through serving.run (uvicorn, one worker, its configured loop and HTTP parser).
    ours_cmd = [sys.executable, "-c", "import sys; from mlgen_runtime.config import load_config; "
                "from mlgen_runtime.serving import run; "
                "run(load_config(sys.argv[1]), port=int(sys.argv[2]))", str(config.root),
                str(ours)]
    theirs_cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model_dir),
                  "--env-manager", "local", "-h", load_generator.HOST, "-p", str(theirs)]
    text = base64.b64encode(wav).decode()
    boundary = "mlgen-audio-benchmark"
    multipart = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 'filename="clip.wav"\r\nContent-Type: audio/wav\r\n\r\n').encode() + wav + (
                     f"\r\n--{boundary}--\r\n".encode())
    targets = {
        "service": (ours, "/predict", json.dumps({"audio_base64": text}).encode(),
                    "application/json"),
        "mlflow": (theirs, "/invocations",
                   json.dumps({"dataframe_records": [{"audio_base64": text}]}).encode(),
                   "application/json"),
        "service multipart": (ours, "/predict", multipart,
                              f"multipart/form-data; boundary={boundary}"),
        "service audio/wav": (ours, "/predict", wav, "audio/wav"),
        "service /health": (ours, "/health", b"", ""),
    }
    requests = {name: (port, http_request(port, path, body, kind))
                for name, (port, path, body, kind) in targets.items()}
    with load_generator.server(ours_cmd, work, env, ours, "/ready") as ours_pid, \
            load_generator.server(theirs_cmd, work, env, theirs, "/ping") as theirs_pid:
        label = load_generator.http_json(ours, "/predict", {"audio_base64": text})["label"]
        answer = load_generator.http_json(theirs, "/invocations",
                                          {"dataframe_records": [{"audio_base64": text}]})
        pids = {ours: ours_pid, theirs: theirs_pid}
        parts: dict[str, list[dict]] = {name: [] for name in requests}
        cpu = dict.fromkeys(requests, 0.0)
        for _ in range(rounds):
            for name, (port, request) in requests.items():
                before = load_generator.group_cpu_seconds(pids[port])
                parts[name].append(load_generator.load(port, request, 1, 10**9, seconds))
                cpu[name] += load_generator.group_cpu_seconds(pids[port]) - before
    results = {name: load_generator.summary(runs) for name, runs in parts.items()}
    for name, row in results.items():
        row["server_cpu_ms_per_request"] = 1000 * cpu[name] / max(row["requests"], 1)
    rate = {name: row["per_second"] for name, row in results.items()}
    cpu_ms = {name: row["server_cpu_ms_per_request"] for name, row in results.items()}
    return {
        "same_label": answer["predictions"] == [label],
        "results": results,
        "ratio": rate["service"] / rate["mlflow"],
        "cpu_ratio": cpu_ms["mlflow"] / cpu_ms["service"],
        "in_process_ms": in_process,
        "seconds_per_turn": seconds,
        "rounds": rounds,
        "load_average": {"start": started_load, "end": os.getloadavg()},
    }


def http_request(port: int, path: str, body: bytes, content_type: str) -> bytes:
    """One HTTP/1.1 request: a GET without a body, else a POST of ``body``."""
    if not body:
        return load_generator.request_bytes(port, "GET", path)
    head = (f"POST {path} HTTP/1.1\r\nHost: {load_generator.HOST}:{port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def profile_predict(config, folder: Path, wav: bytes, calls: int = 500) -> dict[str, float]:
    """CPU milliseconds per call (``time.process_time`` over ``calls``) of each step of the
    service's /predict in process, and of the whole (decode + predict with drift monitoring
    and metrics)."""
    import base64

    from mlgen_runtime.kinds.audio.classifier import featurise, load_classifier
    from mlgen_runtime.kinds.audio.features import spectrum
    from mlgen_runtime.kinds.audio.serving import AudioMetrics, ServedAudio

    served = ServedAudio(load_classifier(folder), config, AudioMetrics(), "file")
    classifier = served.classifier
    text = base64.b64encode(wav).decode()
    decoded = served.decode(wav, "clip")
    clip = spectrum(decoded.signal, classifier.front)
    x = featurise([clip], classifier.input_kind)
    _, embeddings = classifier.model.run(x)
    steps = {
        "base64": lambda: base64.b64decode(text, validate=True),
        "decode": lambda: served.decode(wav, "clip"),
        "spectrum": lambda: spectrum(decoded.signal, classifier.front),
        "features": lambda: featurise([clip], classifier.input_kind),
        "model": lambda: classifier.model.run(x),
        "drift": lambda: served.monitor.observe([clip], embeddings),
        "decode_and_predict": lambda: served.predict([served.decode(wav, "clip")]),
    }
    timings = {}
    for name, step in steps.items():
        for _ in range(20):
            step()
        started = time.process_time()
        for _ in range(calls):
            step()
        timings[name] = 1000 * (time.process_time() - started) / calls
    return timings


if __name__ == "__main__":
    raise SystemExit(main())
