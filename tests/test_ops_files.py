"""The ops files of a rendered service hold together: Docker, compose, Prometheus, Grafana, k8s,
Makefile, CI and the README agree with each other, with the service's CLI and with the metric
contract in docs/internals.md.

The Prometheus checks need ``promtool`` (``apt-get install prometheus``); they skip without it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlgen_runtime.engine import WORKER_ENVIRON
from support import REPO, render

PENGUIN_FEATURES = [
    {"name": "bill_length_mm", "type": "numeric"},
    {"name": "island", "type": "categorical"},
    {"name": "sex", "type": "categorical"},
    {"name": "year", "type": "numeric"},
]
# A row of penguins.csv, as mlgen answers example_record from the data.
PENGUIN_ROW = {"bill_length_mm": 39.1, "island": "Torgersen", "sex": "male", "year": 2007}
CHAMPION = "artifacts/champion"
# Labels Prometheus attaches to every scraped series, whatever the service exports.
TARGET_LABELS = {"job", "instance"}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service rendered with the default answers (features inferred at training time)."""
    return render(tmp_path_factory.mktemp("ops") / "default-svc")


@pytest.fixture(scope="module")
def penguins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service whose features were given as answers."""
    answers = {
        "project_name": "Penguin Species",
        "task": "multiclass_classification",
        "target": "species",
        "features": PENGUIN_FEATURES,
        "example_record": PENGUIN_ROW,
    }
    return render(tmp_path_factory.mktemp("ops") / "penguins", answers)


def package_of(root: Path) -> str:
    return yaml.safe_load((root / ".copier-answers.yml").read_text())["package_name"]


# --- the metric contract -------------------------------------------------------------------


def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels) from the metric table in docs/internals.md."""
    text = (REPO / "docs" / "internals.md").read_text()
    table = text.split("### Prometheus metric names", 1)[1]
    metrics = {}
    for row in re.findall(r"^\| `(\w+)` \| (\w+)[^|]*\| ([^\n]*)\|$", table, flags=re.M):
        name, kind, labels = row
        # The labels cell names labels in backticks and may quote example values in parentheses.
        metrics[name] = (kind, set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", labels))))
    assert "http_requests_total" in metrics, "the metric table in docs/internals.md was not found"
    return metrics


def labels_allowed(series: str, metrics: dict[str, tuple[str, set[str]]]) -> set[str] | None:
    """The labels a series may carry, or None when it is not a documented series."""
    if series in metrics:
        return metrics[series][1] | TARGET_LABELS
    for suffix in HISTOGRAM_SERIES:
        base = series.removesuffix(suffix)
        if base != series and metrics.get(base, ("",))[0] == "histogram":
            return metrics[base][1] | TARGET_LABELS | ({"le"} if suffix == "_bucket" else set())
    return None


def promql_selectors(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """The series selectors of a PromQL expression (name, matcher labels) and its grouping
    labels. Enough PromQL for rules and dashboards: strings, ranges and grouping clauses are
    removed first, so a remaining name not followed by ``(`` is a series."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    grouping = {label.strip() for group in GROUPING.findall(expr) for label in group.split(",")}
    expr = GROUPING.sub(" ", expr)
    selectors = []
    pattern = r"(?<![\w.$])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?\s*(\()?"
    for name, matcher, call in re.findall(pattern, expr):
        if call or name.lower() in PROMQL_WORDS:
            continue
        selectors.append((name, set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matcher))))
    return selectors, grouping - {""}


def assert_documented(expr: str, where: str) -> None:
    metrics = documented_metrics()
    selectors, grouping = promql_selectors(expr)
    assert selectors, f"{where}: no series found in {expr!r}"
    usable: set[str] = set()
    for name, labels in selectors:
        allowed = labels_allowed(name, metrics)
        assert allowed is not None, f"{where}: {name} is not a metric of docs/internals.md"
        assert labels <= allowed, f"{where}: {name} has no label(s) {labels - allowed}"
        usable |= allowed
    assert grouping <= usable, f"{where}: grouping by unknown label(s) {grouping - usable}"


def dashboard_exprs(root: Path) -> list[tuple[str, str]]:
    dashboard = json.loads((root / "deploy/grafana/dashboards/service.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def alert_rules(root: Path) -> list[dict[str, Any]]:
    rules = yaml.safe_load((root / "deploy/prometheus/alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_the_metric_contract_is_parsed_from_the_internals_doc() -> None:
    metrics = documented_metrics()
    assert metrics["http_request_duration_seconds"] == ("histogram", {"route", "method"})
    assert metrics["model_feature_drift"] == ("gauge", {"feature", "measure"})
    assert metrics["model_drift_window_rows"] == ("gauge", set())
    assert promql_selectors('sum by (le) (rate(x_bucket{a="}", b=~"5.."}[5m]))') == (
        [("x_bucket", {"a", "b"})],
        {"le"},
    )


def test_alert_rules_use_only_documented_metrics_and_labels(service: Path) -> None:
    rules = alert_rules(service)
    assert {rule["alert"] for rule in rules} == {
        "ModelFeatureDrift",
        "ModelHighErrorRate",
        "ModelHighLatencyP99",
        "ModelServingFallback",
        "ModelNoTraffic",
        "ModelLivePerformanceDegraded",
        "ModelChallengerFailing",
        "ModelChallengerWorse",
        "ModelItemPopularityDrift",
        "ModelNewUsersHigh",
        "ModelNewItemsHigh",
        "ModelCatalogueCoverageLow",
        "ModelForecastResidualDrift",
        "ModelSeasonalityChanged",
    }
    for rule in rules:
        assert_documented(rule["expr"], f"alert {rule['alert']}")
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]


def test_alert_unit_tests_feed_documented_series(service: Path) -> None:
    tests = yaml.safe_load((service / "deploy/prometheus/alerts.test.yml").read_text())
    tested = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]}
    assert tested == {rule["alert"] for rule in alert_rules(service)}, "every alert has a test"
    for test in tests["tests"]:
        for series in test["input_series"]:
            assert_documented(series["series"], f"alert test {test['name']!r}")


def test_dashboard_uses_documented_metrics_and_the_provisioned_datasource(service: Path) -> None:
    exprs = dashboard_exprs(service)
    for title, expr in exprs:
        assert_documented(expr, f"panel {title!r}")
    used = {name for _, expr in exprs for name, _ in promql_selectors(expr)[0]}
    # The dashboard shows what the brief promised: traffic, errors, latency, outcomes, scores,
    # drift, the model, and each rollout variant's traffic, latency and live performance; for a
    # recommender, its strategies, item-popularity drift, cold starts and coverage.
    assert {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "model_predictions_total",
        "model_prediction_score_bucket",
        "model_feature_drift",
        "model_info",
        "model_fallback_active",
        "model_variant_predictions_total",
        "model_variant_prediction_duration_seconds_bucket",
        "model_variant_live_performance",
        "model_challenger_active",
        "model_recommendations_total",
        "model_item_popularity_drift",
        "model_new_user_rate",
        "model_new_item_rate",
        "model_catalogue_coverage",
        "model_catalogue_coverage_expected",
    } <= used
    datasources = yaml.safe_load(
        (service / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    dashboard = json.loads((service / "deploy/grafana/dashboards/service.json").read_text())
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"]}
    assert uids == {source["uid"] for source in datasources}


@needs_promtool
def test_promtool_accepts_the_config_and_the_alert_rules(service: Path) -> None:
    folder = service / "deploy/prometheus"
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        result = subprocess.run([PROMTOOL, *args], cwd=folder, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alerts_fire_exactly_as_their_unit_tests_say(service: Path) -> None:
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts.test.yml"],
        cwd=service / "deploy/prometheus",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_every_dashboard_query_is_valid_promql(service: Path, tmp_path: Path) -> None:
    # promtool parses recording rules: each panel query becomes one, with Grafana's
    # interval variable replaced by a literal duration.
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, (_, expr) in enumerate(dashboard_exprs(service))
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- YAML, compose, Docker ------------------------------------------------------------------


def test_every_yaml_and_json_file_parses(service: Path) -> None:
    files = [p for p in service.rglob("*") if p.suffix in {".yml", ".yaml", ".json"}]
    assert len(files) >= 12
    for path in files:
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            assert list(yaml.safe_load_all(path.read_text())), f"{path} is empty"


def dockerfile(root: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (root / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        parts = path.split("/")
        if any(fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)):
            ignored = not negated
    return ignored


def test_dockerfile_builds_in_stages_and_runs_as_a_non_root_user(service: Path) -> None:
    instructions = dockerfile(service)
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) >= 2 and re.search(r"\bAS builder\b", stages[0], re.I)
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    health = [args for op, args in final if op == "HEALTHCHECK"]
    assert health and "/health" in health[0] and not re.search(r"\b(curl|wget)\b", health[0])
    assert [args for op, args in final if op == "EXPOSE"] == ["8000"]
    command = json.loads([args for op, args in final if op == "CMD"][-1])
    assert command[:4] == ["python", "-m", package_of(service), "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"


def test_docker_copies_only_files_the_build_context_sends(service: Path) -> None:
    patterns = [
        line.strip()
        for line in (service / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for op, args in dockerfile(service):
        words = shlex.split(args)
        if op in {"COPY", "ADD"} and not any(w.startswith("--from") for w in words):
            sources += [w for w in words if not w.startswith("--")][:-1]
    assert {"pyproject.toml", "src", "configs", "artifacts"} <= set(sources)
    for bundle in ("champion", "previous", "baseline"):
        kept = f"artifacts/{bundle}/metadata.json"
        assert not dockerignored(kept, patterns), f".dockerignore drops {kept}"
    for source in sources:
        if source == "artifacts":
            continue  # written by `make train`; make docker-build refuses to run without it
        assert not dockerignored(source, patterns), f".dockerignore drops {source}"
        assert (service / source).exists(), f"COPY {source}: not in the rendered service"
    for path in (service / "src").rglob("*.py"):
        assert not dockerignored(path.relative_to(service).as_posix(), patterns)
    for secret in (".env", "mlflow.db", "data/sample.csv", "mlartifacts/1/model.pkl"):
        assert dockerignored(secret, patterns), f"{secret} would be sent to the Docker daemon"


def test_docker_build_refuses_to_run_before_training(service: Path) -> None:
    result = subprocess.run(["make", "docker-build"], cwd=service, capture_output=True, text=True)
    assert result.returncode != 0
    assert f"No champion bundle in {CHAMPION}: run 'make train' first." in result.stderr


def compose(root: Path) -> dict[str, Any]:
    return yaml.safe_load((root / "docker-compose.yml").read_text())


def test_compose_services_mount_files_that_exist(service: Path) -> None:
    spec = compose(service)
    services = spec["services"]
    assert set(services) == {
        "api", "mlflow", "postgres", "prometheus", "grafana", "dask-scheduler", "dask-worker"
    }
    assert (service / services["api"]["build"] / "Dockerfile").is_file()
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (service / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in spec["volumes"], f"{name} uses undeclared volume {source}"
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
        for dependency in svc.get("depends_on", []):
            assert dependency in services


def container_path(root: Path, service_name: str, host_path: str) -> Path:
    """The container path at which ``host_path`` (relative to root) is mounted."""
    for volume in compose(root)["services"][service_name]["volumes"]:
        source, target = volume.split(":")[:2]
        if (host_path + "/").startswith(source.removeprefix("./").rstrip("/") + "/"):
            return Path(target) / Path(host_path).relative_to(source.removeprefix("./"))
    raise AssertionError(f"{host_path} is not mounted into {service_name}")


def test_compose_wires_prometheus_and_grafana_to_the_api(service: Path) -> None:
    services = compose(service)["services"]
    api_port = services["api"]["ports"][0].rsplit(":", 1)[1]
    scrape = yaml.safe_load((service / "deploy/prometheus/prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == [f"api:{api_port}"]
    assert scrape["scrape_configs"][0]["job_name"] == package_of(service)
    config_arg = next(a for a in services["prometheus"]["command"] if "--config.file" in a)
    assert config_arg.split("=", 1)[1] == str(
        container_path(service, "prometheus", "deploy/prometheus/prometheus.yml")
    )
    source = yaml.safe_load(
        (service / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert source["url"] == "http://prometheus:9090"
    assert str(container_path(service, "grafana", "deploy/grafana/provisioning")) == (
        "/etc/grafana/provisioning"
    )
    provider = yaml.safe_load(
        (service / "deploy/grafana/provisioning/dashboards/dashboards.yml").read_text()
    )["providers"][0]
    dashboards = container_path(service, "grafana", "deploy/grafana/dashboards")
    assert provider["options"]["path"] == str(dashboards)
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == str(dashboards / "service.json")
    # MLflow answers only Host headers it was told about: the API reaches it as mlflow:5000.
    assert services["api"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert any(
        "mlflow:5000" in arg
        for arg in services["mlflow"]["command"]
        if arg.startswith("--allowed-hosts")
    )


def test_compose_tracks_to_postgresql_and_runs_a_dask_cluster_on_demand(service: Path) -> None:
    services = compose(service)["services"]
    command = services["mlflow"]["command"]
    backend = next(a for a in command if a.startswith("--backend-store-uri="))
    # The driver SQLAlchemy would not find for a plain postgresql:// URL is named.
    assert backend.split("=", 1)[1].startswith("postgresql+psycopg2://")
    assert "@postgres:5432/" in backend and "--artifacts-destination=/mlflow/artifacts" in command
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # MLflow runs from the service's image: the same MLflow as training, with psycopg2.
    assert services["mlflow"]["image"] == services["api"]["image"]
    init = (service / "deploy/postgres/init.sql").read_text()
    assert "CREATE DATABASE optuna" in init
    # Every API container keeps feedback and the rollout log in one database of that server.
    assert "CREATE DATABASE service_logs" in init
    api = services["api"]["environment"]
    for variable in ("MLSERVICE_FEEDBACK_DB", "MLSERVICE_ROLLOUT_LOG"):
        assert api[variable].startswith("postgresql+psycopg2://")
        assert api[variable].endswith("@postgres:5432/service_logs")
    for name in ("dask-scheduler", "dask-worker"):
        assert services[name]["image"] == services["api"]["image"]
        assert services[name]["profiles"] == ["batch"]
    assert "tcp://dask-scheduler:8786" in services["dask-worker"]["command"]
    # The workers start as the tests' and benchmarks' workers do (engine.WORKER_ENVIRON).
    assert WORKER_ENVIRON.items() <= services["dask-worker"]["environment"].items()


# --- Kubernetes -----------------------------------------------------------------------------


def k8s(root: Path) -> dict[str, dict[str, Any]]:
    """The manifests listed by kustomization.yaml, by kind."""
    folder = root / "deploy/k8s"
    listed = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    documents = [yaml.safe_load((folder / name).read_text()) for name in listed]
    return {doc["kind"]: doc for doc in documents}


def test_k8s_deployment_probes_ports_and_security(service: Path) -> None:
    manifests = k8s(service)
    assert set(manifests) == {
        "Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget"
    }
    deployment = manifests["Deployment"]["spec"]
    pod = deployment["template"]
    assert deployment["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    exposed = [args for op, args in dockerfile(service) if op == "EXPOSE"]
    assert list(ports.values()) == [int(exposed[0])]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == exposed[0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    security = pod["spec"]["securityContext"]
    docker_user = [args for op, args in dockerfile(service) if op == "USER"][-1]
    assert security["runAsNonRoot"] is True
    assert str(security["runAsUser"]) == docker_user.split(":")[0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    volumes = {volume["name"] for volume in pod["spec"]["volumes"]}
    assert {mount["name"] for mount in container["volumeMounts"]} <= volumes
    # Pods share feedback and the rollout log when a secret names the database; without it,
    # each pod keeps its own (the secret is optional).
    shared = {
        var["name"]: var["valueFrom"]["secretKeyRef"]
        for var in container["env"]
        if var["name"] in ("MLSERVICE_FEEDBACK_DB", "MLSERVICE_ROLLOUT_LOG")
    }
    assert len(shared) == 2 and all(ref["optional"] is True for ref in shared.values())
    service_spec = manifests["Service"]["spec"]
    assert service_spec["selector"].items() <= pod["metadata"]["labels"].items()
    assert service_spec["ports"][0]["targetPort"] in ports


def test_k8s_autoscaler_and_disruption_budget_target_the_api(service: Path) -> None:
    manifests = k8s(service)
    deployment = manifests["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = manifests["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"], "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 < hpa["minReplicas"] < hpa["maxReplicas"]
    # The autoscaler owns the replica count; a fixed one would fight it on every apply.
    assert "replicas" not in deployment["spec"]
    # Utilization is a share of the CPU request: there must be one.
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "cpu" in container["resources"]["requests"]
    pdb = manifests["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["minAvailable"] < hpa["minReplicas"]


def k8s_documents(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every manifest under deploy/k8s, and every file a kustomization lists exists."""
    folder = root / "deploy/k8s"
    documents = []
    for kustomization in sorted(folder.rglob("kustomization.yaml")):
        for name in yaml.safe_load(kustomization.read_text())["resources"]:
            path = kustomization.parent / name
            documents += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    listed = {path for path, _ in documents}
    on_disk = {p for p in folder.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert on_disk == listed, f"not listed in a kustomization.yaml: {on_disk - listed}"
    return documents


def test_every_k8s_manifest_passes_offline_schema_validation(service: Path) -> None:
    """Strict validation (unknown fields are errors) against the Kubernetes schemas bundled in
    kubernetes-validate, for the oldest and newest versions it has. kustomization.yaml files
    are kustomize's input, not resources, and are not validated. No custom resources are
    shipped (Prometheus finds the pods by annotations; the Dask cluster is plain Deployments),
    so no manifest goes unchecked."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    documents = k8s_documents(service)
    kinds = {doc["kind"] for _, doc in documents}
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"} <= kinds
    for version in ("1.30.0", kubernetes_validate.latest_version()):
        for path, doc in documents:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{path.relative_to(service)} ({doc['kind']}), k8s {version}: {exc}")


def test_k8s_validation_catches_a_wrong_field(service: Path) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = k8s(service)["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["paht"] = "/ready"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_dask_cluster_manifests_hold_together(service: Path) -> None:
    documents = [doc for path, doc in k8s_documents(service) if path.parent.name == "dask"]
    by_name = {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}
    scheduler_service = next(d for (kind, _), d in by_name.items() if kind == "Service")
    address = f"tcp://{scheduler_service['metadata']['name']}:8786"
    claims = {name for kind, name in by_name if kind == "PersistentVolumeClaim"}
    deployments = [d for (kind, _), d in by_name.items() if kind == "Deployment"]
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments]
    assert sum(scheduler_service["spec"]["selector"].items() <= labels.items()
               for labels in pod_labels) == 1
    job = next(d for (kind, _), d in by_name.items() if kind == "Job")
    api_image = k8s(service)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    for workload in [*deployments, job]:
        pod = workload["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        # Workers unpickle the service's model: they run the service's own image.
        assert container["image"] == api_image
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        used = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
                if "persistentVolumeClaim" in v}
        assert used <= claims
    workers = next(d for d in deployments if "worker" in d["metadata"]["name"])
    assert address in workers["spec"]["template"]["spec"]["containers"][0]["command"]
    environment = {e["name"]: e["value"]
                   for e in workers["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert WORKER_ENVIRON.items() <= environment.items()
    assert f"--scheduler={address}" in job["spec"]["template"]["spec"]["containers"][0]["command"]
    package = yaml.safe_load((service / "configs/config.yaml").read_text())["project"]["package"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][:4] == [
        "python", "-m", package, "score"
    ]


def test_k8s_config_map_holds_every_key_the_pods_read(service: Path) -> None:
    manifests = k8s(service)
    config_map = manifests["ConfigMap"]
    pod_spec = manifests["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    referenced = [
        (var["valueFrom"]["configMapKeyRef"]["name"], var["valueFrom"]["configMapKeyRef"]["key"])
        for var in container["env"]
        if "configMapKeyRef" in var.get("valueFrom", {})
    ]
    referenced += [
        (volume["configMap"]["name"], item["key"])
        for volume in pod_spec["volumes"]
        if "configMap" in volume
        for item in volume["configMap"]["items"]
    ]
    assert referenced
    for name, key in referenced:
        assert name == config_map["metadata"]["name"] and key in config_map["data"]
    # The mounted local.yaml overrides settings that exist in the service's config.
    config = yaml.safe_load((service / "configs/config.yaml").read_text())
    local = yaml.safe_load(config_map["data"]["local.yaml"])
    for section, values in local.items():
        assert set(values) <= set(config[section]), f"local.yaml: unknown keys in {section}"
    mount = next(m for m in container["volumeMounts"] if m.get("subPath") == "local.yaml")
    workdir = [args for op, args in dockerfile(service) if op == "WORKDIR"][-1]
    assert mount["mountPath"] == f"{workdir}/configs/local.yaml"


# --- Makefile, CI, pre-commit ---------------------------------------------------------------

MAKE_TARGETS = [
    "help",
    "install",
    "train",
    "evaluate",
    "serve",
    "test",
    "test-scale-out",
    "lint",
    "format",
    "drift",
    "investigate",
    "compare",
    "retrain",
    "promote",
    "mlflow-ui",
    "docker-build",
    "up",
    "down",
    "clean",
]


def make(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAKEFLAGS": ""}
    return subprocess.run(["make", "-n", *args], cwd=root, capture_output=True, text=True, env=env)


def test_make_help_lists_every_target(service: Path) -> None:
    result = subprocess.run(["make"], cwd=service, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert listed == MAKE_TARGETS


@pytest.mark.parametrize("target", MAKE_TARGETS)
def test_every_make_target_dry_runs(service: Path, target: str) -> None:
    result = make(service, target, "DATA=data/sample.csv", "VERSION=2")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("target", "variable"), [("drift", "DATA"), ("investigate", "SINCE"), ("promote", "VERSION")]
)
def test_make_names_the_missing_variable(service: Path, target: str, variable: str) -> None:
    result = make(service, target)
    assert result.returncode != 0
    assert f"{variable} is required: make {target} {variable}=" in result.stderr


@pytest.mark.parametrize(
    ("make_args", "cli_args"),
    [
        (["train"], ["train"]),
        (
            ["train", "DATA=new data.csv", "TRIALS=5"],
            ["train", "--data", "new data.csv", "--trials", "5"],
        ),
        (["evaluate"], ["evaluate"]),
        (
            ["serve", "HOST=0.0.0.0", "PORT=9000", "WORKERS=2"],
            ["serve", "--host", "0.0.0.0", "--port", "9000", "--workers", "2"],
        ),
        (
            ["drift", "DATA=recent.csv", "OUT=reports/today"],
            ["drift", "--data", "recent.csv", "--out", "reports/today"],
        ),
        (
            ["investigate", "SINCE=30d", "OUT=reports/why"],
            ["investigate", "--since", "30d", "--out", "reports/why"],
        ),
        (
            ["promote", "VERSION=3", "FORCE=1", "REASON=rollback after incident"],
            ["promote", "--version", "3", "--force", "--reason", "rollback after incident"],
        ),
    ],
)
def test_make_calls_the_service_cli_with_arguments_it_accepts(
    service: Path, make_args: list[str], cli_args: list[str]
) -> None:
    package = package_of(service)
    dry_run = make(service, *make_args)
    assert dry_run.returncode == 0, dry_run.stderr
    command = shlex.split(dry_run.stdout.replace("\\\n", " "))
    assert command == ["python", "-m", package, *cli_args]
    # The real argument parser of the rendered CLI accepts the command line.
    parse = (
        "import sys; from mlgen_runtime.cli import build_parser; "
        "print(vars(build_parser().parse_args(sys.argv[1:])))"
    )
    result = subprocess.run(
        [sys.executable, "-c", parse, *cli_args],
        cwd=service,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(service / "src")},
    )
    assert result.returncode == 0, result.stderr


def test_ci_workflow_installs_lints_and_tests(service: Path) -> None:
    workflow = yaml.safe_load((service / ".github/workflows/ci.yml").read_text())
    # PyYAML reads the bare key `on` as the boolean True.
    assert {"push", "pull_request"} <= set(workflow[True])
    for job in workflow["jobs"].values():
        assert job["runs-on"] and job["steps"]
        assert all(("run" in step) != ("uses" in step) for step in job["steps"])
    commands = " ".join(
        step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]
    )
    for expected in (
        "pip install -e '.[dev]'",
        "ruff check",
        "pytest",
        "promtool test rules alerts.test.yml",
    ):
        assert expected in commands
    # CI checks the rules with the Prometheus that docker compose runs.
    prometheus_image = compose(service)["services"]["prometheus"]["image"]
    assert prometheus_image in commands


def test_pre_commit_runs_ruff_lint_and_format(service: Path) -> None:
    config = yaml.safe_load((service / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff-check", "ruff-format"} <= hooks


def test_gitignore_keeps_outputs_and_secrets_out_of_git(service: Path) -> None:
    ignored = set((service / ".gitignore").read_text().split())
    assert {"mlflow.db", "mlartifacts/", "artifacts/", ".env"} <= ignored
    example = (service / ".env.example").read_text()
    assert "MLFLOW_TRACKING_URI" in example and "MLSERVICE_API_KEY" in example


# --- README ---------------------------------------------------------------------------------


def readme_bodies(root: Path, route: str = "/predict") -> list[Any]:
    """The JSON bodies of the README's curl examples that post to ``route`` (or below it)."""
    text = (root / "README.md").read_text()
    found = re.findall(r"-X POST http://127\.0\.0\.1:8000(\S+).*?-d '([^']*)'", text, re.S)
    return [json.loads(body) for path, body in found if path.startswith(route)]


def test_readme_examples_use_the_feature_answers_and_match_the_request_schema(
    penguins: Path,
) -> None:
    readme = (penguins / "README.md").read_text()
    assert "multiclass classification of `species`" in readme
    assert "src/penguin_species/custom_features.py" in readme
    single, batch = readme_bodies(penguins)
    names = [feature["name"] for feature in PENGUIN_FEATURES]
    # A real row, not placeholders the service would flag as out of its training range.
    assert list(single) == names and single == PENGUIN_ROW
    assert batch == {"records": [single]}
    # The example validates against the service's own request models, built from the same
    # features as training would resolve them.
    check = (
        "import json, sys; from mlgen_runtime.serving.schemas import RequestBodies; "
        "features, single, batch = sys.argv[1:]; "
        "bodies = RequestBodies(json.loads(features), 10); "
        "bodies.record.validate_json(single); bodies.batch.validate_json(batch)"
    )
    resolved = [{**feature, "categories": None} for feature in PENGUIN_FEATURES]
    result = subprocess.run(
        [sys.executable, "-c", check, *map(json.dumps, (resolved, single, batch))],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(penguins / "src")},
    )
    assert result.returncode == 0, result.stderr


def test_readme_feedback_example_and_make_commands_are_real(service: Path) -> None:
    (feedback,) = readme_bodies(service, "/feedback")
    assert set(feedback) == {"request_id", "index", "label"}
    readme = (service / "README.md").read_text()
    for target in re.findall(r"^make ([\w-]+)", readme, flags=re.M):
        assert target in MAKE_TARGETS, f"the README runs `make {target}`, the Makefile has none"


def test_readme_without_feature_answers_builds_the_request_from_metadata(service: Path) -> None:
    readme = (service / "README.md").read_text()
    assert readme_bodies(service) == []
    assert '["features"]' in readme and "data/sample.csv" in readme
    assert "A tabular prediction service generated by mlgen." in readme
