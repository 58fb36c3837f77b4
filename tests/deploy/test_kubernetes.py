"""The Kubernetes manifests refer to each other and to a config the daemon accepts."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.daemon._process import free_port
from tests.deploy._checks import (
    LEDGER_CLOSE_SECONDS,
    ROOT,
    host_of,
    option_values,
    port_of,
    serve_options,
    settings_problem,
    wait_serving,
)

MANIFESTS = ROOT / "deploy" / "kubernetes"

# Left out of kustomization.yaml on purpose: it holds a placeholder token.
SECRET_TEMPLATE = "secret.yaml"

# Where the Prometheus endpoint will listen, as the obs work serves it.
METRICS_PORT = 9464

Manifest = dict[str, Any]


@dataclass
class Objects:
    """The objects of deploy/kubernetes, one of each kind."""

    statefulset: Manifest
    service: Manifest
    configmap: Manifest
    secret: Manifest
    kustomization: Manifest


def _load() -> Objects:
    by_kind: dict[str, Manifest] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert document["kind"] not in by_kind, f"two {document['kind']} objects"
            by_kind[document["kind"]] = document
    return Objects(
        statefulset=by_kind["StatefulSet"],
        service=by_kind["Service"],
        configmap=by_kind["ConfigMap"],
        secret=by_kind["Secret"],
        kustomization=by_kind["Kustomization"],
    )


def _container(objects: Objects) -> Manifest:
    containers = objects.statefulset["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container: the daemon"
    container: Manifest = containers[0]
    return container


def _environment(container: Manifest) -> dict[str, str]:
    """The container's variables; one from a Secret gets a stand-in value."""
    return {
        variable["name"]: variable.get("value", f"from-secret-{variable['name']}")
        for variable in container.get("env", [])
    }


def _container_port(container: Manifest, name: str) -> int | None:
    for port in container.get("ports", []):
        if port.get("name") == name:
            number: int = port["containerPort"]
            return number
    return None


def _mount_path(container: Manifest, volume: str) -> str | None:
    for mount in container.get("volumeMounts", []):
        if mount["name"] == volume:
            path: str = mount["mountPath"]
            return path
    return None


def _under(path: str, folder: str) -> bool:
    return PurePosixPath(folder) in PurePosixPath(path).parents


