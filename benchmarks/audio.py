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
  as ``make serve`` runs it) next to ``mlflow
  models serve`` of the same model as a pyfunc (decode, features and the served ONNX graph in
  its ``predict``), both sent the clip as base64 JSON, sequential requests from one client
  for the same seconds, in alternating rounds so a shared machine's load falls on both.

Usage (from the repo root, with the dev venv; needs espeak-ng and sox):

    PYTHONPATH=runtime/src python benchmarks/audio.py              # 960 clips, ~10-20 min
    PYTHONPATH=runtime/src python benchmarks/audio.py --voices 12 --takes 2 --epochs 10

Results: benchmarks/results/audio.json (and a Markdown table on stdout).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


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
    parser.add_argument("--seconds", type=float, default=5.0, help="per round and server")
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
                                         args.seconds), indent=1))  # the champion's
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
        compare_serving(config, folder, wav, work, args.seconds)
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


def compare_serving(config, folder: Path, wav: bytes, work: Path, seconds: float) -> dict:
    """Requests per second of /predict (the service) and /invocations (mlflow models serve)."""
    import base64
    import os
    import socket

    import httpx
    import mlflow.pyfunc

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    pyfunc_type = type("AudioPyfunc", (mlflow.pyfunc.PythonModel,), dict(AudioPyfunc.__dict__))
    model_dir = work / "pyfunc"
    mlflow.pyfunc.save_model(str(model_dir), python_model=pyfunc_type(),
                             artifacts={"bundle": str(folder)},
                             pip_requirements=["mlflow", "onnxruntime", "soundfile"])
    ours_port, theirs_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "runtime" / "src"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    # Each server in its own process, as `make serve` and `mlflow models serve` run: the
    # service through serving.run (uvicorn, one worker, its configured loop and HTTP parser).
    service = subprocess.Popen(
        [sys.executable, "-c", "import sys; from mlgen_runtime.config import load_config; "
         "from mlgen_runtime.serving import run; "
         "run(load_config(sys.argv[1]), port=int(sys.argv[2]))", str(config.root),
         str(ours_port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    mlflow_server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model_dir),
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(theirs_port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    text = base64.b64encode(wav).decode()
    targets = {
        "service": (f"http://127.0.0.1:{ours_port}/predict", {"audio_base64": text}),
        "mlflow": (f"http://127.0.0.1:{theirs_port}/invocations",
                   {"dataframe_records": [{"audio_base64": text}]}),
    }
    try:
        with httpx.Client(timeout=30) as client:
            deadline = time.monotonic() + 120
            for url, body in targets.values():
                while True:
                    try:
                        if client.post(url, json=body).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{url} did not answer 200")
                    time.sleep(0.5)
            counts = {name: 0 for name in targets}
            spent = {name: 0.0 for name in targets}
            for _ in range(3):
                for name, (url, body) in targets.items():
                    started = time.perf_counter()
                    while time.perf_counter() - started < seconds:
                        assert client.post(url, json=body).status_code == 200
                        counts[name] += 1
                    spent[name] += time.perf_counter() - started
    finally:
        for process in (service, mlflow_server):
            os.killpg(process.pid, 15)
            process.wait(timeout=30)
    rates = {name: counts[name] / spent[name] for name in targets}
    return {"requests_per_second": rates, "ratio": rates["service"] / rates["mlflow"]}


if __name__ == "__main__":
    raise SystemExit(main())
