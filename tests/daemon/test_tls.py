"""TLS and mutual TLS with certificates made in the test; secrets never logged."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from tokenpool_client import Client, UnauthenticatedError, tls_credentials
from tokenpool_client.v1 import tokenpool_pb2 as pb
from tokenpool_client.v1 import tokenpool_pb2_grpc as pb_grpc

from tests._certs import Authority, Issued, issue, make_authority
from tests.conftest import ServeFactory
from tests.daemon._process import DaemonProcess, free_port
from tokenpool.core import key_digest, new_key

# Connection attempts that must fail give up after this long (seconds).
_REFUSED_TIMEOUT_S = 2

BUDGET: dict[str, Any] = {"budgets": [{"name": "b", "capacity_tokens": 10_000}]}


@pytest.fixture
def pki(tmp_path: Path) -> tuple[Authority, Issued, Issued, Issued]:
    """A CA, its server and client certificates, and a stranger's client one."""
    ca = make_authority(tmp_path, "tokenpool")
    rogue = make_authority(tmp_path, "rogue")
    server = issue(ca, tmp_path, "server", server=True)
    client = issue(ca, tmp_path, "client", server=False)
    stranger = issue(rogue, tmp_path, "stranger", server=False)
    return ca, server, client, stranger


def _tls(server: Issued, ca: Authority | None = None) -> dict[str, Any]:
    tls: dict[str, Any] = {
        "cert_file": str(server.cert_file),
        "key_file": str(server.key_file),
    }
    if ca is not None:
        tls |= {"client_ca_file": str(ca.cert_file), "require_client_cert": True}
    return {"server": {"address": "127.0.0.1:0", "grace_seconds": 2, "tls": tls}}


async def _status(address: str, credentials: grpc.ChannelCredentials | None) -> Any:
    """A GetBudget over a new channel: the answer, or the failure's code."""
    channel = (
        grpc.aio.insecure_channel(address)
        if credentials is None
        else grpc.aio.secure_channel(address, credentials)
    )
    async with channel:
        stub = pb_grpc.TokenPoolStub(channel)
        try:
            return await stub.GetBudget(
                pb.GetBudgetRequest(budget="b"), timeout=_REFUSED_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()


@pytest.mark.anyio
async def test_tls_serves_clients_that_trust_its_ca(
    serve: ServeFactory, pki: tuple[Authority, Issued, Issued, Issued], tmp_path: Path
) -> None:
    ca, server, _, _ = pki
    other = make_authority(tmp_path, "other")
    trusting = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem)
    stranger_roots = grpc.ssl_channel_credentials(root_certificates=other.cert_pem)

    async with serve(**_tls(server), **BUDGET) as s:
        answer = await _status(s.address, trusting)
        plaintext = await _status(s.address, None)
        untrusted = await _status(s.address, stranger_roots)

    assert answer.name == "b"
    assert plaintext == grpc.StatusCode.UNAVAILABLE
    assert untrusted == grpc.StatusCode.UNAVAILABLE


