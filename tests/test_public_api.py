"""Each package's `__all__` is sorted and lists exactly its public names."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = [
    "tokenpool",
    "tokenpool.core",
    "tokenpool.engine",
    "tokenpool.ledger",
    "tokenpool.service",
    "tokenpool.daemon",
    "tokenpool.cli",
    "tokenpool.replay",
    "tokenpool.telemetry",
    "tokenpool_client",
]


def _isort_style(name: str) -> tuple[int, str]:
    """Constants, then classes, then the rest: the order ruff's RUF022 keeps."""
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)

    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and not isinstance(value, types.ModuleType)
        and attr != "annotations"
    }

    assert exported == sorted(exported, key=_isort_style)
    assert set(exported) - {"__version__"} == public
