"""Access settings: when credentials are required, and where secrets may live."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.conftest import settings_for
from tokenpool import ConfigError
from tokenpool.core import key_digest
from tokenpool.daemon import Daemon, load_settings
from tokenpool.daemon._access import is_loopback


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.8.9.10:1", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        ("10.1.2.3:50051", False),
        ("tokenpool.internal:50051", False),
    ],
)
def test_loopback_addresses_are_told_apart(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokenpool.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_listening_beyond_loopback_without_credentials_is_refused(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, '[server]\naddress = "0.0.0.0:50051"\n')

    with pytest.raises(
        ConfigError, match="listens beyond loopback, but no credentials"
    ):
        load_settings(config)


def test_listening_beyond_loopback_with_a_key_is_allowed(tmp_path: Path) -> None:
    digest = key_digest("k")
    config = _config(
        tmp_path,
        '[server]\naddress = "0.0.0.0:50051"\n\n'
        f'[[auth.tenant_keys]]\ntenant = "a"\nsha256 = "{digest}"\n',
    )

    settings = load_settings(config)

    assert settings.auth.configured
    assert settings.auth.tenant_keys[0].sha256 == digest


def test_the_admin_token_may_not_sit_in_the_file(tmp_path: Path) -> None:
    config = _config(tmp_path, '[auth]\nadmin_token = "hunter2"\n')

    with pytest.raises(ConfigError, match="does not belong in the file") as refused:
        load_settings(config)

    assert "hunter2" not in str(refused.value)


def test_the_admin_token_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENPOOL_AUTH__ADMIN_TOKEN", "from-env")
    config = _config(tmp_path, '[server]\naddress = "0.0.0.0:50051"\n')

    settings = load_settings(config)

    assert settings.auth.admin_token is not None
    assert "from-env" not in repr(settings)


def test_a_key_digest_must_be_sha256_hex(tmp_path: Path) -> None:
    config = _config(tmp_path, '[[auth.tenant_keys]]\ntenant = "a"\nsha256 = "xyz"\n')

    with pytest.raises(ConfigError, match=r"auth\.tenant_keys\.0\.sha256"):
        load_settings(config)


def test_two_sources_of_the_admin_token_are_refused(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        f'[auth]\nadmin_token_file = "t"\nadmin_token_sha256 = "{key_digest("t")}"\n',
    )

    with pytest.raises(ConfigError, match="set one of admin_token_file"):
        load_settings(config)


def test_client_certificates_need_a_ca(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        '[server.tls]\ncert_file = "c.pem"\nkey_file = "k.pem"\n'
        "require_client_cert = true\n",
    )

    with pytest.raises(ConfigError, match="require_client_cert needs client_ca_file"):
        load_settings(config)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("auth", "match"),
    [
        ({"admin_token_file": "missing-token"}, "Cannot read auth.admin_token_file"),
        ({"admin_token_file": "empty-token"}, "is empty"),
    ],
)
async def test_an_unreadable_token_file_stops_the_start(
    tmp_path: Path, auth: dict[str, str], match: str
) -> None:
    (tmp_path / "empty-token").write_text("\n", encoding="utf-8")
    auth = {key: str(tmp_path / value) for key, value in auth.items()}
    daemon = Daemon(settings_for(tmp_path / "ledger.db", auth=auth))

    with pytest.raises(ConfigError, match=match):
        await daemon.run()

    # It stopped before the ledger was touched.
    assert not await anyio.Path(tmp_path / "ledger.db").exists()


@pytest.mark.anyio
async def test_an_unreadable_certificate_stops_the_start(tmp_path: Path) -> None:
    server = {
        "address": "127.0.0.1:0",
        "tls": {"cert_file": str(tmp_path / "no.pem"), "key_file": str(tmp_path)},
    }
    daemon = Daemon(settings_for(tmp_path / "ledger.db", server=server))

    with pytest.raises(ConfigError, match=r"Cannot read server\.tls\.key_file"):
        await daemon.run()
