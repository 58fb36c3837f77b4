"""The exceptions tokenpool raises, under one root.

    TokenPoolError
    ├── ConfigError                 the configuration file is invalid
    ├── InvalidFieldError           a request field is malformed
    ├── NotFoundError
    │   ├── UnknownBudgetError
    │   ├── UnknownReservationError
    │   └── UnknownKeyError
    ├── ConflictError               the request contradicts current state
    │   ├── IdempotencyConflictError
    │   ├── ReservationEndedError
    │   ├── NoConfigFileError       a reload with no file to read
    │   └── AccessControlOffError   keys asked of a daemon that runs open
    ├── TenantRefusedError          the tenant may not act here
    ├── NotOwnerError               the reservation is another tenant's
    ├── AccessError
    │   ├── UnauthenticatedError    no valid credentials came with the call
    │   └── AccessDeniedError       the credentials do not allow this call
    ├── RefusalError                not enough tokens for the request
    │   ├── InsufficientTokensError retryable: wait and try again
    │   │   └── PoolPausedError     an operator paused or is draining the pool
    │   └── RequestTooLargeError    never grantable as asked
    ├── LedgerError
    │   ├── LedgerUnavailableError  the ledger cannot be written now
    │   ├── LedgerInUseError        another process owns the ledger file
    │   └── LedgerSchemaError       the database is from a newer tokenpool
    └── ShuttingDownError           the daemon is draining

The service layer maps each class to one gRPC status code.
"""

from __future__ import annotations


class TokenPoolError(Exception):
    """Root of every error tokenpool raises on purpose."""


class ConfigError(TokenPoolError):
    """Raised when a configuration file cannot be read or is invalid."""


class InvalidFieldError(TokenPoolError):
    """Raised when a request field is malformed or out of its range."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"Invalid {field}: {reason}")
        self.field = field
        self.reason = reason


class NotFoundError(TokenPoolError):
    """Raised when a request names something the daemon does not know."""


class UnknownBudgetError(NotFoundError):
    """Raised when a request names a budget that is not configured."""

    def __init__(self, budget: str, known: list[str]) -> None:
        super().__init__(
            f"Unknown budget {budget!r}; configured budgets: {', '.join(known)}."
        )
        self.budget = budget


class UnknownTeamError(NotFoundError):
    """Raised when a request names a team that is not configured."""

    def __init__(self, team: str) -> None:
        super().__init__(
            f"Unknown team {team!r}; teams are declared under [[teams]] in the "
            "configuration."
        )
        self.team = team


class UnknownReservationError(NotFoundError):
    """Raised when a reservation id is unknown to the daemon."""

    def __init__(self, reservation_id: str) -> None:
        super().__init__(
            f"Unknown reservation_id {reservation_id[:64]!r}; use the id Reserve "
            "returned."
        )
        self.reservation_id = reservation_id


class UnknownKeyError(NotFoundError):
    """Raised when a key id names no tenant API key."""

    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"Unknown key_id {key_id[:64]!r}; 'tokenpool keys list' shows the keys."
        )
        self.key_id = key_id


class ConflictError(TokenPoolError):
    """Raised when a request contradicts what already happened."""


class IdempotencyConflictError(ConflictError):
    """Raised when an idempotency key is reused with different fields."""

    def __init__(self, key: str, what: str) -> None:
        super().__init__(
            f"idempotency_key {key!r} was already used for a {what} with "
            "different fields; use a new key for a new request."
        )
        self.key = key


class ReservationEndedError(ConflictError):
    """Raised when a reservation has already been settled, released or expired."""

    def __init__(self, reservation_id: str, state: str, detail: str = "") -> None:
        message = f"Reservation {reservation_id!r} is already {state}"
        super().__init__(message + (f"; {detail}" if detail else "."))
        self.reservation_id = reservation_id
        self.state = state


class NoConfigFileError(ConflictError):
    """Raised when a reload is asked of a daemon started without a file."""

    def __init__(self) -> None:
        super().__init__(
            "The daemon was started without --config, so there is no file to "
            "reload; restart it with --config FILE."
        )


class AccessControlOffError(ConflictError):
    """Raised when tenant keys are managed on a daemon without an admin token."""

    def __init__(self) -> None:
        super().__init__(
            "This daemon runs without access control (no admin token is "
            "configured), so it has no keys to manage; set auth.admin_token_file "
            "and restart it first."
        )


class TenantRefusedError(TokenPoolError):
    """Raised when a tenant is not admitted by the budget's configuration."""

    def __init__(self, tenant: str, budget: str) -> None:
        super().__init__(
            f"Tenant {tenant!r} is not configured and budget {budget!r} refuses "
            "unknown tenants; add it under [[tenants]]."
        )
        self.tenant = tenant


