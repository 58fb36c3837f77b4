"""The compose set-up: its services refer to each other and to real files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tokenpool.daemon import load_settings
from tokenpool.telemetry import METRICS

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (relative to deploy/) of bind mounts."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        found[target] = source
    return found


def _published(service: dict[str, Any]) -> set[int]:
    return {int(str(port).split(":")[-1]) for port in service.get("ports", [])}


def test_daemon_sends_traces_to_jaegers_otlp_port() -> None:
    services = _compose()["services"]
    daemon, jaeger = services["tokenpool"], services["jaeger"]

    endpoint = daemon["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)", endpoint).groups()  # type: ignore[union-attr]

    assert host == "jaeger"
    assert int(port) == 4317
    assert 4317 in _published(jaeger)
    assert "jaegertracing/all-in-one" in jaeger["image"]
    assert daemon["environment"]["OTEL_TRACES_EXPORTER"] == "otlp"
    assert "jaeger" in daemon["depends_on"]


def test_prometheus_scrapes_the_daemons_metrics_address() -> None:
    services = _compose()["services"]
    daemon, prometheus = services["tokenpool"], services["prometheus"]
    listen = _option(daemon["command"], "--metrics-address")
    config_path = _option(
        [part for arg in prometheus["command"] for part in arg.split("=")],
        "--config.file",
    )
    config = yaml.safe_load((DEPLOY / _mounts(prometheus)[config_path]).read_text())

    [job] = config["scrape_configs"]
    [targets] = [group["targets"] for group in job["static_configs"]]
    assert targets == [f"tokenpool:{listen.rsplit(':', 1)[1]}"]
    assert job["metrics_path"] == "/metrics"
    assert int(listen.rsplit(":", 1)[1]) in _published(daemon)


def test_daemon_reads_a_valid_config_from_the_mounted_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon = _compose()["services"]["tokenpool"]
    config_path = _option(daemon["command"], "--config")
    source = DEPLOY / _mounts(daemon)[config_path]
    # Compose passes the admin token from the host's environment: the
    # daemon listens beyond loopback, which it refuses to do without one.
    token_variable = "TOKENPOOL_AUTH__ADMIN_TOKEN"
    assert "TOKENPOOL_ADMIN_TOKEN:?" in daemon["environment"][token_variable]
    monkeypatch.setenv(token_variable, "compose-test-token")

    settings = load_settings(source)

    assert settings.server.address.endswith(":50051")
    assert 50051 in _published(daemon)
    ledger_folder = str(Path(settings.ledger.path).parent)
    assert ledger_folder in _mounts(daemon)


def test_image_is_non_root_and_health_checked() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    compose = _compose()["services"]["tokenpool"]

    assert compose["build"]["dockerfile"] == "Dockerfile"
    assert (DEPLOY / compose["build"]["context"] / "Dockerfile").exists()
    [user] = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user not in ("root", "0")
    health = re.search(r"HEALTHCHECK .*?CMD (\[.*?\])", dockerfile, re.DOTALL)
    assert health is not None
    assert json.loads(health.group(1))[:2] == ["tokenpool", "health"]
    [cmd] = re.findall(r"^CMD (\[.*\])", dockerfile, re.MULTILINE)
    assert _option(json.loads(cmd), "--config") == _option(
        compose["command"], "--config"
    )
    assert "EXPOSE 50051 9464" in dockerfile


def _prometheus_names() -> set[str]:
    """Every series name the daemon exports, as Prometheus spells it."""
    names = set()
    for spec in METRICS:
        base = spec.name.replace(".", "_")
        unit = {"s": "seconds", "USD": "USD"}.get(spec.unit, "")
        if unit:
            base += f"_{unit}"
        if spec.kind == "counter":
            names.add(base + "_total")
        elif spec.kind == "histogram":
            names |= {base + "_bucket", base + "_count", base + "_sum"}
        else:
            names.add(base)
    return names


def test_dashboard_queries_only_exported_metrics() -> None:
    services = _compose()["services"]
    mounts = _mounts(services["grafana"])
    folder = DEPLOY / mounts["/var/lib/grafana/dashboards"]
    dashboard = json.loads((folder / "tokenpool.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]

    used = {
        name
        for expr in exprs
        for name in re.findall(r"\b(?:tokenpool|rpc_server)_[A-Za-z_]+", expr)
    }

    assert used
    assert used <= _prometheus_names(), used - _prometheus_names()
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("capacity", "utilisation", "wait", "refusals", "spend", "cache"):
        assert topic in titles