def _selection_problems(objects: Objects) -> list[str]:
    spec = objects.statefulset["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    problems = []
    if spec.get("replicas") != 1:
        problems.append(f"replicas is {spec.get('replicas')!r}: SQLite has one writer")
    match = spec["selector"]["matchLabels"]
    if not match or match.items() - labels.items():
        problems.append(f"StatefulSet selector {match} does not match pod labels")
    selector = objects.service["spec"].get("selector", {})
    if not selector or selector.items() - labels.items():
        problems.append(f"Service selector {selector} does not match pod labels")
    if spec.get("serviceName") != objects.service["metadata"]["name"]:
        problems.append(
            f"serviceName {spec.get('serviceName')!r} is not the Service "
            f"{objects.service['metadata']['name']!r}"
        )
    return problems


def _port_problems(objects: Objects) -> list[str]:
    container = _container(objects)
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    problems = []
    for port in objects.service["spec"]["ports"]:
        target = port.get("targetPort", port["port"])
        if target not in named and target not in named.values():
            problems.append(
                f"Service port {port['name']} targetPort {target!r} is not a "
                "container port"
            )
    metrics = [p for p in objects.service["spec"]["ports"] if p["name"] == "metrics"]
    if not metrics or metrics[0]["port"] != METRICS_PORT:
        problems.append(f"Service has no port 'metrics' = {METRICS_PORT}")
    if named.get("metrics") != METRICS_PORT:
        problems.append(f"container has no port 'metrics' = {METRICS_PORT}")

    grpc_port = named.get("grpc")
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        if probe is None or "grpc" not in probe:
            problems.append(f"{kind} is not a grpc probe")
        elif probe["grpc"]["port"] != grpc_port:
            problems.append(
                f"{kind} asks port {probe['grpc']['port']}, not grpc {grpc_port}"
            )
    return problems


def _volume_problems(objects: Objects) -> list[str]:
    pod = objects.statefulset["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    claims = {
        c["metadata"]["name"]
        for c in objects.statefulset["spec"]["volumeClaimTemplates"]
    }
    problems = []
    for mount in _container(objects).get("volumeMounts", []):
        if mount["name"] not in volumes and mount["name"] not in claims:
            problems.append(f"volumeMount {mount['name']!r} names no volume or claim")
    for name, volume in volumes.items():
        if "configMap" not in volume:
            continue
        if volume["configMap"]["name"] != objects.configmap["metadata"]["name"]:
            problems.append(
                f"volume {name!r} names ConfigMap {volume['configMap']['name']!r}"
            )
        for item in volume["configMap"].get("items", []):
            if item["key"] not in objects.configmap["data"]:
                problems.append(
                    f"volume {name!r} mounts key {item['key']!r}, not in the ConfigMap"
                )
    return problems


def _config_file(objects: Objects) -> tuple[str | None, list[str]]:
    """The ConfigMap text the container's --config reads, or problems."""
    container = _container(objects)
    options, strays = option_values(container.get("args", []))
    problems = [f"args has {word!r}, which is no option" for word in strays]
    unknown = sorted(set(options) - serve_options())
    problems += [
        f"args has {name}, an option `tokenpool serve` does not take"
        for name in unknown
    ]
    metrics = options.get("--metrics-address")
    if metrics is not None and port_of(metrics) != _container_port(
        container, "metrics"
    ):
        problems.append(
            f"--metrics-address {metrics} is not the metrics container port"
        )

    config = options.get("--config") or options.get("-c")
    if config is None:
        return None, [*problems, "args do not pass --config"]
    pod = objects.statefulset["spec"]["template"]["spec"]
    for volume in pod.get("volumes", []):
        folder = _mount_path(container, volume["name"])
        if "configMap" not in volume or folder is None or not _under(config, folder):
            continue
        relative = str(PurePosixPath(config).relative_to(folder))
        items = volume["configMap"].get("items")
        keys = (
            {i["path"]: i["key"] for i in items}
            if items
            else {k: k for k in objects.configmap["data"]}
        )
        if relative in keys and keys[relative] in objects.configmap["data"]:
            text: str = objects.configmap["data"][keys[relative]]
            return text, problems
    return None, [*problems, f"--config {config} is no key of the mounted ConfigMap"]


def _settings_problems(objects: Objects, tmp_path: Path) -> list[str]:
    text, problems = _config_file(objects)
    if text is None:
        return problems
    container = _container(objects)
    settings, message = settings_problem(text, tmp_path, _environment(container))
    if settings is None:
        return [*problems, f"the ConfigMap's TOML is refused: {message}"]

    claims = [
        c["metadata"]["name"]
        for c in objects.statefulset["spec"]["volumeClaimTemplates"]
    ]
    ledger_mounts = [m for c in claims if (m := _mount_path(container, c)) is not None]
    if not any(_under(settings.ledger.path, mount) for mount in ledger_mounts):
        problems.append(
            f"ledger path {settings.ledger.path} is not on a claim ({ledger_mounts})"
        )
    address = settings.server.address
    if port_of(address) != _container_port(container, "grpc"):
        problems.append(f"server.address {address} is not the grpc container port")
    if host_of(address) not in ("0.0.0.0", "::"):
        problems.append(f"server.address {address} is not reachable from other pods")
    termination = objects.statefulset["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    if settings.server.grace_seconds + LEDGER_CLOSE_SECONDS >= termination:
        problems.append(
            f"terminationGracePeriodSeconds {termination} leaves no time after "
            f"grace_seconds {settings.server.grace_seconds} and the ledger's close"
        )
    return problems


def _secret_problems(objects: Objects) -> list[str]:
    secret = objects.secret
    keys = {*secret.get("data", {}), *secret.get("stringData", {})}
    problems = []
    for variable in _container(objects).get("env", []):
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            continue
        if ref["name"] != secret["metadata"]["name"] or ref["key"] not in keys:
            problems.append(
                f"env {variable['name']} reads secret {ref['name']}/{ref['key']}, "
                "which is not there"
            )
    return problems


def _hardening_problems(objects: Objects) -> list[str]:
    pod = objects.statefulset["spec"]["template"]["spec"]
    container = _container(objects)
    context = container.get("securityContext", {})
    problems = []
    if not (
        context.get("runAsNonRoot")
        or pod.get("securityContext", {}).get("runAsNonRoot")
    ):
        problems.append("runAsNonRoot is not set")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if context.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append("capabilities are not all dropped")
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        if {"cpu", "memory"} - set(resources.get(kind, {})):
            problems.append(f"resources.{kind} lacks cpu or memory")
    return problems


def _kustomization_problems(objects: Objects) -> list[str]:
    listed = set(objects.kustomization.get("resources", []))
    files = {path.name for path in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    problems = [
        f"kustomization lists {name}, which is missing"
        for name in sorted(listed - files)
    ]
    left_out = files - listed - {SECRET_TEMPLATE}
    problems += [f"kustomization leaves out {name}" for name in sorted(left_out)]
    if SECRET_TEMPLATE in listed:
        problems.append(f"kustomization applies {SECRET_TEMPLATE}, a placeholder token")
    return problems


def problems_of(objects: Objects, tmp_path: Path) -> list[str]:
    """Every way the objects fail to fit together; empty when they do."""
    return [
        *_selection_problems(objects),
        *_port_problems(objects),
        *_volume_problems(objects),
        *_settings_problems(objects, tmp_path),
        *_secret_problems(objects),
        *_hardening_problems(objects),
        *_kustomization_problems(objects),
    ]


def test_shipped_manifests_fit_together(tmp_path: Path) -> None:
    assert problems_of(_load(), tmp_path) == []


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[Objects], None]:
    """A change that sets one field: an Objects attribute, then keys and indexes."""
    kind, *keys = path

    def change(objects: Objects) -> None:
        node: Any = getattr(objects, str(kind))
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


_POD: tuple[str | int, ...] = ("statefulset", "spec", "template", "spec")
_CONTAINER = (*_POD, "containers", 0)
_COMPONENT = "app.kubernetes.io/component"


def _edit_toml(old: str, new: str) -> Callable[[Objects], None]:
    def change(objects: Objects) -> None:
        text = objects.configmap["data"]["tokenpool.toml"]
        assert old in text
        objects.configmap["data"]["tokenpool.toml"] = text.replace(old, new)

    return change


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param(
            _set(("statefulset", "spec", "replicas"), 2),
            "replicas is 2",
            id="two-replicas",
        ),
        pytest.param(
            _set(("statefulset", "spec", "serviceName"), "tokenpool-headless"),
            "serviceName",
            id="service-name",
        ),
        pytest.param(
            _set(("service", "spec", "selector", _COMPONENT), "web"),
            "Service selector",
            id="service-selector",
        ),
        pytest.param(
            _set(("service", "spec", "ports", 1, "targetPort"), "prometheus"),
            "targetPort 'prometheus'",
            id="target-port",
        ),
        pytest.param(
            _set((*_CONTAINER, "readinessProbe", "grpc", "port"), 50052),
            "readinessProbe asks port 50052",
            id="probe-port",
        ),
        pytest.param(
            _set((*_CONTAINER, "volumeMounts", 1, "name"), "data"),
            "volumeMount 'data'",
            id="mount-name",
        ),
        pytest.param(
            _set((*_POD, "volumes", 0, "configMap", "items", 0, "key"), "config.toml"),
            "key 'config.toml'",
            id="configmap-key",
        ),
        pytest.param(
            _set((*_CONTAINER, "args", 1), "/etc/tokenpool/other.toml"),
            "no key of the mounted",
            id="config-path",
        ),
        pytest.param(
            _set((*_CONTAINER, "args", 2), "--metrics-adress"),
            "does not take",
            id="unknown-option",
        ),
        pytest.param(
            _edit_toml('path = "/var/lib/tokenpool/', 'path = "/data/'),
            "not on a claim",
            id="ledger-path",
        ),
        pytest.param(
            _edit_toml("capacity_tokens = 600000", "capacity_tokens = -1"),
            "capacity_tokens",
            id="invalid-toml",
        ),
        pytest.param(
            _edit_toml('"0.0.0.0:50051"', '"127.0.0.1:50051"'),
            "not reachable",
            id="loopback",
        ),
        pytest.param(
            _set((*_POD, "terminationGracePeriodSeconds"), 15),
            "leaves no time",
            id="termination",
        ),
        pytest.param(
            _set((*_CONTAINER, "env", 1, "valueFrom", "secretKeyRef", "key"), "token"),
            "secret tokenpool-credentials/token",
            id="secret-key",
        ),
        pytest.param(
            _set((*_CONTAINER, "securityContext", "readOnlyRootFilesystem"), False),
            "readOnlyRootFilesystem",
            id="writable-root",
        ),
    ],
)
def test_broken_reference_is_reported(
    change: Callable[[Objects], None], problem: str, tmp_path: Path
) -> None:
    objects = copy.deepcopy(_load())

    change(objects)

    assert any(problem in found for found in problems_of(objects, tmp_path)), problem


