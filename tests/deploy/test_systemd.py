"""The systemd unit: its options, the config it reads, and its hardening."""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest
from tokenpool_client import Client

from tests.daemon._process import free_port, write_config
from tests.deploy._checks import (
    LEDGER_CLOSE_SECONDS,
    ROOT,
    option_values,
    serve_options,
    settings_problem,
    wait_serving,
)

UNIT = ROOT / "deploy" / "systemd" / "tokenpool.service"

# The example configuration shipped beside the unit, installed where it reads.
EXAMPLE_CONFIG = UNIT.with_name("tokenpool.toml")

# Options whose values the hardening depends on, as the unit must set them.
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "MemoryDenyWriteExecute": "yes",
    "LockPersonality": "yes",
    "CapabilityBoundingSet": "",
    "Restart": "on-failure",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "StateDirectory": "tokenpool",
}

Unit = list[tuple[str, str, str]]


def parse_unit(text: str) -> Unit:
    """(section, key, value) of each assignment, repeated keys kept in order."""
    entries: Unit = []
    section = ""
    logical = ""
    for raw in text.splitlines():
        line = logical + raw.strip()
        if line.endswith("\\"):
            logical = line[:-1].rstrip() + " "
            continue
        logical = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {line!r}"
        entries.append((section, key.strip(), value.strip()))
    return entries


def _values(unit: Unit, key: str, section: str = "Service") -> list[str]:
    return [value for sec, name, value in unit if sec == section and name == key]


def _last(unit: Unit, key: str, section: str = "Service") -> str | None:
    values = _values(unit, key, section)
    return values[-1] if values else None


def _exec_problems(unit: Unit, tmp_path: Path) -> list[str]:
    exec_start = _last(unit, "ExecStart")
    if exec_start is None:
        return ["no ExecStart"]
    argv = shlex.split(exec_start)
    if argv[1:2] != ["serve"] or not argv[0].endswith("/tokenpool"):
        return [f"ExecStart {exec_start!r} is not `tokenpool serve`"]
    options, strays = option_values(argv[2:])
    problems = [f"ExecStart passes {word!r}, which is no option" for word in strays]
    unknown = sorted(set(options) - serve_options())
    problems += [
        f"ExecStart passes {name}, which serve does not take" for name in unknown
    ]

    config = options.get("--config") or options.get("-c")
    config_dir = _last(unit, "ConfigurationDirectory")
    if config is None:
        return [*problems, "ExecStart passes no --config"]
    if config_dir is None or PurePosixPath(config).parent != PurePosixPath(
        "/etc", config_dir
    ):
        problems.append(f"--config {config} is not in ConfigurationDirectory")
    if PurePosixPath(config).name != EXAMPLE_CONFIG.name:
        problems.append(f"--config {config} is not the example {EXAMPLE_CONFIG.name}")
    return [*problems, *_config_problems(unit, tmp_path)]


def _config_problems(unit: Unit, tmp_path: Path) -> list[str]:
    settings, message = settings_problem(
        EXAMPLE_CONFIG.read_text(encoding="utf-8"), tmp_path
    )
    if settings is None:
        return [f"the example config is refused: {message}"]
    problems = []
    state = PurePosixPath("/var/lib", _last(unit, "StateDirectory") or "?")
    if state not in PurePosixPath(settings.ledger.path).parents:
        problems.append(f"ledger path {settings.ledger.path} is not under {state}")
    stop = _last(unit, "TimeoutStopSec")
    needed = settings.server.grace_seconds + LEDGER_CLOSE_SECONDS
    if stop is None or not stop.isdigit() or int(stop) <= needed:
        problems.append(f"TimeoutStopSec {stop} is not above {needed} s of draining")
    return problems


def _option_problems(unit: Unit) -> list[str]:
    problems = []
    service_type = _last(unit, "Type")
    # Type=notify would wait for an sd_notify READY the daemon never sends.
    if service_type not in ("exec", "simple"):
        problems.append(f"Type={service_type}: the daemon does not speak sd_notify")
    for key, wanted in HARDENING.items():
        if _last(unit, key) != wanted:
            problems.append(f"{key}={_last(unit, key)!r}, not {wanted!r}")
    # The daemon reloads on SIGHUP (ExecReload): forcing a restart on it would
    # turn `systemctl reload` back into a restart, should it ever exit on one.
    if _values(unit, "RestartForceExitStatus"):
        problems.append("RestartForceExitStatus: SIGHUP reloads, it is no exit")
    if "@system-service" not in _values(unit, "SystemCallFilter"):
        problems.append("SystemCallFilter does not allow only @system-service")
    if _last(unit, "DynamicUser") != "yes" and _last(unit, "User") in (None, "root"):
        problems.append("the service runs as root: set DynamicUser=yes or User=")
    if _last(unit, "WantedBy", "Install") != "multi-user.target":
        problems.append("not WantedBy=multi-user.target")
    return problems


def problems_of(unit: Unit, tmp_path: Path) -> list[str]:
    """Every way the unit and the example config disagree; empty when they fit."""
    return [*_option_problems(unit), *_exec_problems(unit, tmp_path)]


def _unit() -> Unit:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def test_shipped_unit_fits_its_config(tmp_path: Path) -> None:
    assert problems_of(_unit(), tmp_path) == []


