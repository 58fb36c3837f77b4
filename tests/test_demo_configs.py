"""The demo configurations are valid, and the autoscaling one autoscales."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenpool.daemon import load_settings

DEMO = Path(__file__).resolve().parent.parent / "deploy" / "demo"


@pytest.mark.parametrize("name", sorted(p.name for p in DEMO.glob("*.toml")))
def test_demo_config_is_valid(name: str) -> None:
    assert load_settings(DEMO / name).budgets


def test_autoscale_demo_is_the_demo_with_the_autoscaler_on() -> None:
    demo = load_settings(DEMO / "demo.toml").budgets[0]
    scaled = load_settings(DEMO / "autoscale.toml").budgets[0]

    assert scaled.autoscale.enabled and not demo.autoscale.enabled
    assert scaled.peak_capacity == 900_000
    assert scaled.floor_capacity == demo.capacity_tokens == scaled.capacity_tokens
    differing = {
        name
        for name in type(demo).model_fields
        if getattr(demo, name) != getattr(scaled, name)
    }
    assert differing == {"autoscale", "max_capacity_tokens"}
