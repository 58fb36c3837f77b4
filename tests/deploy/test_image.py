"""The Dockerfile builds, and the image runs the tokenpool command."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.deploy._checks import ROOT

IMAGE = "tokenpool-test:latest"

# A cold build installs the wheels from the package index: give it time.
_BUILD_TIMEOUT_S = 900


def _docker_problem() -> str | None:
    """Why docker cannot build here, or None when it can."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    try:
        found = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info failed: {exc}"
    if found.returncode != 0:
        reason = (found.stderr.strip().splitlines() or ["no reason given"])[-1]
        return f"no usable Docker daemon: {reason}"
    return None


@pytest.mark.timeout(_BUILD_TIMEOUT_S + 120)
def test_image_builds_and_runs_the_cli() -> None:
    problem = _docker_problem()
    if problem is not None:
        pytest.skip(f"image not built: {problem}")
    build = subprocess.run(
        ["docker", "build", "--quiet", "-t", IMAGE, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=_BUILD_TIMEOUT_S,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    try:
        version = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "tokenpool", IMAGE, "--version"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        user = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "id", IMAGE, "-u"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        subprocess.run(
            ["docker", "image", "rm", "-f", IMAGE],
            capture_output=True,
            timeout=120,
            check=False,
        )

    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("tokenpool "), version.stdout
    assert user.stdout.strip() == "10001", user.stdout
