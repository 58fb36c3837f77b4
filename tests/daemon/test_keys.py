"""Tenant API keys made, rotated and revoked at run time, beside the file's keys."""

from __future__ import annotations

from typing import Any

import anyio
import grpc
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import refusal
from tokenpool.core import key_digest, new_key

pytestmark = pytest.mark.anyio

ADMIN = new_key()
FILE_KEY = new_key()

CONFIG: dict[str, Any] = {
    "budgets": [{"name": "b", "capacity_tokens": 10_000}],
    "auth": {
        "admin_token_sha256": key_digest(ADMIN),
        "tenant_keys": [{"tenant": "a", "sha256": key_digest(FILE_KEY)}],
    },
}


def _as(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def reserve_as(s: Served, key: str, tenant: str) -> grpc.StatusCode:
    """The outcome of a Reserve made with `key`: OK or the failure's code."""
    request = pb.ReserveRequest(budget="b", tenant=tenant, tokens=10)
    try:
        await s.api.Reserve(request, metadata=_as(key))
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_created_key_works_and_is_stored_only_hashed(
    serve: ServeFactory,
) -> None:
    async with serve(**CONFIG) as s:
        created = await s.admin.CreateKey(
            pb.CreateKeyRequest(tenant="c", label="2026-06"), metadata=_as(ADMIN)
        )
        listed = await s.admin.ListKeys(pb.ListKeysRequest(), metadata=_as(ADMIN))

        assert created.key.startswith("tpk_")
        assert await reserve_as(s, created.key, "c") == grpc.StatusCode.OK
        assert (
            await reserve_as(s, created.key, "a") == grpc.StatusCode.PERMISSION_DENIED
        )
        assert await reserve_as(s, FILE_KEY, "a") == grpc.StatusCode.OK
        assert [(k.tenant, k.source, k.active) for k in listed.keys] == [
            ("a", "file", True),
            ("c", "run-time", True),
        ]
        assert listed.keys[1].fingerprint == key_digest(created.key)[:12]
        assert all(not hasattr(k, "key") for k in listed.keys)
        entries = await s.ledger.entries(kinds=["key"])
        assert [(e.detail["change"], e.actor.split("@")[0]) for e in entries] == [
            ("created", "admin")
        ]
    database = await anyio.Path(s.db_path).read_bytes()
    wal = s.db_path.with_name(s.db_path.name + "-wal")
    if await anyio.Path(wal).exists():
        database += await anyio.Path(wal).read_bytes()
    assert created.key.encode() not in database
    assert key_digest(created.key).encode() in database


async def test_rotation_revokes_the_old_key_unless_kept(serve: ServeFactory) -> None:
    async with serve(**CONFIG) as s:
        first = await s.admin.CreateKey(
            pb.CreateKeyRequest(tenant="c"), metadata=_as(ADMIN)
        )
        kept = await s.admin.RotateKey(
            pb.RotateKeyRequest(key_id=first.info.key_id, keep_old=True),
            metadata=_as(ADMIN),
        )
        assert await reserve_as(s, first.key, "c") == grpc.StatusCode.OK
        assert await reserve_as(s, kept.key, "c") == grpc.StatusCode.OK

        rotated = await s.admin.RotateKey(
            pb.RotateKeyRequest(key_id=kept.info.key_id), metadata=_as(ADMIN)
        )
        revoked = await s.admin.RevokeKey(
            pb.RevokeKeyRequest(key_id=first.info.key_id), metadata=_as(ADMIN)
        )

        assert rotated.replaced.key_id == kept.info.key_id
        assert not rotated.replaced.active and not revoked.active
        assert await reserve_as(s, kept.key, "c") == grpc.StatusCode.UNAUTHENTICATED
        assert await reserve_as(s, first.key, "c") == grpc.StatusCode.UNAUTHENTICATED
        assert await reserve_as(s, rotated.key, "c") == grpc.StatusCode.OK
        again = await refusal(
            s.admin.RevokeKey(
                pb.RevokeKeyRequest(key_id=first.info.key_id), metadata=_as(ADMIN)
            )
        )
        assert again.code == grpc.StatusCode.NOT_FOUND


async def test_keys_and_revocations_survive_a_restart(serve: ServeFactory) -> None:
    async with serve(**CONFIG) as s:
        created = await s.admin.CreateKey(
            pb.CreateKeyRequest(tenant="c"), metadata=_as(ADMIN)
        )
        file_key_id = f"file-{key_digest(FILE_KEY)[:12]}"
        await s.admin.RevokeKey(
            pb.RevokeKeyRequest(key_id=file_key_id), metadata=_as(ADMIN)
        )

    async with serve(**CONFIG) as s:
        assert await reserve_as(s, created.key, "c") == grpc.StatusCode.OK
        assert await reserve_as(s, FILE_KEY, "a") == grpc.StatusCode.UNAUTHENTICATED
        listed = await s.admin.ListKeys(
            pb.ListKeysRequest(tenant="a"), metadata=_as(ADMIN)
        )
        assert [(k.key_id, k.active) for k in listed.keys] == [(file_key_id, False)]


async def test_open_daemon_has_no_keys_to_manage(serve: ServeFactory) -> None:
    async with serve(budgets=CONFIG["budgets"]) as s:
        failed = await refusal(s.admin.CreateKey(pb.CreateKeyRequest(tenant="c")))

        assert failed.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "without access control" in failed.message
