"""The command-line faces: serve, status and replay."""

from __future__ import annotations

from tokenpool.cli._app import app, main

__all__ = ["app", "main"]
