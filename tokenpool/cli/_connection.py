"""How the admin commands reach a daemon: options, channel, credentials, output.

Every client command takes the same connection options (`--address`,
`--token-file`, `--tls*`), added by `@connected` so that they are declared
once. Calls go over gRPC only, like any client's (ARCHITECTURE.md); the
bearer token comes from `--token-file` or `TOKENPOOL_TOKEN`, never from the
command line, and the operator's login name travels as a claim the ledger
keeps beside the credential that was checked.
"""

from __future__ import annotations

import functools
import getpass
import inspect
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import grpc
import typer
from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from tokenpool_client import error_from_rpc
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tokenpool.cli._app import _fail, _token

# Where a daemon listens unless told otherwise.
DEFAULT_ADDRESS = "127.0.0.1:50051"

# Seconds an admin call may take before the command gives up.
CALL_TIMEOUT_S = 30.0

# Columns of tables when stdout is not a terminal: every figure stays whole.
PIPED_WIDTH = 140

# Metadata naming the operator (see tokenpool.service._actor).
_OPERATOR_METADATA = "tokenpool-operator"

_F = TypeVar("_F", bound=Callable[..., Any])


def _pem(help_text: str, envvar: str) -> Any:
    return typer.Option(
        help=help_text, envvar=envvar, exists=True, dir_okay=False, readable=True
    )


# The options every connected command gets, as (name, annotation, default).
_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    (
        "address",
        Annotated[
            str,
            typer.Option(
                "--address",
                "-a",
                envvar="TOKENPOOL_ADDRESS",
                help="Daemon address, host:port.",
            ),
        ],
        DEFAULT_ADDRESS,
    ),
    (
        "token_file",
        Annotated[
            Path | None,
            typer.Option(
                help="File holding the admin token or an API key (or set "
                "TOKENPOOL_TOKEN).",
                envvar="TOKENPOOL_TOKEN_FILE",
                exists=True,
                dir_okay=False,
                readable=True,
            ),
        ],
        None,
    ),
    (
        "tls",
        Annotated[
            bool,
            typer.Option(
                "--tls",
                envvar="TOKENPOOL_TLS",
                help="Connect over TLS (system CA roots).",
            ),
        ],
        False,
    ),
    (
        "tls_ca",
        Annotated[Path | None, _pem("CA to trust; implies --tls.", "TOKENPOOL_TLS_CA")],
        None,
    ),
    (
        "tls_cert",
        Annotated[
            Path | None,
            _pem("Client certificate, for mutual TLS.", "TOKENPOOL_TLS_CERT"),
        ],
        None,
    ),
    (
        "tls_key",
        Annotated[Path | None, _pem("Private key of --tls-cert.", "TOKENPOOL_TLS_KEY")],
        None,
    ),
    (
        "tls_server_name",
        Annotated[
            str | None,
            typer.Option(
                envvar="TOKENPOOL_TLS_SERVER_NAME",
                help="Name the server certificate carries, if not the host.",
            ),
        ],
        None,
    ),
)


@dataclass(frozen=True, slots=True)
class Target:
    """A daemon to call, and how: address, bearer token, TLS."""

    address: str
    token: str | None
    credentials: grpc.ChannelCredentials | None
    server_name: str | None

    @contextmanager
    def admin(self) -> Iterator[AdminCalls]:
        """An Admin stub over a fresh channel; the channel closes after."""
        with self.channel() as channel:
            # The generated stub has no annotations.
            stub = pb_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
            yield AdminCalls(stub, self._metadata())

    @contextmanager
    def api(self) -> Iterator[AdminCalls]:
        """A TokenPool stub (status reads), called like the Admin one."""
        with self.channel() as channel:
            stub = pb_grpc.TokenPoolStub(channel)  # type: ignore[no-untyped-call]
            yield AdminCalls(stub, self._metadata())

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        metadata = [(_OPERATOR_METADATA, _operator())]
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        return tuple(metadata)

    @contextmanager
    def channel(self) -> Iterator[grpc.Channel]:
        """A fresh channel to the daemon, TLS as configured; closed after."""
        options = []
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        if self.credentials is None:
            channel = grpc.insecure_channel(self.address, options=options)
        else:
            channel = grpc.secure_channel(self.address, self.credentials, options)
        with channel:
            yield channel


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class AdminCalls:
    """Calls one stub's RPCs with the target's metadata; failures end the command."""

    def __init__(self, stub: Any, metadata: Sequence[tuple[str, str]]) -> None:
        self._stub = stub
        self._metadata = tuple(metadata)

    def __call__(self, rpc: str, request: Message) -> Any:
        """Sends one call; a refusal prints its class and message and exits 1."""
        method = getattr(self._stub, rpc)
        try:
            return method(request, metadata=self._metadata, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise _fail(error_from_rpc(exc)) from None


def connected(command: _F) -> _F:
    """Adds the connection options to a command; it receives them as `target`."""
    # Evaluated here: typer reads a __signature__ as it is, strings and all.
    signature = inspect.signature(command, eval_str=True)
    kept = [p for p in signature.parameters.values() if p.name != "target"]
    added = [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
        )
        for name, annotation, default in _OPTIONS
    ]

    @functools.wraps(command)
    def run(**options: Any) -> Any:
        connection = {name: options.pop(name) for name, _, _ in _OPTIONS}
        return command(target=_target(**connection), **options)

    merged = signature.replace(parameters=[*kept, *added])
    run.__signature__ = merged  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]


