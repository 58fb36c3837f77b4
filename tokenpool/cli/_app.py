"""The `tokenpool` command: serve, replay and --version; the rest register here."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import anyio
import typer
from rich.console import Console

from tokenpool import __version__
from tokenpool._errors import TokenPoolError

if TYPE_CHECKING:
    from tokenpool.daemon import Settings

app = typer.Typer(
    name="tokenpool",
    help="Token budget scheduler for services that call paid LLM APIs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_stderr = Console(stderr=True)

# Columns of `status` output when stdout is not a terminal.
_PIPED_WIDTH = 140

# Environment variable holding the bearer token of client commands.
_TOKEN_ENV = "TOKENPOOL_TOKEN"

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML configuration file; embedded defaults when omitted.",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]
LogFormat = Annotated[
    str,
    typer.Option("--log-format", help="Log lines as 'text' or 'json'."),
]
MetricsAddress = Annotated[
    str | None,
    typer.Option(
        "--metrics-address",
        help="host:port of the Prometheus endpoint (/metrics); overrides "
        "telemetry.metrics_address.",
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tokenpool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Token budget scheduler for services that call paid LLM APIs."""


def _fail(error: Exception) -> typer.Exit:
    # Not wrapped: a log collector or a test reads the line whole.
    _stderr.print(f"[red]{type(error).__name__}:[/red] {error}", soft_wrap=True)
    return typer.Exit(code=1)


def _first(group: BaseExceptionGroup[TokenPoolError]) -> TokenPoolError:
    """The first of our errors in a (nested) exception group from a task group."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, TokenPoolError)
    return error


# Levels --log-level takes, as the logging module names them.
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(value: str) -> str:
    """A --log-level value, upper-cased; anything else is a usage error."""
    level = value.strip().upper()
    if level not in _LOG_LEVELS:
        raise typer.BadParameter(
            f"{value!r} is not one of {', '.join(_LOG_LEVELS)}",
            param_hint="--log-level",
        )
    return level


LogLevel = Annotated[
    str,
    typer.Option(help="DEBUG, INFO, WARNING or ERROR.", callback=_log_level),
]


def _log_format(value: str) -> Literal["text", "json"]:
    if value not in ("text", "json"):
        raise typer.BadParameter("must be 'text' or 'json'", param_hint="--log-format")
    return "json" if value == "json" else "text"


@app.command()
def serve(
    config: ConfigOption = None,
    log_level: LogLevel = "INFO",
    log_format: LogFormat = "text",
    metrics_address: MetricsAddress = None,
) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    from tokenpool.daemon import Daemon, load_settings
    from tokenpool.telemetry import configure_logging

    configure_logging(log_level, _log_format(log_format))
    try:
        settings = load_settings(config)
        if metrics_address is not None:
            settings = _with_metrics_address(settings, metrics_address)
        daemon = Daemon(settings, config_path=config)
        anyio.run(daemon.serve_forever, backend_options=_loop_options())
    except TokenPoolError as exc:
        raise _fail(exc) from None
    except BaseExceptionGroup as group:
        ours = group.subgroup(TokenPoolError)
        if ours is None:
            raise
        raise _fail(_first(ours)) from None


def _with_metrics_address(settings: Settings, address: str) -> Settings:
    """The settings with the Prometheus endpoint the command line names."""
    from pydantic import ValidationError

    data = {**settings.telemetry.model_dump(), "metrics_address": address}
    try:
        telemetry = type(settings.telemetry).model_validate(data)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise typer.BadParameter(reason, param_hint="--metrics-address") from exc
    return settings.model_copy(update={"telemetry": telemetry})


def _token(token_file: Path | None) -> str | None:
    """The bearer token: from --token-file, else the environment, else none.

    Never a command-line argument, where other users of the machine see it.
    """
    if token_file is not None:
        token = token_file.read_text(encoding="utf-8").strip()
        if not token:
            raise typer.BadParameter("the file is empty", param_hint="--token-file")
        return token.splitlines()[0].strip()
    return os.environ.get(_TOKEN_ENV) or None


def _loop_options() -> dict[str, object]:
    """Uses uvloop when it is installed; plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is an optional extra
        return {}
    return {"loop_factory": uvloop.new_event_loop}


def main() -> None:
    """Entry point of the `tokenpool` script."""
    # Importing them registers their commands.
    from tokenpool.cli import _admin, _ledger, _replay  # noqa: F401

    sys.exit(app())