@pytest.mark.anyio
async def test_mutual_tls_needs_a_client_certificate_from_its_ca(
    serve: ServeFactory, pki: tuple[Authority, Issued, Issued, Issued]
) -> None:
    ca, server, client, stranger = pki

    def credentials(cert: Issued | None) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=ca.cert_pem,
            private_key=None if cert is None else cert.key_pem,
            certificate_chain=None if cert is None else cert.cert_pem,
        )

    async with serve(**_tls(server, ca), **BUDGET) as s:
        answer = await _status(s.address, credentials(client))
        without = await _status(s.address, credentials(None))
        foreign = await _status(s.address, credentials(stranger))

    assert answer.name == "b"
    assert without == grpc.StatusCode.UNAVAILABLE
    assert foreign == grpc.StatusCode.UNAVAILABLE


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokenpool", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_status_and_client_over_mutual_tls_with_keys_never_logged(
    tmp_path: Path, pki: tuple[Authority, Issued, Issued, Issued]
) -> None:
    ca, server, client, _ = pki
    admin, key_a, unknown = new_key(), new_key(), new_key()
    secrets = (admin, key_a, unknown)
    (tmp_path / "admin-token").write_text(admin + "\n", encoding="utf-8")
    (tmp_path / "admin-token").chmod(0o600)
    (tmp_path / "key-a").write_text(key_a, encoding="utf-8")
    port = free_port()
    config = tmp_path / "tokenpool.toml"
    config.write_text(
        f'[server]\naddress = "127.0.0.1:{port}"\n\n'
        f'[server.tls]\ncert_file = "{server.cert_file}"\n'
        f'key_file = "{server.key_file}"\nclient_ca_file = "{ca.cert_file}"\n'
        "require_client_cert = true\n\n"
        f'[ledger]\npath = "{tmp_path / "ledger.db"}"\n\n'
        f'[auth]\nadmin_token_file = "{tmp_path / "admin-token"}"\n\n'
        f'[[auth.tenant_keys]]\ntenant = "a"\nsha256 = "{key_digest(key_a)}"\n\n'
        '[[budgets]]\nname = "b"\ncapacity_tokens = 10000\n',
        encoding="utf-8",
    )
    log = tmp_path / "daemon.log"
    credentials = tls_credentials(ca.cert_file, client.cert_file, client.key_file)
    daemon = DaemonProcess(
        config,
        port,
        log,
        args=("--log-level", "DEBUG"),
        health_credentials=credentials,
    )
    tls_args = [
        *("--tls-ca", str(ca.cert_file)),
        *("--tls-cert", str(client.cert_file)),
        *("--tls-key", str(client.key_file)),
    ]
    address = ("--address", daemon.address)
    try:
        as_admin = _cli("status", *address, *tls_args, env={"TOKENPOOL_TOKEN": admin})
        as_tenant = _cli(
            "status",
            *address,
            *tls_args,
            "--token-file",
            str(tmp_path / "key-a"),
            env={},
        )
        anonymous = _cli("status", *address, *tls_args, env={})
        plaintext = _cli("status", *address, env={"TOKENPOOL_TOKEN": admin})
        with Client(daemon.address, token=key_a, credentials=credentials) as tenant:
            held = tenant.reserve("b", "a", tokens=100)
            tenant.settle(held.reservation_id, "a", output_tokens=40)
        with (
            Client(daemon.address, token=unknown, credentials=credentials) as stranger,
            pytest.raises(UnauthenticatedError),
        ):
            stranger.reserve("b", "a", tokens=100)
    finally:
        assert daemon.terminate() == 0

    assert as_admin.returncode == 0, as_admin.stderr
    assert "budget b" in as_admin.stdout
    assert as_tenant.returncode == 0, as_tenant.stderr
    assert anonymous.returncode == 1
    assert "UnauthenticatedError" in anonymous.stderr
    assert plaintext.returncode == 1
    assert "UnavailableError" in plaintext.stderr
    text = log.read_text(encoding="utf-8")
    assert "access control on admin_token=yes tenant_keys=1 transport=mtls" in text
    assert "rpc refused by access control" in text
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        stored = "\n".join(str(row) for row in db.execute("SELECT * FROM entries"))
        stored += "\n".join(
            str(row) for row in db.execute("SELECT * FROM reservations")
        )
    database = (tmp_path / "ledger.db").read_bytes()
    for secret in secrets:
        for where in (text, stored, as_admin.stdout + as_admin.stderr):
            assert secret not in where
        assert secret.encode() not in database


def test_keys_made_at_run_time_are_never_logged(tmp_path: Path) -> None:
    admin = new_key()
    (tmp_path / "admin-token").write_text(admin, encoding="utf-8")
    (tmp_path / "admin-token").chmod(0o600)
    port = free_port()
    config = tmp_path / "tokenpool.toml"
    config.write_text(
        f'[server]\naddress = "127.0.0.1:{port}"\n\n'
        f'[ledger]\npath = "{tmp_path / "ledger.db"}"\n\n'
        f'[auth]\nadmin_token_file = "{tmp_path / "admin-token"}"\n\n'
        '[[budgets]]\nname = "b"\ncapacity_tokens = 10000\n',
        encoding="utf-8",
    )
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(config, port, log, args=("--log-level", "DEBUG"))
    as_admin = (("authorization", f"Bearer {admin}"),)
    try:
        with grpc.insecure_channel(daemon.address) as channel:
            keys = pb_grpc.AdminStub(channel)
            created = keys.CreateKey(
                pb.CreateKeyRequest(tenant="a", label="first"), metadata=as_admin
            )
            kept = keys.RotateKey(
                pb.RotateKeyRequest(key_id=created.info.key_id, keep_old=True),
                metadata=as_admin,
            )
            rotated = keys.RotateKey(
                pb.RotateKeyRequest(key_id=kept.info.key_id), metadata=as_admin
            )
            keys.RevokeKey(
                pb.RevokeKeyRequest(key_id=created.info.key_id), metadata=as_admin
            )
            made = (created, kept, rotated)
            api = pb_grpc.TokenPoolStub(channel)
            # Each key is used: a grant with the live one, refusals with the others.
            for key in (created.key, kept.key, rotated.key):
                try:
                    api.Reserve(
                        pb.ReserveRequest(budget="b", tenant="a", tokens=10),
                        metadata=(("authorization", f"Bearer {key}"),),
                    )
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        assert daemon.terminate() == 0

    text = log.read_text(encoding="utf-8")
    # The log did record every change, by key id and fingerprint.
    for answer in made:
        assert answer.info.key_id in text
        assert answer.info.fingerprint in text
    assert "tenant key revoked" in text
    assert "rpc refused by access control" in text
    assert "reserve answered" in text
    database = (tmp_path / "ledger.db").read_bytes()
    wal = tmp_path / "ledger.db-wal"
    if wal.exists():
        database += wal.read_bytes()
    for secret in (admin, *(answer.key for answer in made)):
        assert secret not in text
        assert secret.encode() not in database
