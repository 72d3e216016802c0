"""The compose stack, checked without Docker: every file it mounts exists and loads in the real
tools (``promtool check config``, ``amtool check-config``), the collector config has the
pipelines the stack relies on, images are pinned, ports stay on 127.0.0.1, no secret is in clear.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts import config as knobs
from dashboards import queries

from .servers import ROOT, run

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
COLLECTOR = yaml.safe_load((ROOT / "otel-collector.yaml").read_text())


def bind_mounts(service: str) -> list[tuple[Path, str]]:
    """(host path, container path) of the service's bind mounts (named volumes left out)."""
    mounts = []
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append((ROOT / source, target))
    return mounts


def container_files(service: str, tmp_path: Path) -> Path:
    """Lay out the service's bind mounts under ``tmp_path`` as the container sees them."""
    for source, target in bind_mounts(service):
        dest = tmp_path / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest)
        else:
            shutil.copy(source, dest)
    return tmp_path


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def test_the_stack_has_every_service():
    assert set(SERVICES) == {
        "app",
        "otel-collector",
        "prometheus",
        "alertmanager",
        "alert-sink",
        "grafana",
        "jaeger",
    }


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_images_are_pinned_to_a_version(service):
    image = SERVICES[service]["image"]
    name, _, tag = image.rpartition(":")
    assert name, f"{image} has no tag"
    assert tag != "latest"
    assert re.search(r"\d+\.\d+", tag) or service == "app", image


def test_the_app_is_built_from_the_dockerfile_running_the_demo():
    assert SERVICES["app"]["build"] == "."
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11[\d.]*-slim$", dockerfile, re.M)
    assert 'pip install ".[demo]"' in dockerfile
    cmd = json.loads(re.search(r"^CMD (.*)$", dockerfile, re.M).group(1))
    entry = json.loads(re.search(r"^ENTRYPOINT (.*)$", dockerfile, re.M).group(1))
    argv = entry + cmd
    assert argv[:2] == ["otel-resilience", "demo"]
    assert argv[argv.index("--duration") + 1] == "0"
    assert argv[argv.index("--metrics-host") + 1] == "0.0.0.0"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for needed in ("pyproject.toml", "README.md", "src/"):
        assert f"!{needed}" in ignored


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_ports_are_bound_to_localhost_only(service):
    for port in SERVICES[service].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"{service}: {port}"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_mounted_file_exists(service):
    for source, _ in bind_mounts(service):
        assert source.exists(), f"{service} mounts {source}, which does not exist"


def test_no_secret_is_written_in_clear_and_env_example_lists_every_variable():
    example = (ROOT / ".env.example").read_text()
    used = set(re.findall(r"\$\{(\w+)", (ROOT / "docker-compose.yml").read_text()))
    for variable in used:
        assert re.search(rf"^{variable}=", example, re.M), f".env.example lacks {variable}"
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|API_KEY|CREDENTIAL", key):
                assert str(value).startswith("${"), f"{name}: {key} is written in clear"


def test_prometheus_config_loads_with_the_mounted_rules(promtool, tmp_path):
    root = container_files("prometheus", tmp_path)
    config = root / "etc/prometheus/prometheus.yml"

    result = run(promtool, "check", "config", str(config))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout + result.stderr
    # the rules Prometheus loads are the repository's own
    loaded = {p.name for p in (root / "etc/prometheus/rules").iterdir()}
    assert loaded == {"resilience.rules.yml", "resilience.alerts.yml"}


