"""Access settings: the admin token, tenant API keys and TLS certificate files."""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from pathlib import Path

import grpc
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from tokenpool._errors import ConfigError
from tokenpool.core import Credentials, key_digest

logger = logging.getLogger(__name__)

# A SHA-256 digest written as hex, as `tokenpool` prints it for a new key.
_DIGEST_PATTERN = r"^[0-9a-fA-F]{64}$"

# Host names that always mean this machine only.
_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def is_loopback(address: str) -> bool:
    """Whether host:port only accepts connections from this machine."""
    host = address.rsplit(":", 1)[0].strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        # Any other name may resolve to a public interface.
        return False


class TenantKey(BaseModel):
    """One tenant API key, known only by its SHA-256 digest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str = Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")
    """The tenant the key identifies; a call made with it acts only as this one."""
    sha256: str = Field(pattern=_DIGEST_PATTERN)
    """Hex SHA-256 digest of the key; the key itself is never configured."""
    label: str = Field("", max_length=256)
    """Which key this is (say "2026-06"), so that rotations can be told apart."""


class AuthSettings(BaseModel):
    """Who may call: the admin token and the tenants' API keys (SPEC 8).

    With none of these set and the daemon on loopback only, it runs open.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    admin_token_file: Path | None = None
    """File holding the admin token (its first line); read at start."""
    admin_token_sha256: str | None = Field(None, pattern=_DIGEST_PATTERN)
    """Hex SHA-256 digest of the admin token, instead of the file."""
    admin_token: SecretStr | None = None
    """The admin token itself; from TOKENPOOL_AUTH__ADMIN_TOKEN only."""
    tenant_keys: list[TenantKey] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_admin_token(self) -> AuthSettings:
        given = [
            name
            for name in ("admin_token_file", "admin_token_sha256", "admin_token")
            if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise ValueError(
                f"set one of {', '.join(given)}, not several: they all name the "
                "admin token"
            )
        return self

    @property
    def configured(self) -> bool:
        """Whether any credential is configured (the daemon is then closed)."""
        return bool(
            self.admin_token_file
            or self.admin_token_sha256
            or self.admin_token
            or self.tenant_keys
        )

    def _to_credentials(self) -> Credentials:
        """The digests the service checks calls against; reads the token file.

        Raises:
            ConfigError: the admin token file cannot be read or is empty.
        """
        admin = self.admin_token_sha256
        if self.admin_token is not None:
            admin = key_digest(self.admin_token.get_secret_value())
        if self.admin_token_file is not None:
            admin = key_digest(_read_token(self.admin_token_file))
        return Credentials(
            admin and admin.lower(),
            [(key.tenant, key.sha256.lower()) for key in self.tenant_keys],
        )


def _read_token(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"Cannot read auth.admin_token_file {str(path)!r} ({exc}); point it at "
            "a readable file holding the admin token."
        ) from exc
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not token:
        raise ConfigError(
            f"auth.admin_token_file {str(path)!r} is empty; write the admin token "
            "in it."
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "admin token file is readable by others path=%s mode=%s",
            path,
            oct(stat.S_IMODE(mode)),
        )
    return token


class TlsSettings(BaseModel):
    """TLS, and mutual TLS, from PEM certificate files (`[server.tls]`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cert_file: Path
    """The server's certificate chain (PEM)."""
    key_file: Path
    """The server certificate's private key (PEM)."""
    client_ca_file: Path | None = None
    """CA certificates (PEM) that client certificates are checked against."""
    require_client_cert: bool = False
    """Refuse connections without a client certificate signed by client_ca_file."""

    @model_validator(mode="after")
    def _ca_for_client_certs(self) -> TlsSettings:
        if self.require_client_cert and self.client_ca_file is None:
            raise ValueError(
                "require_client_cert needs client_ca_file, the CA that signs the "
                "client certificates"
            )
        return self

    def _to_server_credentials(self) -> grpc.ServerCredentials:
        """The gRPC server credentials the files make.

        Raises:
            ConfigError: a file cannot be read.
        """
        key = _read_pem("key_file", self.key_file)
        chain = _read_pem("cert_file", self.cert_file)
        ca = None
        if self.client_ca_file is not None:
            ca = _read_pem("client_ca_file", self.client_ca_file)
        return grpc.ssl_server_credentials(
            [(key, chain)],
            root_certificates=ca,
            require_client_auth=self.require_client_cert,
        )


def _read_pem(field: str, path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"Cannot read server.tls.{field} {os.fspath(path)!r} ({exc}); point it "
            "at a readable PEM file."
        ) from exc
    if b"-----BEGIN" not in data:
        raise ConfigError(
            f"server.tls.{field} {os.fspath(path)!r} is not a PEM file; give the "
            "certificate or key in PEM form."
        )
    return data
