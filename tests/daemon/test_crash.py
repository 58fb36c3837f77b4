"""SIGKILL under load, five times: nothing acknowledged is lost or applied twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemon._crash import run


def test_sigkill_under_load_loses_nothing_acknowledged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = run(tmp_path, kills=5, seconds=2.0, clients=6, seed=6)

    with capsys.disabled():
        print(f"\n{figures.line()}")
    assert figures.kills == 5
    assert figures.acknowledged > 200
    assert figures.mismatches == []
