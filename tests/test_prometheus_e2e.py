"""A real Prometheus server scrapes a rendered, trained service: what it sees is what ops get.

The service is rendered with the default answers (breast cancer sample, binary), trained, and
served by uvicorn; Prometheus (the Debian package's binary) scrapes it every second. Normal
traffic, then traffic with two numeric features shifted far out of their training range,
then ground-truth feedback; Prometheus' HTTP API must show request rates, a finite latency
quantile, drift alerts on exactly the shifted features, and the live accuracy.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from support import Venv, call, free_port, render, running_server, wait_until_up

pytestmark = pytest.mark.e2e

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PACKAGE = "monitored_service"
SHIFTED = ("mean_texture", "worst_smoothness")
# Rows per traffic phase: the whole online drift window, so the shifted phase replaces it.
WINDOW = 300
# Bounds a hang (a scrape every second normally shows new values within 2-3 s); not a timing
# assertion: the checks below poll until the condition holds or this much time has passed.
SETTLE_SECONDS = 30


def _prometheus_or_skip() -> str:
    if Path(PROMETHEUS).is_file():
        return PROMETHEUS
    if os.environ.get("CI"):
        pytest.fail(f"{PROMETHEUS} is missing in CI: .ci/run installs the Debian package "
                    "`prometheus`; check /tmp/mlgen-ci-apt.log.")
    pytest.skip("Prometheus is not installed (apt-get install prometheus); CI installs it.")


@contextmanager
def prometheus_scraping(target: str, folder: Path) -> Iterator[str]:
    """A Prometheus server on a free local port scraping ``target`` (host:port) every second."""
    folder.mkdir(parents=True)
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: service\n    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    port = free_port()
    log = folder / "prometheus.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [_prometheus_or_skip(), f"--config.file={config}",
             f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, f"{url}/-/ready", log, SETTLE_SECONDS, "prometheus")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def query(prometheus: str, expr: str) -> dict[str, float]:
    """An instant query's result: one value per series, keyed by its labels as text."""
    status, body = call(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200 and body["status"] == "success", f"{expr}: {body}"
    return {
        json.dumps(item["metric"], sort_keys=True): float(item["value"][1])
        for item in body["data"]["result"]
    }


def settle(prometheus: str, expr: str, done: Callable[[dict[str, float]], bool]) -> dict:
    """Poll ``expr`` until ``done(result)`` (new scrapes arrive every second); the last result."""
    deadline = time.monotonic() + SETTLE_SECONDS
    result = query(prometheus, expr)
    while not done(result) and time.monotonic() < deadline:
        time.sleep(0.5)
        result = query(prometheus, expr)
    return result


def by_feature(result: dict[str, float]) -> dict[str, float]:
    return {json.loads(labels)["feature"]: value for labels, value in result.items()}


@pytest.fixture(scope="module")
def service(service_venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _prometheus_or_skip()  # before the render and the training it would waste
    root = render(tmp_path_factory.mktemp("monitored") / "svc",
                  {"project_name": "monitored-service", "package_name": PACKAGE})
    # A drift window of one traffic phase, so the shifted phase fills it completely.
    (root / "configs" / "local.yaml").write_text(f"drift:\n  window: {WINDOW}\n")
    service_venv.train_service(root, PACKAGE)
    return root


def test_prometheus_sees_traffic_latency_drift_and_live_accuracy(
    service: Path, service_venv: Venv, tmp_path: Path
) -> None:
    metadata = json.loads((service / "artifacts" / "champion" / "metadata.json").read_text())
    features = [feature["name"] for feature in metadata["features"]]
    assert set(SHIFTED) <= set(features)
    data = pd.read_csv(service / "data" / "sample.csv")
    rows = data.sample(n=WINDOW, replace=True, random_state=0).reset_index(drop=True)
    records = json.loads(rows[features].to_json(orient="records"))
    spans = {name: metadata_range(metadata, name) for name in SHIFTED}

    with running_server(service_venv, service, PACKAGE) as url, \
            prometheus_scraping(url.removeprefix("http://"), tmp_path / "prometheus") as prom:
        # The service issues every prediction's id (a client's comes back as
        # X-Client-Request-ID); the feedback below names the service's.
        ids = []
        for index, record in enumerate(records):
            status, answer = call(f"{url}/predict", record, {"X-Request-ID": f"normal-{index}"})
            assert status == 200
            ids.append(answer["request_id"])
        settle(prom, "model_drift_window_rows", lambda r: list(r.values()) == [WINDOW])
        normal_drift = by_feature(query(prom, "model_feature_drift"))
        normal_alerts = by_feature(query(prom, "model_feature_drift_alert"))
        assert set(normal_alerts) == set(features)
        assert not any(normal_alerts.values()), f"drift flagged on normal traffic: {normal_alerts}"

        for record in records:
            # Two spans of the training range above its maximum: a unit change, say.
            shifted = {**record, **{n: record[n] + 2 * spans[n] for n in SHIFTED}}
            assert call(f"{url}/predict", shifted)[0] == 200
        alerts = by_feature(settle(
            prom, "model_feature_drift_alert",
            lambda r: {f for f, v in by_feature(r).items() if v == 1} >= set(SHIFTED),
        ))
        shifted_drift = by_feature(query(prom, "model_feature_drift"))

        for index, truth in enumerate(rows["target"].tolist()):
            status, _ = call(f"{url}/feedback", {"request_id": ids[index], "label": truth})
            assert status == 200
        live = settle(prom, 'model_live_performance{metric="accuracy"}', bool)
        rate = query(prom, 'sum(rate(http_requests_total{route="/predict"}[1m]))')
        p90 = query(prom, "histogram_quantile(0.9, sum by (le) "
                          '(rate(http_request_duration_seconds_bucket{route="/predict"}[1m])))')
        up = query(prom, "up")

    assert list(up.values()) == [1.0]
    assert {f for f, v in alerts.items() if v == 1} == set(SHIFTED), alerts
    for name in features:
        if name in SHIFTED:
            assert shifted_drift[name] > max(0.5, 10 * normal_drift[name])
        else:
            # Both phases sent the same rows: every other feature's window is unchanged.
            assert shifted_drift[name] == pytest.approx(normal_drift[name])
    assert len(rate) == 1 and next(iter(rate.values())) > 0
    latency = next(iter(p90.values()))
    assert math.isfinite(latency) and latency > 0
    (accuracy,) = live.values()
    # The champion's accuracy on rows it partly trained on: far better than chance.
    assert 0.8 <= accuracy <= 1.0


def metadata_range(metadata: dict, name: str) -> float:
    feature = next(f for f in metadata["features"] if f["name"] == name)
    return feature["max"] - feature["min"]
