"""Access rules of SPEC 8: who a bearer credential is, and what it may do.

Tenant API keys and the admin token are long random strings, so they are
kept and compared as SHA-256 digests: a slow password hash (scrypt, argon2)
protects guessable secrets, and a 256-bit random key is not guessable, while
a fast digest lets every RPC be checked in about a microsecond. Digests are
compared with `hmac.compare_digest`. A tenant key is found by its digest
first; the timing of that lookup reveals at most something about the digest
of what the caller sent, which the caller can compute anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tokenpool._errors import AccessDeniedError, UnauthenticatedError

# Prefix of the keys `new_key` makes, so that a leaked one is recognisable.
KEY_PREFIX = "tpk_"

# Random bytes in a new key: 256 bits, far past any guessing.
_KEY_BYTES = 32

# The scheme of the `authorization` metadata (RFC 6750), compared without case.
_BEARER = "bearer"

_MISSING = (
    "This daemon requires credentials; send the metadata 'authorization: "
    "Bearer <key>' with a tenant API key or the admin token."
)
_UNKNOWN = (
    "The bearer credential is neither a known tenant API key nor the admin "
    "token; check the key (it may have been rotated or revoked)."
)
_MALFORMED = (
    "The authorization metadata must read 'Bearer <key>'; send a tenant API "
    "key or the admin token that way."
)


def new_key() -> str:
    """A fresh random API key or admin token (shown once, stored only hashed)."""
    return KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)


def key_digest(key: str) -> str:
    """The SHA-256 hex digest under which a key or token is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a call comes from: the admin, or one tenant's API key."""

    tenant: str | None = None
    """The tenant a key belongs to; None for the admin."""

    @property
    def admin(self) -> bool:
        """Whether the admin token was sent (it may do everything)."""
        return self.tenant is None

    def require_admin(self, rpc: str) -> None:
        """Refuses a tenant key on an admin call."""
        if self.tenant is not None:
            raise AccessDeniedError(
                f"{rpc} is an admin call and needs the admin token; the API key of "
                f"tenant {self.tenant!r} may not make it.",
                rpc=rpc,
                tenant=self.tenant,
            )

    def require_tenant(self, rpc: str, tenant: str) -> None:
        """Refuses a tenant key that names another tenant in its request."""
        if self.tenant is not None and self.tenant != tenant:
            raise AccessDeniedError(
                f"The API key belongs to tenant {self.tenant!r}, but the {rpc} "
                f"request names tenant {tenant[:64]!r}; a tenant may act only as "
                "itself.",
                rpc=rpc,
                tenant=self.tenant,
            )


ADMIN = Identity()


class Credentials:
    """The admin token's digest and each tenant key's, checked per call.

    Args:
        admin_digest: SHA-256 hex digest of the admin token; None when no
            admin token is configured (admin calls are then refused).
        tenant_keys: (tenant, digest) pairs; a tenant may have several keys
            at once, so that one can be rotated without a gap.
    """

    def __init__(
        self,
        admin_digest: str | None,
        tenant_keys: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._admin = None if admin_digest is None else bytes.fromhex(admin_digest)
        self._tenants: Mapping[bytes, tuple[bytes, str]] = {}
        self.set_tenant_keys(tenant_keys)

    def set_tenant_keys(self, tenant_keys: Iterable[tuple[str, str]]) -> None:
        """Replaces the tenant keys at once (keys made or revoked at run time).

        The new map is built aside and swapped in, so a call checked meanwhile
        sees either the old keys or the new ones, never half of each.
        """
        self._tenants = {
            bytes.fromhex(digest): (bytes.fromhex(digest), tenant)
            for tenant, digest in tenant_keys
        }

    @property
    def has_admin(self) -> bool:
        """Whether an admin token is configured."""
        return self._admin is not None

    @property
    def tenant_key_count(self) -> int:
        """How many tenant keys are configured."""
        return len(self._tenants)

    def identify(self, authorization: str | None) -> Identity:
        """Who sent `authorization` ('Bearer <key>'), or why nobody known did.

        Raises:
            UnauthenticatedError: nothing was sent, it is not a bearer
                credential, or it is neither a known key nor the admin token.
        """
        if not authorization:
            raise UnauthenticatedError(_MISSING)
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != _BEARER or not key:
            raise UnauthenticatedError(_MALFORMED)

        digest = hashlib.sha256(key.encode()).digest()
        if self._admin is not None and hmac.compare_digest(digest, self._admin):
            return ADMIN
        stored, tenant = self._tenants.get(digest, (b"", ""))
        if not hmac.compare_digest(digest, stored):
            raise UnauthenticatedError(_UNKNOWN)
        return Identity(tenant)
