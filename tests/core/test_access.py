"""Keys kept as digests, and who a bearer credential is."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tokenpool import AccessDeniedError, UnauthenticatedError
from tokenpool.core import ADMIN, KEY_PREFIX, Credentials, Identity, key_digest, new_key

ADMIN_TOKEN = "admin-secret-token"
KEY_A = "tpk_key-of-tenant-a"
KEY_A2 = "tpk_rotated-key-of-tenant-a"


def _raw(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _credentials(admin: bool = True) -> Credentials:
    return Credentials(
        key_digest(ADMIN_TOKEN) if admin else None,
        [("a", key_digest(KEY_A)), ("a", key_digest(KEY_A2)), ("b", key_digest("kb"))],
    )


def test_digest_is_sha256_hex() -> None:
    assert key_digest("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_new_keys_are_long_random_and_prefixed() -> None:
    keys = {new_key() for _ in range(100)}

    assert len(keys) == 100
    assert all(k.startswith(KEY_PREFIX) and len(k) >= 40 for k in keys)


def test_admin_token_and_tenant_keys_identify_their_holders() -> None:
    credentials = _credentials()

    assert credentials.identify(f"Bearer {ADMIN_TOKEN}") == ADMIN
    assert credentials.identify(f"bearer {KEY_A}") == Identity("a")
    # Both keys of a tenant work, so one can be rotated without a gap.
    assert credentials.identify(f"Bearer {KEY_A2}") == Identity("a")
    assert credentials.identify("Bearer kb") == Identity("b")


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (None, "requires credentials"),
        ("", "requires credentials"),
        (f"Basic {KEY_A}", "must read 'Bearer <key>'"),
        ("Bearer ", "must read 'Bearer <key>'"),
        ("Bearer tpk_not-a-key", "neither a known tenant API key"),
    ],
)
def test_unknown_or_missing_credentials_are_refused(
    header: str | None, match: str
) -> None:
    with pytest.raises(UnauthenticatedError, match=match) as refused:
        _credentials().identify(header)

    # What the caller sent is never repeated: it may be a secret.
    assert "tpk_" not in str(refused.value)


def test_without_admin_token_no_credential_is_admin() -> None:
    with pytest.raises(UnauthenticatedError):
        _credentials(admin=False).identify(f"Bearer {ADMIN_TOKEN}")


def test_a_tenant_key_may_act_only_as_its_tenant() -> None:
    tenant = Identity("a")

    tenant.require_tenant("Reserve", "a")
    ADMIN.require_tenant("Reserve", "anyone")
    ADMIN.require_admin("SetCapacity")
    with pytest.raises(
        AccessDeniedError, match=r"belongs to tenant 'a'.*names tenant 'b'"
    ):
        tenant.require_tenant("Reserve", "b")
    with pytest.raises(AccessDeniedError, match="SetCapacity is an admin call"):
        tenant.require_admin("SetCapacity")


def test_every_check_goes_through_compare_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    credentials = _credentials()

    assert credentials.identify(f"Bearer {ADMIN_TOKEN}") == ADMIN
    assert compared == [(_raw(ADMIN_TOKEN), _raw(ADMIN_TOKEN))]
    compared.clear()
    assert credentials.identify(f"Bearer {KEY_A}") == Identity("a")
    # Checked against the admin token first, then against its own stored digest.
    assert compared == [(_raw(KEY_A), _raw(ADMIN_TOKEN)), (_raw(KEY_A), _raw(KEY_A))]
    compared.clear()
    with pytest.raises(UnauthenticatedError):
        credentials.identify("Bearer tpk_not-a-key")
    # An unknown key is compared too, against nothing, so it takes the same path.
    assert compared[-1] == (_raw("tpk_not-a-key"), b"")


def test_a_refusing_comparison_refuses_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # If identify compared with == anywhere, a comparison that always says
    # "different" would not stop a correct key.
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: False)

    with pytest.raises(UnauthenticatedError):
        _credentials().identify(f"Bearer {ADMIN_TOKEN}")
    with pytest.raises(UnauthenticatedError):
        _credentials().identify(f"Bearer {KEY_A}")
