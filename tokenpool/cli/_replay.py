"""Replay of a recorded trace through the client stub (placeholder wiring)."""

from __future__ import annotations
