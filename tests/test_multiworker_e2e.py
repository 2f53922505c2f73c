"""Feedback under `serve --workers 2`: every outcome joins its prediction, whichever worker
answered it, and the live performance metrics count every outcome of every worker.

A rendered, trained service (default answers: breast cancer sample, binary) is served by
gunicorn with two uvicorn workers on 127.0.0.1. Predictions and then their outcomes are sent
concurrently, each on a new connection, so both workers answer both kinds of request; the
workers' own Prometheus files show that they did.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support import Venv, render, running_server

pytestmark = pytest.mark.e2e

PACKAGE = "multiworker_service"
ROWS = 400
CLIENTS = 8
# Run in the service's venv: per worker process (one Prometheus file each), the predictions
# it served and the outcomes it joined.
PER_WORKER = """
import json, shutil, sys, tempfile
from pathlib import Path
from prometheus_client import CollectorRegistry, multiprocess
result = {}
for file in Path(sys.argv[1]).glob("counter_*.db"):
    with tempfile.TemporaryDirectory() as alone:
        shutil.copy(file, alone)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=alone)
        samples = [s for metric in registry.collect() for s in metric.samples]
    result[file.stem.split("_", 1)[1]] = {
        "ready": sum(
            s.value for s in samples
            if s.name == "http_requests_total" and s.labels.get("route") == "/ready"
            and s.labels.get("status") == "200"
        ),
        "predictions": sum(s.value for s in samples if s.name == "model_predictions_total"),
        "joined": sum(
            s.value for s in samples
            if s.name == "model_feedback_total" and s.labels.get("result") == "joined"
        ),
    }
print(json.dumps(result))
"""


def call(url: str, body: Any = None) -> tuple[int, Any]:
    """One request on a new connection (so the workers share the load)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    try:
        return status, json.loads(raw)
    except json.JSONDecodeError:
        return status, raw.decode()


def sample(scrape: str, name: str, labels: str = "") -> float | None:
    """The value of ``name{labels}`` in a Prometheus text scrape (labels as written there)."""
    selector = re.escape(f"{name}{{{labels}}}" if labels else name)
    found = re.search(rf"^{selector} (\S+)$", scrape, flags=re.M)
    return float(found.group(1)) if found else None


@pytest.fixture(scope="module")
def service(service_venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = render(tmp_path_factory.mktemp("multiworker") / "svc",
                  {"project_name": "multiworker-service", "package_name": PACKAGE})
    service_venv.train_service(root, PACKAGE)
    return root


def test_feedback_joins_across_two_workers_and_the_live_metrics_count_all_of_it(
    service: Path, service_venv: Venv, tmp_path: Path
) -> None:
    metadata = json.loads((service / "artifacts" / "champion" / "metadata.json").read_text())
    features = [feature["name"] for feature in metadata["features"]]
    data = pd.read_csv(service / "data" / "sample.csv")
    rows = data.sample(n=ROWS, replace=len(data) < ROWS, random_state=0).reset_index(drop=True)
    records = json.loads(rows[features].to_json(orient="records"))
    truths = rows["target"].tolist()
    metrics_dir = tmp_path / "prometheus"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}

    def workers() -> dict[str, dict[str, float]]:
        return json.loads(service_venv.run(
            str(service_venv.python), "-c", PER_WORKER, str(metrics_dir), cwd=service
        ).stdout)

    with running_server(service_venv, service, PACKAGE, env=env, workers=2) as url, \
            ThreadPoolExecutor(CLIENTS) as pool:
        # The server is up when one worker is ready; the other may still be loading the model,
        # and would then serve none of the predictions. Wait until both have answered /ready.
        deadline = time.monotonic() + 90
        while sum(w["ready"] > 0 for w in workers().values()) < 2:
            assert time.monotonic() < deadline, f"both workers never got ready: {workers()}"
            list(pool.map(lambda _: call(f"{url}/ready"), range(4 * CLIENTS)))
        answers = list(pool.map(lambda i: call(f"{url}/predict", records[i]), range(ROWS)))

        def feedback(i: int) -> tuple[int, Any]:
            # The id the server gave the prediction (a client cannot choose it).
            request_id = answers[i][1]["request_id"]
            return call(f"{url}/feedback", {"request_id": request_id, "label": int(truths[i])})

        receipts = list(pool.map(feedback, range(ROWS)))
        repeated = list(pool.map(feedback, range(20)))
        unknown = call(f"{url}/feedback", {"request_id": "never-made", "label": 0})
        # Any worker answers a scrape; each must report the outcomes of both.
        scrapes = [call(f"{url}/metrics")[1] for _ in range(6)]
        per_worker = workers()

    assert [status for status, _ in answers] == [200] * ROWS, answers[:3]
    assert [status for status, _ in receipts] == [200] * ROWS, [
        body for status, body in receipts if status != 200
    ][:3]
    predicted = [body["prediction"] for _, body in answers]
    assert [body["prediction"] for _, body in receipts] == predicted
    assert {status for status, _ in repeated} == {409}
    assert unknown[0] == 404

    # Both workers served predictions and joined outcomes: many outcomes were joined by the
    # worker that did not make the prediction.
    assert len(per_worker) == 2, per_worker
    assert all(w["predictions"] > 0 and w["joined"] > 0 for w in per_worker.values()), per_worker
    assert sum(w["joined"] for w in per_worker.values()) == ROWS

    accuracy = sum(str(p) == str(t) for p, t in zip(predicted, truths, strict=True)) / ROWS
    for scrape in scrapes:
        assert sample(scrape, "model_feedback_total", 'result="joined"') == ROWS
        assert sample(scrape, "model_live_performance_rows") == ROWS
        assert sample(scrape, "model_live_performance", 'metric="accuracy"') == pytest.approx(
            accuracy
        )
        assert sample(scrape, "model_live_performance", 'metric="roc_auc"') is not None