def test_container_args_start_a_serving_daemon(tmp_path: Path) -> None:
    objects = _load()
    text, problems = _config_file(objects)
    assert text is not None, problems
    grpc_port, metrics_port = free_port(), free_port()
    # The pod's addresses and paths, moved to loopback and tmp_path.
    text = text.replace('"0.0.0.0:50051"', f'"127.0.0.1:{grpc_port}"')
    text = text.replace('"/var/lib/tokenpool/', f'"{tmp_path}/')
    config = tmp_path / "tokenpool.toml"
    config.write_text(text, encoding="utf-8")
    args = list(_container(objects)["args"])
    args[args.index("--config") + 1] = str(config)
    args[args.index("--metrics-address") + 1] = f"127.0.0.1:{metrics_port}"
    env = {v["name"]: v.get("value", "secret") for v in _container(objects)["env"]}

    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "tokenpool", "serve", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
        try:
            wait_serving(daemon, f"127.0.0.1:{grpc_port}")
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as answer:
                metrics = answer.read().decode()
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(15)

    lines = log_path.read_text(encoding="utf-8").splitlines()
    assert code == 0, lines
    assert "tokenpool_" in metrics
    assert all(isinstance(json.loads(line), dict) for line in lines), lines[:3]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomization_builds_offline() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(result.stdout)]
    assert sorted(kinds) == ["ConfigMap", "Service", "StatefulSet"]
