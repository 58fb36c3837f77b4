"""The base every configuration model of the core shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    """Immutable, and refuses keys it does not know (a misspelling is an error)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