class NotOwnerError(TokenPoolError):
    """Raised when a tenant names a reservation that another tenant holds."""

    def __init__(self, reservation_id: str, tenant: str) -> None:
        super().__init__(
            f"Reservation {reservation_id!r} is not held by tenant {tenant!r}; "
            "a tenant may only settle, release or extend its own reservations."
        )
        self.reservation_id = reservation_id
        self.tenant = tenant


class AccessError(TokenPoolError):
    """Raised when a call's credentials do not let it through (SPEC 8)."""


class UnauthenticatedError(AccessError):
    """Raised when a call carries no credentials, or ones the daemon does not know.

    The message never repeats what the caller sent: it may be a secret.
    """


class AccessDeniedError(AccessError):
    """Raised when known credentials do not allow a call: not admin, not this tenant."""

    def __init__(self, message: str, *, rpc: str, tenant: str | None) -> None:
        super().__init__(message)
        self.rpc = rpc
        self.tenant = tenant


class RefusalError(TokenPoolError):
    """Raised when a reservation cannot be granted; it holds nothing.

    Attributes say which limit ran out (`reason`), for which pool, when a
    retry may succeed (`retry_after_ns`, None when no wait helps), and the
    largest request that could be granted now.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        budget: str,
        pool: str,
        requested: int,
        largest_grantable: int,
        retry_after_ns: int | None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.budget = budget
        self.pool = pool
        self.requested = requested
        self.largest_grantable = largest_grantable
        self.retry_after_ns = retry_after_ns


class InsufficientTokensError(RefusalError):
    """Raised when the tokens are not there now; a later retry may succeed."""


class PoolPausedError(InsufficientTokensError):
    """Raised when an operator paused or is draining the pool a request needs.

    Its `reason` is POOL_PAUSED or POOL_DRAINING; `state` is the pool's
    state ("paused" or "draining").
    """

    def __init__(
        self,
        *,
        reason: str,
        state: str,
        budget: str,
        pool: str,
        requested: int,
        retry_after_ns: int,
    ) -> None:
        what = (
            "is being drained by an operator: new and waiting requests are "
            "refused while open reservations finish"
            if state == "draining"
            else "was paused by an operator and grants nothing until it is resumed"
        )
        super().__init__(
            f"Pool {str(pool)!r} of budget {budget!r} {what}; retry later, use a "
            "fallback budget, or ask the operator to resume it.",
            reason=reason,
            budget=budget,
            pool=pool,
            requested=requested,
            largest_grantable=0,
            retry_after_ns=retry_after_ns,
        )
        self.state = state


class RequestTooLargeError(RefusalError):
    """Raised when a request exceeds what the budget could ever grant it."""


class LedgerError(TokenPoolError):
    """Raised when the ledger database fails."""


class LedgerUnavailableError(LedgerError):
    """Raised when the ledger cannot commit; the operation was not applied."""


class LedgerInUseError(LedgerError):
    """Raised when another process already owns the ledger file."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"The ledger {path!r} is in use by another tokenpool process; stop "
            "that process or set another ledger.path."
        )
        self.path = path


class LedgerSchemaError(LedgerError):
    """Raised when the database was written by a newer tokenpool."""


class ShuttingDownError(TokenPoolError):
    """Raised when new work arrives while the daemon is draining."""

    def __init__(self) -> None:
        super().__init__("The daemon is shutting down; retry against another one.")