def _replace(key: str, value: str | None) -> Callable[[Unit], Unit]:
    """A change that sets (or, with None, drops) every `key=` of [Service]."""

    def change(unit: Unit) -> Unit:
        kept = [entry for entry in unit if entry[1] != key]
        return kept if value is None else [*kept, ("Service", key, value)]

    return change


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param(_replace("Type", "notify"), "sd_notify", id="notify"),
        pytest.param(
            _replace("ExecStart", "/opt/tokenpool/bin/tokenpool serve"),
            "no --config",
            id="no-config",
        ),
        pytest.param(
            _replace(
                "ExecStart", "/opt/tokenpool/bin/tokenpool serve --config /srv/x.toml"
            ),
            "not in ConfigurationDirectory",
            id="config-elsewhere",
        ),
        pytest.param(
            _replace(
                "ExecStart",
                "/opt/tokenpool/bin/tokenpool serve -c /etc/tokenpool/tokenpool.toml "
                "--metrics 9464",
            ),
            "serve does not take",
            id="unknown-option",
        ),
        pytest.param(
            _replace("StateDirectory", "tokenpool-ledger"), "is not under", id="state"
        ),
        pytest.param(_replace("TimeoutStopSec", "15"), "TimeoutStopSec", id="timeout"),
        pytest.param(_replace("ProtectSystem", "full"), "ProtectSystem", id="protect"),
        pytest.param(
            _replace("CapabilityBoundingSet", None), "CapabilityBoundingSet", id="caps"
        ),
        pytest.param(
            _replace("SystemCallFilter", "@default"), "@system-service", id="syscalls"
        ),
        pytest.param(_replace("DynamicUser", None), "runs as root", id="root"),
        pytest.param(
            _replace("RestartForceExitStatus", "SIGHUP"),
            "RestartForceExitStatus",
            id="restart-on-hup",
        ),
    ],
)
def test_broken_unit_is_reported(
    change: Callable[[Unit], Unit], problem: str, tmp_path: Path
) -> None:
    found = problems_of(change(_unit()), tmp_path)

    assert any(problem in line for line in found), found


def test_repeated_keys_and_continuations_are_parsed() -> None:
    unit = parse_unit(
        "[Service]\n# a comment\nSystemCallFilter=@system-service\n"
        "SystemCallFilter=~@privileged\nExecStart=/bin/tokenpool \\\n  serve\n"
    )

    assert _values(unit, "SystemCallFilter") == ["@system-service", "~@privileged"]
    assert _last(unit, "ExecStart") == "/bin/tokenpool serve"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify insists that ExecStart exists: point it at this checkout's daemon.
    binary = Path(sys.executable).with_name("tokenpool")
    text = UNIT.read_text(encoding="utf-8")
    assert text.count("/opt/tokenpool/bin/tokenpool") == 1
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/opt/tokenpool/bin/tokenpool", str(binary)))

    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Unknown keys and bad values are warnings with exit status 0.
    about_unit = [line for line in result.stderr.splitlines() if UNIT.name in line]
    assert result.returncode == 0, result.stderr
    assert about_unit == []


SANDBOX = Path(__file__).with_name("_sandbox.py")


def _sandboxed(rules: list[str], command: list[str]) -> list[str]:
    return [sys.executable, str(SANDBOX), *rules, "--", *command]


def _skip_unless_supported(rules: list[str]) -> None:
    probe = subprocess.run(
        _sandboxed(rules, ["/bin/true"]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode == 3:
        pytest.skip(probe.stderr.strip())
    assert probe.returncode == 0, probe.stderr


def _serve_round_trip(rules: list[str], tmp_path: Path) -> None:
    """Serve, reserve, settle and stop cleanly under the rules, or fail."""
    port = free_port()
    budget = '[[budgets]]\nname = "b"\ncapacity_tokens = 1000\n'
    config = write_config(tmp_path, port, budget)
    serve = [sys.executable, "-m", "tokenpool", "serve", "--config", str(config)]
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            _sandboxed(rules, serve),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            wait_serving(daemon, f"127.0.0.1:{port}")
            with Client(f"127.0.0.1:{port}") as client:
                held = client.reserve("b", "t", tokens=300)
                settled = client.settle(held.reservation_id, "t", output_tokens=100)
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(15)

    assert (settled.charged_tokens, settled.refunded_tokens) == (100, 200)
    assert code == 0, log_path.read_text(encoding="utf-8")


def _mdwe_rule(unit: Unit) -> list[str]:
    """The sandbox flag for MemoryDenyWriteExecute=yes, checked to bite."""
    assert _last(unit, "MemoryDenyWriteExecute") == "yes"
    rule = ["--mdwe"]
    _skip_unless_supported(rule)
    control = subprocess.run(
        _sandboxed(
            rule, [sys.executable, "-c", "import mmap; mmap.mmap(-1, 1, prot=7)"]
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "PermissionError" in control.stderr
    return rule


# Prints the errno of a ptrace call that can trace nothing.
_PTRACE_ERRNO = (
    "import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
    "libc.ptrace(-1, 0, None, None); print(ctypes.get_errno())"
)


def _syscall_rules(unit: Unit) -> list[str]:
    """The sandbox flags for the unit's SystemCallFilter, checked to bite."""
    assert _last(unit, "SystemCallErrorNumber") == "EPERM"
    rules = [f"--syscalls={spec}" for spec in _values(unit, "SystemCallFilter")]
    _skip_unless_supported(rules)
    # ptrace is in no group the unit allows: an unfiltered call fails with
    # ESRCH (no such tracee), a filtered one with EPERM.
    probe = [sys.executable, "-c", _PTRACE_ERRNO]
    errnos = [
        subprocess.run(
            command, capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
        for command in (probe, _sandboxed(rules, probe))
    ]
    assert errnos == [str(errno.ESRCH), str(errno.EPERM)]
    return rules


def test_daemon_serves_under_the_units_kernel_rules(tmp_path: Path) -> None:
    unit = _unit()
    rules = [*_mdwe_rule(unit), *_syscall_rules(unit)]

    _serve_round_trip(rules, tmp_path)
