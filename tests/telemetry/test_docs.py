"""docs/observability.md lists every metric with its unit."""

from __future__ import annotations

from pathlib import Path

from tokenpool.telemetry import METRICS

DOC = Path(__file__).resolve().parents[2] / "docs" / "observability.md"


def test_every_metric_is_documented_with_its_unit() -> None:
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in DOC.read_text().splitlines()
        if line.startswith("| `")
    }

    for spec in METRICS:
        assert spec.name in rows, spec.name
        assert f"`{spec.unit}`" in rows[spec.name], spec.name
