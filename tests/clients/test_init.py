"""Tests of the tokenpool_client package's public surface."""

from __future__ import annotations

from types import ModuleType

import tokenpool_client


def test_all_is_sorted_and_lists_every_public_name() -> None:
    public = {
        name
        for name, value in vars(tokenpool_client).items()
        if not name.startswith("_")
        and name != "annotations"
        and not isinstance(value, ModuleType)
    }

    assert tokenpool_client.__all__ == sorted(tokenpool_client.__all__)
    assert set(tokenpool_client.__all__) == public