def _target(
    *,
    address: str,
    token_file: Path | None,
    tls: bool,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_server_name: str | None,
) -> Target:
    from tokenpool_client import tls_credentials

    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter(
            "give both or neither", param_hint="--tls-cert/--tls-key"
        )
    credentials = None
    if tls or tls_ca or tls_cert:
        credentials = tls_credentials(tls_ca, tls_cert, tls_key)
    return Target(address, _token(token_file), credentials, tls_server_name)


def console() -> Console:
    """Standard output as rich sees it; piped output is not cut."""
    return Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)


def as_dict(message: Message) -> dict[str, Any]:
    """A response as JSON-ready data: the proto's field names, numbers as numbers.

    Timestamps become ISO 8601 UTC strings; an unset optional field is None;
    an enum is its value's name in lower case, without the enum's prefix
    (`POOL_STATE_PAUSED` is "paused").
    """
    data: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.has_presence and not message.HasField(field.name):
            data[field.name] = None
        elif (
            field.message_type is not None and field.message_type.GetOptions().map_entry
        ):
            data[field.name] = {key: _value(item) for key, item in value.items()}
        elif field.is_repeated:
            data[field.name] = [_value(item) for item in value]
        elif field.enum_type is not None:
            data[field.name] = enum_name(field.enum_type, value)
        else:
            data[field.name] = _value(value)
    return data


def enum_name(enum: EnumDescriptor, number: int) -> str:
    """An enum value's name in lower case, without its enum's common prefix."""
    words = [str(value.name).split("_") for value in enum.values]
    shared = 0
    while len(words) > 1 and all(
        len(name) > shared + 1 and name[shared] == words[0][shared] for name in words
    ):
        shared += 1
    found = enum.values_by_number.get(number)
    if found is None:
        return str(number)
    return "_".join(str(found.name).split("_")[shared:]).lower()


def _value(value: Any) -> Any:
    if isinstance(value, Timestamp):
        if not value.seconds and not value.nanos:
            return None
        at = datetime.fromtimestamp(value.ToNanoseconds() / 1e9, UTC)
        return at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, Message):
        return as_dict(value)
    return value


def print_json(data: object) -> None:
    """Prints data as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, sort_keys=False))


def output_format(value: str, allowed: tuple[str, ...], hint: str = "--format") -> str:
    """Checks a --format value against the ones a command offers."""
    value = value.strip().lower()
    if value not in allowed:
        raise typer.BadParameter(
            f"must be one of {', '.join(allowed)}", param_hint=hint
        )
    return value


FormatOption = Annotated[
    str, typer.Option("--format", "-f", help="Output: table or json.")
]


# The --format values of the commands that print a table or JSON.
_TABLE_JSON = ("table", "json")


def _when(stamp: Timestamp) -> str:
    """A timestamp as UTC date and time, or "-" when it is unset."""
    if not stamp.seconds and not stamp.nanos:
        return "-"
    at = datetime.fromtimestamp(stamp.ToNanoseconds() / 1e9, UTC)
    return at.strftime("%Y-%m-%d %H:%M:%SZ")