def test_prometheus_receives_otlp_scrapes_the_collector_and_alerts_the_alertmanager():
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {
        name: [t for sc in job["static_configs"] for t in sc["targets"]]
        for name, job in jobs.items()
    }
    # the collector's own metrics (otelcol_*), for the collector alerts and `up`
    telemetry = COLLECTOR["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]
    assert targets["otel-collector"] == [f"otel-collector:{telemetry['prometheus']['port']}"]
    assert "app" not in targets  # the app sends OTLP: scraping it too would count calls twice
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["alertmanager:9093"]
    # the resilience metrics are pushed into Prometheus's OTLP receiver, which sets job and
    # instance from the resource (service.name, service.instance.id): the equivalent of
    # honor_labels, so the per-process breaker alerts see every replica
    assert "--web.enable-otlp-receiver" in SERVICES["prometheus"]["command"]
    exporter = COLLECTOR["exporters"]["otlp_http/prometheus"]
    assert exporter["endpoint"] == "http://prometheus:9090/api/v1/otlp"
    assert "prometheus" not in COLLECTOR["exporters"]  # no second copy to scrape


def test_prometheus_keeps_the_error_budget_period():
    retention = next(
        arg for arg in SERVICES["prometheus"]["command"] if "retention.time" in arg
    ).split("=")[1]
    assert knobs.seconds(retention) >= knobs.seconds(knobs.SLO_PERIOD)


def test_alertmanager_config_loads_and_routes_by_severity(amtool, tmp_path):
    root = container_files("alertmanager", tmp_path)
    config_path = root / "etc/alertmanager/alertmanager.yml"

    result = run(amtool, "check-config", str(config_path))

    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(config_path.read_text())
    routes = {tuple(r["matchers"]): r["receiver"] for r in config["route"]["routes"]}
    assert routes == {
        ('severity="critical"',): "page",
        ('severity="warning"',): "ticket",
        ('severity="none"',): "heartbeat",
    }
    # the stand-in receivers post to the stack's alert-sink
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            assert hook["url"].startswith("http://alert-sink:9095/")
    assert "9095" in " ".join(SERVICES["alert-sink"]["command"])


def test_alertmanager_routes_pick_the_right_receiver(amtool):
    config = ROOT / "deploy/alertmanager/alertmanager.yml"
    for severity, receiver in (("critical", "page"), ("warning", "ticket"), ("none", "heartbeat")):
        result = run(
            amtool, "config", "routes", "test", f"--config.file={config}", f"severity={severity}"
        )
        assert result.stdout.strip() == receiver, result.stdout + result.stderr


def test_collector_receives_otlp_and_exports_metrics_and_traces():
    protocols = COLLECTOR["receivers"]["otlp"]["protocols"]
    assert host_port(protocols["grpc"]["endpoint"]) == ("0.0.0.0", 4317)
    assert host_port(protocols["http"]["endpoint"]) == ("0.0.0.0", 4318)
    pipelines = COLLECTOR["service"]["pipelines"]
    assert set(pipelines) == {"metrics", "traces"}
    for pipeline in pipelines.values():
        assert pipeline["receivers"] == ["otlp"]
        assert pipeline["processors"][0] == "memory_limiter"
        assert "batch" in pipeline["processors"]
        for name in pipeline["processors"]:
            assert name in COLLECTOR["processors"]
        for name in pipeline["exporters"]:
            assert name in COLLECTOR["exporters"]
    assert pipelines["metrics"]["exporters"] == ["otlp_http/prometheus"]
    (traces_exporter,) = pipelines["traces"]["exporters"]
    assert traces_exporter.split("/")[0] == "otlp_grpc"
    trace_host, trace_port = host_port(COLLECTOR["exporters"][traces_exporter]["endpoint"])
    assert trace_host in SERVICES
    assert trace_port == 4317
    assert "health_check" in COLLECTOR["service"]["extensions"]
    assert "health_check" in COLLECTOR["extensions"]


#: component types the pinned collector (0.144 and later) knows, by kind; the deprecated aliases
#: (`otlp` and `otlphttp` exporters) and removed keys must not come back
CURRENT_COMPONENTS = {
    "receivers": {"otlp"},
    "processors": {"memory_limiter", "batch"},
    "exporters": {"otlp_grpc", "otlp_http"},
    "extensions": {"health_check"},
}


def test_collector_config_uses_the_current_keys_of_the_pinned_version():
    image = SERVICES["otel-collector"]["image"]
    name, _, version = image.rpartition(":")
    assert name == "otel/opentelemetry-collector-contrib"
    assert tuple(map(int, version.split("."))) >= (0, 144, 0)
    for kind, allowed in CURRENT_COMPONENTS.items():
        for component in COLLECTOR[kind]:
            assert component.split("/")[0] in allowed, f"{kind}: {component}"
    metrics = COLLECTOR["service"]["telemetry"]["metrics"]
    assert "address" not in metrics  # deprecated: readers
    (reader,) = metrics["readers"]
    assert reader["pull"]["exporter"]["prometheus"]["host"] == "0.0.0.0"
    limiter = COLLECTOR["processors"]["memory_limiter"]
    assert {"check_interval", "limit_mib", "spike_limit_mib"} == set(limiter)
    for exporter in COLLECTOR["exporters"].values():
        assert "insecure" in exporter["tls"]  # plain HTTP/gRPC inside the compose network
        assert set(exporter) <= {"endpoint", "tls", "sending_queue", "retry_on_failure"}


def test_the_app_sends_otlp_to_the_collector():
    env = SERVICES["app"]["environment"]
    host, port = host_port(env["OTEL_EXPORTER_OTLP_ENDPOINT"].removeprefix("http://"))
    assert host == "otel-collector"
    grpc = host_port(COLLECTOR["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[1]
    http = host_port(COLLECTOR["receivers"]["otlp"]["protocols"]["http"]["endpoint"])[1]
    assert port == {"grpc": grpc, "http/protobuf": http}[env["OTEL_EXPORTER_OTLP_PROTOCOL"]]


def test_grafana_provisions_the_datasource_and_the_committed_dashboards(tmp_path):
    root = container_files("grafana", tmp_path)
    provisioning = root / "etc/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources/datasources.yml").read_text())
    by_type = {d["type"]: d for d in datasources["datasources"]}
    assert by_type["prometheus"]["url"] == "http://prometheus:9090"
    assert by_type["prometheus"]["isDefault"] is True
    assert by_type["jaeger"]["url"] == "http://jaeger:16686"
    (provider,) = yaml.safe_load((provisioning / "dashboards/otel-resilience.yml").read_text())[
        "providers"
    ]
    provided = root / provider["options"]["path"].lstrip("/")
    assert sorted(p.name for p in provided.glob("*.json")) == sorted(
        p.name for p in queries.dashboard_files()
    )
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (root / home.lstrip("/")).is_file()


def test_every_config_the_stack_reads_is_valid_yaml():
    for path in [
        ROOT / "otel-collector.yaml",
        *sorted((ROOT / "deploy").rglob("*.yml")),
    ]:
        assert yaml.safe_load(path.read_text()), path


#: services whose image has no shell or interpreter to run a check with (distroless)
NO_HEALTHCHECK = {"otel-collector": "distroless image: its health is health_check on :13133"}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_that_can_have_a_healthcheck_has_one(service):
    if service in NO_HEALTHCHECK:
        assert "healthcheck" not in SERVICES[service]
        assert "health_check" in COLLECTOR["extensions"]
        return
    check = SERVICES[service]["healthcheck"]
    assert check["test"][0] == "CMD"
    command = " ".join(check["test"][1:])
    # it asks the service's own HTTP port on localhost
    ports = {int(str(p).rsplit(":", 1)[1]) for p in SERVICES[service].get("ports", [])}
    port = int(re.search(r"127\.0\.0\.1:(\d+)", command).group(1))
    if service == "alert-sink":
        assert str(port) in " ".join(SERVICES[service]["command"])
    else:
        assert port in ports, (service, port, ports)
    for key in ("interval", "timeout", "retries"):
        assert key in check


def test_services_wait_for_the_health_of_what_they_depend_on():
    for name, service in SERVICES.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            wanted = "service_started" if dependency in NO_HEALTHCHECK else "service_healthy"
            assert condition == {"condition": wanted}, (name, dependency)


def test_grafana_keeps_its_data_at_its_real_data_path_and_dashboards_outside_it():
    volumes = SERVICES["grafana"]["volumes"]
    named = {v.split(":")[1] for v in volumes if not v.startswith(".")}
    assert named == {"/var/lib/grafana"}  # GF_PATHS_DATA of the image
    for source, target in bind_mounts("grafana"):
        assert not target.startswith("/var/lib/grafana"), f"{source} mounted inside the volume"


#: the images, and the oldest release each may be (current and supported lines)
IMAGES = {
    "jaeger": ("jaegertracing/jaeger", (2, 0)),
    "grafana": ("grafana/grafana", (11, 0)),
    "prometheus": ("prom/prometheus", (3, 0)),  # the OTLP receiver the collector pushes to
    "alertmanager": ("prom/alertmanager", (0, 28)),
    "otel-collector": ("otel/opentelemetry-collector-contrib", (0, 144)),
}


@pytest.mark.parametrize("service", sorted(IMAGES))
def test_images_are_current_and_supported(service):
    name, minimum = IMAGES[service]
    image, _, tag = SERVICES[service]["image"].rpartition(":")
    assert image == name
    version = tuple(int(part) for part in tag.removeprefix("v").split("."))
    assert version[: len(minimum)] >= minimum, SERVICES[service]["image"]


def test_jaeger_2_needs_no_v1_settings():
    assert "COLLECTOR_OTLP_ENABLED" not in (SERVICES["jaeger"].get("environment") or {})
