"""Tests of the tokenpool_client package's public surface."""

from __future__ import annotations

from types import ModuleType

import tokenpool_client


def _ruff_order(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions: the order ruff's RUF022 keeps."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


def test_all_is_sorted_and_lists_every_public_name() -> None:
    public = {
        name
        for name, value in vars(tokenpool_client).items()
        if not name.startswith("_")
        and name != "annotations"
        and not isinstance(value, ModuleType)
    }

    assert tokenpool_client.__all__ == sorted(tokenpool_client.__all__, key=_ruff_order)
    assert set(tokenpool_client.__all__) == public
