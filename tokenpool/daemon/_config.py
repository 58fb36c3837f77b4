"""The daemon's configuration: a TOML file over embedded defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from tokenpool._errors import ConfigError
from tokenpool.core import (
    BudgetPolicy,
    CalendarPeriods,
    InputLimits,
    ModelPrice,
    TeamPolicy,
    TenantPolicy,
)
from tokenpool.daemon._access import AuthSettings, TlsSettings, is_loopback
from tokenpool.telemetry import HookSettings, TelemetrySettings

# Where the daemon listens when nothing says otherwise: loopback only.
DEFAULT_ADDRESS = "127.0.0.1:50051"

# The ledger file when nothing says otherwise, relative to the working folder.
DEFAULT_LEDGER_PATH = "tokenpool.db"

# Largest TCP port number.
_MAX_PORT = 65_535

# Capacity per window of the embedded `default` budget.
DEFAULT_CAPACITY_TOKENS = 600_000


class ServerSettings(BaseModel):
    """Where the daemon listens and how it stops."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = Field(DEFAULT_ADDRESS, min_length=3)
    """host:port to listen on; port 0 picks a free one."""

    @field_validator("address")
    @classmethod
    def _host_and_port(cls, address: str) -> str:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= _MAX_PORT:
            raise ValueError(
                f"{address!r} is not host:port with a port from 0 to {_MAX_PORT} "
                "(e.g. 127.0.0.1:50051, [::1]:50051)"
            )
        return address

    grace_seconds: float = Field(10.0, ge=0, le=600)
    """How long in-flight RPCs may run after a stop signal."""
    tls: TlsSettings | None = None
    """TLS or mutual TLS from certificate files; plaintext when absent."""


class LedgerSettings(BaseModel):
    """Where the ledger lives and how hard it tries to keep it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = DEFAULT_LEDGER_PATH
    """SQLite file; created on first start."""
    durability: Literal["normal", "power"] = "normal"
    """normal survives the daemon being killed; power also a power loss."""
    timeout_ms: int = Field(5000, ge=1, le=600_000)
    """Longest a write waits on a database lock."""
    retention_days: int | None = Field(None, ge=1, le=36_500)
    """Entries older than this many days are rolled up into per-day summaries
    (per kind, budget, tenant and pool) and removed; unset, the default, keeps
    every entry. Reports and totals read the summaries, so they do not change;
    reservations, pools and refusal counts are kept either way."""


def _default_budgets() -> list[BudgetPolicy]:
    return [BudgetPolicy(name="default", capacity_tokens=DEFAULT_CAPACITY_TOKENS)]


class Settings(BaseSettings):
    """Everything the daemon is configured with, validated at start."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix="TOKENPOOL_",
        env_nested_delimiter="__",
    )

    server: ServerSettings = ServerSettings()
    ledger: LedgerSettings = LedgerSettings()
    auth: AuthSettings = AuthSettings()
    """The admin token and tenant API keys; none means open, on loopback only."""
    telemetry: TelemetrySettings = TelemetrySettings()
    """Traces, metrics and the Prometheus endpoint; off unless configured."""
    hook: HookSettings = HookSettings()
    """The operator hook told about alerts and budget changes."""
    limits: InputLimits = InputLimits()
    budgets: list[BudgetPolicy] = Field(default_factory=_default_budgets, min_length=1)
    tenants: list[TenantPolicy] = Field(default_factory=list)
    teams: list[TeamPolicy] = Field(default_factory=list)
    prices: list[ModelPrice] = Field(default_factory=list)
    """USD per million tokens per model; a "default" entry prices the rest."""
    calendar_timezone: str = "UTC"
    """Where calendar days and months of daily and monthly budgets begin."""

    @field_validator("calendar_timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        CalendarPeriods(name)
        return name

    @model_validator(mode="after")
    def _credentials_beyond_loopback(self) -> Settings:
        address = self.server.address
        if not is_loopback(address) and not self.auth.configured:
            raise ValueError(
                f"server.address {address!r} listens beyond loopback, but no "
                "credentials are configured; set auth.admin_token_file (or "
                "auth.admin_token_sha256, or TOKENPOOL_AUTH__ADMIN_TOKEN) and/or "
                "[[auth.tenant_keys]], or listen on 127.0.0.1"
            )
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        for kind, names in (
            ("budgets", [b.name for b in self.budgets]),
            ("tenants", [t.name for t in self.tenants]),
            ("teams", [t.name for t in self.teams]),
            ("prices", [p.model for p in self.prices]),
        ):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise ValueError(f"{kind}: name {name!r} appears twice")
                seen.add(name)
        teams = {team.name for team in self.teams}
        for tenant in self.tenants:
            if tenant.team is not None and tenant.team not in teams:
                raise ValueError(
                    f"tenant {tenant.name!r} names team {tenant.team!r}, which "
                    "is not configured; add it under [[teams]]"
                )
        return self


def load_settings(path: Path | None) -> Settings:
    """Reads and validates a TOML file; None gives the embedded defaults.

    Raises:
        ConfigError: the file is missing, not TOML, or fails validation; the
            message names each offending field.
    """
    data: dict[str, object] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"Cannot read config file {str(path)!r}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"Config file {str(path)!r} is not valid TOML: {exc}"
            ) from exc

    auth = data.get("auth")
    if isinstance(auth, dict) and "admin_token" in auth:
        raise ConfigError(
            f"Config file {str(path)!r} holds auth.admin_token: a secret does not "
            "belong in the file; use auth.admin_token_file, auth.admin_token_sha256 "
            "or the TOKENPOOL_AUTH__ADMIN_TOKEN environment variable."
        )

    try:
        return Settings(**data)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{_location(error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        where = f"config file {str(path)!r}" if path else "configuration"
        raise ConfigError(
            f"Invalid {where} (TOKENPOOL_* environment included): {problems}"
        ) from exc


def _location(loc: tuple[int | str, ...]) -> str:
    """A validation error's place in the file, as dotted keys (budgets.0.name)."""
    return ".".join(str(part) for part in loc) or "(file)"
