"""Runs the CLI as `python -m tokenpool`."""

from __future__ import annotations

from tokenpool.cli import main

main()
