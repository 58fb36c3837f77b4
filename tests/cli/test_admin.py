"""The admin commands against a real daemon: output, exit codes, credentials."""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from tokenpool_client.v1 import tokenpool_pb2 as pb
from typer.testing import CliRunner, Result

from tests.conftest import Served, ServeFactory, write_config
from tokenpool.cli import _admin, _ledger, app  # noqa: F401  registers the commands
from tokenpool.core import key_digest, new_key
from tokenpool.engine import ManualClock

pytestmark = pytest.mark.anyio

ADMIN = new_key()

BUDGET = """
[[budgets]]
name = "b"
capacity_tokens = 10000
[budgets.autoscale]
interval_seconds = 10

[[tenants]]
name = "a"
tier = "priority"
weight = 2
"""

AUTH = f'\n[auth]\nadmin_token_sha256 = "{key_digest(ADMIN)}"\n'


async def cli(
    s: Served, *args: str, token: str | None = ADMIN, env: dict[str, str] | None = None
) -> Result:
    """Runs `tokenpool ARGS --address <daemon>` in a thread, as a user would."""
    environment = {"TOKENPOOL_TOKEN": token or "", "COLUMNS": "160", **(env or {})}
    command = [*args, "--address", s.address]

    def invoke() -> Result:
        return CliRunner().invoke(app, command, env=environment)

    return await anyio.to_thread.run_sync(invoke)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output + str(result.exception)
    return result.stdout


def as_json(result: Result) -> Any:
    return json.loads(ok(result))


def failed(result: Result, kind: str, words: Sequence[str] = ()) -> None:
    assert result.exit_code == 1, result.output
    assert kind in result.stderr
    for word in words:
        assert word in result.stderr


async def spend(s: Served, tenant: str, tokens: int, used: int) -> str:
    md = (("authorization", f"Bearer {ADMIN}"),)
    granted = await s.api.Reserve(
        pb.ReserveRequest(budget="b", tenant=tenant, tokens=tokens), metadata=md
    )
    if used:
        await s.api.Settle(
            pb.SettleRequest(
                reservation_id=granted.reservation_id, tenant=tenant, input_tokens=used
            ),
            metadata=md,
        )
    return str(granted.reservation_id)


async def test_status_shows_pools_as_table_and_json(serve: ServeFactory) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        await spend(s, "a", 500, 0)

        table = ok(await cli(s, "status"))
        data = as_json(await cli(s, "status", "--format", "json"))

    assert "budget b: 10,000 tokens per 60 s, 1 open" in table
    assert "priority" in table and "in flight" in table
    (budget,) = data
    pools = {pool["name"]: pool for pool in budget["pools"]}
    assert budget["capacity_tokens"] == 10_000
    assert pools["priority"]["in_flight_tokens"] == 500
    assert pools["basic"]["capacity_tokens"] == 6_500


async def test_missing_or_wrong_token_fails_with_a_clear_message(
    serve: ServeFactory,
) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        missing = await cli(s, "status", token=None)
        wrong = await cli(s, "capacity", "b", "20000", token=new_key())
        tenant_key = await cli(s, "tenants", "list", token="not-a-key")

        failed(missing, "UnauthenticatedError", ["requires credentials", "Bearer"])
        failed(wrong, "UnauthenticatedError", ["neither a known tenant API key"])
        failed(tenant_key, "UnauthenticatedError")
        status = await s.api.GetBudget(
            pb.GetBudgetRequest(budget="b"),
            metadata=(("authorization", f"Bearer {ADMIN}"),),
        )
        assert status.capacity_tokens == 10_000


async def test_token_file_is_read_and_errors_name_the_problem(
    serve: ServeFactory, tmp_path: Path
) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text(ADMIN + "\n")
    async with serve(config=BUDGET + AUTH) as s:
        by_file = await cli(s, "status", "--token-file", str(token_file), token=None)
        unknown = await cli(s, "capacity", "nope", "100")
        negative = await cli(s, "capacity", "b", str(2**63 - 1))

    assert "budget b" in ok(by_file)
    failed(unknown, "NotFoundError", ["Unknown budget 'nope'"])
    failed(negative, "InvalidRequestError", ["capacity_tokens"])


async def test_capacity_and_rebalance_change_the_budget(serve: ServeFactory) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        grown = ok(await cli(s, "capacity", "b", "20000"))
        split = as_json(
            await cli(s, "rebalance", "b", "basic=60", "burst=18", "--format", "json")
        )
        bad = await cli(s, "rebalance", "b", "basic=90")
        malformed = await cli(s, "rebalance", "b", "basic")
        entries = await s.ledger.entries(kinds=["capacity", "rebalance"])

    assert "budget b: 20,000 tokens per 60 s" in grown
    assert [(p["name"], p["share_percent"]) for p in split["pools"]] == [
        ("basic", 60),
        ("priority", 22),
        ("burst", 18),
    ]
    failed(bad, "InvalidRequestError", ["sum to 130, not 100"])
    assert malformed.exit_code == 2
    assert "pool=percent" in malformed.output
    # Each change names who made it: the admin token, the operator, the peer.
    assert [e.kind.value for e in entries] == ["capacity", "rebalance"]
    assert all(e.actor.startswith("admin:") and "@" in e.actor for e in entries)


async def test_capacity_out_of_range_is_one_error_line(serve: ServeFactory) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        huge = await cli(s, "capacity", "b", "99999999999999999999")
        negative = await cli(s, "capacity", "b", "-5")
        shown = as_json(await cli(s, "status", "--format", "json"))
        entries = await s.ledger.entries(kinds=["capacity"])

    failed(huge, "InvalidFieldError", ["capacity_tokens", "4611686018427387904"])
    failed(negative, "InvalidRequestError", ["capacity_tokens", "-5 is negative"])
    for result in (huge, negative):
        assert "Traceback" not in result.output
        assert "No such option" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1
    # Nothing changed.
    assert shown[0]["capacity_tokens"] == 10000
    assert entries == []


async def test_pools_pause_drain_and_resume(serve: ServeFactory) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        paused = ok(await cli(s, "pools", "pause", "b", "basic"))
        drained = as_json(
            await cli(s, "pools", "drain", "b", "burst", "--format", "json")
        )
        shown = as_json(await cli(s, "status", "--format", "json"))
        table = ok(await cli(s, "status"))
        resumed = as_json(
            await cli(s, "pools", "resume", "b", "basic", "--format", "json")
        )
        unknown = await cli(s, "pools", "pause", "b", "gold")
        as_tenant = await cli(s, "pools", "pause", "b", "basic", token="tpk_guessed")
        entries = await s.ledger.entries(kinds=["pool_state"])

    assert "paused" in paused
    assert [(p["name"], p["state"]) for p in drained["pools"]] == [
        ("basic", "paused"),
        ("priority", "active"),
        ("burst", "draining"),
    ]
    assert [p["state"] for p in shown[0]["pools"]] == ["paused", "active", "draining"]
    assert "state" in table and "draining" in table
    assert [p["state"] for p in resumed["pools"]] == ["active", "active", "draining"]
    failed(unknown, "InvalidRequestError", ["'gold' is not a pool"])
    assert as_tenant.exit_code == 1
    assert [e.detail["state"] for e in entries] == ["paused", "draining", "active"]
    assert all(e.actor.startswith("admin:") for e in entries)


async def test_tenants_and_teams_are_managed(serve: ServeFactory) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        team = ok(await cli(s, "teams", "set", "red", "--daily-tokens", "5000"))
        tenant = ok(
            await cli(
                s,
                "tenants",
                "set",
                "web",
                "--team",
                "red",
                "--max-in-flight-tokens",
                "800",
                "--daily-tokens",
                "9000",
                "--alert-percent",
                "80",
            )
        )
        listed = as_json(await cli(s, "tenants", "list", "--format", "json"))
        table = ok(await cli(s, "tenants", "list"))
        teams = as_json(await cli(s, "teams", "list", "--format", "json"))
        busy = await cli(s, "teams", "remove", "red")
        removed = ok(await cli(s, "tenants", "remove", "web"))
        gone = ok(await cli(s, "teams", "remove", "red"))
        missing = await cli(s, "tenants", "remove", "web")

    assert team == "team red: daily_tokens=5000\n"
    assert tenant == "tenant web: tier basic, weight 1, team red\n"
    web = next(t for t in listed if t["name"] == "web")
    assert (web["source"], web["caps"]["max_in_flight_tokens"]) == ("run-time", 800)
    assert web["caps"]["alert_percent"] == [80]
    assert next(t for t in listed if t["name"] == "a")["source"] == "file"
    assert "max_in_flight_tokens=800 daily_tokens=9000 alerts=80" in table
    assert teams == [
        {
            "name": "red",
            "caps": {
                "max_pool_percent": None,
                "max_in_flight_tokens": None,
                "daily_tokens": 5000,
                "monthly_tokens": None,
                "daily_cost_usd": None,
                "monthly_cost_usd": None,
                "alert_percent": [],
            },
            "members": ["web"],
            "source": "run-time",
        }
    ]
    failed(busy, "ConflictError", ["still has members (web)"])
    assert removed == "tenant web removed\n"
    assert gone == "team red removed\n"
    failed(missing, "NotFoundError", ["not configured"])


async def test_keys_are_created_once_rotated_and_revoked(serve: ServeFactory) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        created = await cli(s, "keys", "create", "a", "--label", "2026-06")
        key = ok(created).strip()
        listed = as_json(await cli(s, "keys", "list", "--format", "json"))
        key_id = listed[0]["key_id"]
        usable = await cli(s, "status", token=key)
        rotated = as_json(await cli(s, "keys", "rotate", key_id, "--format", "json"))
        old_refused = await cli(s, "status", token=key)
        revoked = ok(await cli(s, "keys", "revoke", rotated["info"]["key_id"]))
        table = ok(await cli(s, "keys", "list"))

    assert key.startswith("tpk_")
    assert "shown this once" in created.stderr
    assert key not in json.dumps(listed)
    assert listed[0]["fingerprint"] == key_digest(key)[:12]
    assert (listed[0]["tenant"], listed[0]["label"], listed[0]["active"]) == (
        "a",
        "2026-06",
        True,
    )
    assert "budget b" in ok(usable)
    assert rotated["key"].startswith("tpk_") and rotated["replaced"]["active"] is False
    failed(old_refused, "UnauthenticatedError")
    assert revoked == f"key {rotated['info']['key_id']} of tenant a revoked\n"
    assert table.count("revoked") == 2


async def test_reservations_are_listed_and_released(serve: ServeFactory) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        held = await spend(s, "a", 700, 0)
        listed = as_json(await cli(s, "reservations", "list", "--format", "json"))
        table = ok(await cli(s, "reservations", "list", "--tenant", "a"))
        released = ok(await cli(s, "reservations", "release", held, "--billed", "100"))
        after = as_json(await cli(s, "reservations", "list", "--format", "json"))
        again = await cli(s, "reservations", "release", held)
        entries = await s.ledger.entries(kinds=["release"])

    assert [(r["reservation_id"], r["granted_tokens"]) for r in listed] == [(held, 700)]
    assert held in table and "priority:700" in table
    assert released == f"released {held}: 600 tokens back, 100 charged\n"
    assert after == []
    failed(again, "ConflictError", ["already released"])
    assert entries[0].actor.startswith("admin:")


async def test_report_as_table_csv_and_json(serve: ServeFactory) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        await spend(s, "a", 1000, 1200)
        await spend(s, "z", 500, 250)
        table = ok(await cli(s, "report"))
        rows = list(
            csv.DictReader(
                io.StringIO(ok(await cli(s, "report", "--by", "tenant", "-f", "csv")))
            )
        )
        data = as_json(await cli(s, "report", "--by", "pool", "--format", "json"))
        total = as_json(await cli(s, "report", "--by", "", "--format", "json"))
        bad = await cli(s, "report", "--by", "colour")

    assert "usage report (2 rows)" in table
    by_tenant = {row["tenant"]: row for row in rows}
    assert by_tenant["a"]["tokens_used"] == "1200"
    assert by_tenant["a"]["overruns"] == "1"
    assert by_tenant["z"]["estimate_ratio"] == "0.5"
    assert {d["keys"]["pool"]: d["tokens_charged"] for d in data} == {
        "basic": 250,
        "priority": 1200,
    }
    assert data[0]["refusals"] is None  # not attributable to pools
    assert total == [{"keys": {}, **{k: v for k, v in total[0].items() if k != "keys"}}]
    assert total[0]["reservations"] == 2
    failed(bad, "InvalidRequestError", ["'colour' is not one of"])


async def test_ledger_export_streams_every_entry_and_backup_copies(
    serve: ServeFactory, tmp_path: Path
) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        for _ in range(3):
            await spend(s, "a", 100, 50)
        count = await s.ledger.entry_count()
        jsonl = tmp_path / "ledger.jsonl"
        ok(await cli(s, "ledger", "export", "--output", str(jsonl)))
        as_csv = ok(
            await cli(s, "ledger", "export", "--format", "csv", "--kind", "settle")
        )
        exists = await cli(s, "ledger", "export", "--output", str(jsonl))
        missing = tmp_path / "no-such-folder" / "x.jsonl"
        no_folder = await cli(s, "ledger", "export", "-o", str(missing))
        copy = tmp_path / "copy.db"
        backed = as_json(
            await cli(s, "ledger", "backup", str(copy), "--format", "json")
        )
        refused = await cli(s, "ledger", "backup", str(copy))

    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == count
    assert [line["id"] for line in lines] == list(range(1, count + 1))
    assert lines[0]["kind"] == "reserve" and lines[0]["at"].endswith("Z")
    assert isinstance(lines[0]["detail"], dict)
    rows = list(csv.DictReader(io.StringIO(as_csv)))
    assert [row["kind"] for row in rows] == ["settle"] * 3
    failed(exists, "FileExistsError")
    failed(no_folder, "FileNotFoundError", ["no-such-folder", "name a new file"])
    assert "Traceback" not in no_folder.output
    assert not missing.parent.exists()
    assert backed["path"] == str(copy) and backed["bytes"] > 0
    with sqlite3.connect(copy) as conn:
        (copied,) = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
    assert copied == count
    failed(refused, "InvalidRequestError", ["exists already"])


async def test_reload_and_autoscale_commands(serve: ServeFactory) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        same = ok(await cli(s, "reload"))
        assert s.config_path is not None
        await anyio.to_thread.run_sync(
            write_config,
            s.config_path,
            s.db_path,
            BUDGET.replace("10000", "12000") + AUTH,
        )
        changed = as_json(await cli(s, "reload", "--format", "json"))
        await anyio.to_thread.run_sync(
            write_config, s.config_path, s.db_path, BUDGET + "capacity_tokens = -1\n"
        )
        invalid = await cli(s, "reload")
        off = as_json(await cli(s, "autoscale", "status", "b", "--format", "json"))
        on = ok(await cli(s, "autoscale", "set", "b", "recommend"))
        history = as_json(await cli(s, "autoscale", "history", "--format", "json"))
        wrong = await cli(s, "autoscale", "set", "b", "sometimes")

    assert same == "reloaded: no changes\n"
    assert changed["applied"] is True
    assert changed["changes"] == ["budget b: capacity_tokens 10000 -> 12000"]
    failed(invalid, "InvalidRequestError", ["capacity_tokens"])
    assert (off["enabled"], off["capacity_tokens"]) == (False, 12_000)
    assert "recommend" in on and "12,000" in on
    assert [(d["action"], d["mode"]) for d in history] == [("mode", "recommend")]
    assert history[0]["actor"].startswith("admin:")
    failed(wrong, "InvalidRequestError", ["not one of off, act or recommend"])


async def test_reload_prints_restart_only_changes(serve: ServeFactory) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        assert s.config_path is not None
        config = anyio.Path(s.config_path)
        text = await config.read_text(encoding="utf-8")
        assert "grace_seconds = 2\n" in text
        await config.write_text(text.replace("grace_seconds = 2", "grace_seconds = 5"))
        table = ok(await cli(s, "reload"))
        data = as_json(await cli(s, "reload", "--format", "json"))

    assert table == (
        "reloaded: no changes\n"
        "notes:\n"
        "  server changed; it takes effect at the next restart\n"
    )
    assert data["changes"] == []
    assert "server changed" in data["message"]


async def test_installed_command_reaches_the_daemon(serve: ServeFactory) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        command = [sys.executable, "-m", "tokenpool", "tenants", "list"]
        done = await anyio.run_process(
            [*command, "--format", "json", "--address", s.address],
            env={**os.environ, "TOKENPOOL_TOKEN": ADMIN},
            check=False,
        )
        refused = await anyio.run_process(
            [*command, "--address", s.address],
            env={k: v for k, v in os.environ.items() if not k.startswith("TOKENPOOL")},
            check=False,
        )

    assert done.returncode == 0, done.stderr
    assert [t["name"] for t in json.loads(done.stdout)] == ["a"]
    assert refused.returncode == 1
    assert b"UnauthenticatedError" in refused.stderr


async def test_status_watch_redraws_until_interrupted(serve: ServeFactory) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        command = [sys.executable, "-m", "tokenpool", "status", "--watch"]
        async with await anyio.open_process(
            [*command, "--interval", "0.2", "--address", s.address],
            env={**os.environ, "TOKENPOOL_TOKEN": ADMIN},
        ) as process:
            assert process.stdout is not None
            first = await process.stdout.receive()
            await spend(s, "a", 400, 0)
            await anyio.sleep(0.6)
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(10):
                code = await process.wait()
                rest = b"".join([chunk async for chunk in process.stdout])

    assert code == 0
    assert b"budget b" in first
    assert b"1 open" in rest


# 2026-01-05 10:15:00 UTC: the test daemons' clock starts there.
MONDAY = 1_767_608_100 * 10**9


async def labelled(
    s: Served, tenant: str, tokens: int, used: int, **labels: str
) -> None:
    md = (("authorization", f"Bearer {ADMIN}"),)
    request = pb.ReserveRequest(budget="b", tenant=tenant, tokens=tokens, labels=labels)
    granted = await s.api.Reserve(request, metadata=md)
    settle = pb.SettleRequest(
        reservation_id=granted.reservation_id, tenant=tenant, input_tokens=used
    )
    await s.api.Settle(settle, metadata=md)


async def test_report_by_label_and_hour(serve: ServeFactory) -> None:
    async with serve(
        config=BUDGET + AUTH, clock=ManualClock(start_wall_ns=MONDAY)
    ) as s:
        await labelled(s, "a", 1000, 800, feature="search")
        await labelled(s, "z", 500, 300, feature="chat")
        await labelled(s, "z", 400, 100, feature="search")
        s.clock.advance(3600)
        await labelled(s, "a", 200, 150, feature="search")
        await labelled(s, "z", 100, 50)
        by = ("report", "--by", "label:feature", "--period", "hour")
        table = ok(await cli(s, *by))
        text = ok(await cli(s, *by, "-f", "csv"))

    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0])[:6] == [
        "label:feature",
        "period",
        "reservations",
        "tokens_reserved",
        "tokens_used",
        "tokens_charged",
    ]
    found = {
        (row["label:feature"], row["period"]): (
            row["reservations"],
            row["tokens_reserved"],
            row["tokens_used"],
            row["refusals"],
        )
        for row in rows
    }
    # Refusals are counted per budget, tenant and minute: not per label.
    assert found == {
        ("search", "2026-01-05T10:00Z"): ("2", "1400", "900", ""),
        ("chat", "2026-01-05T10:00Z"): ("1", "500", "300", ""),
        ("search", "2026-01-05T11:00Z"): ("1", "200", "150", ""),
        ("", "2026-01-05T11:00Z"): ("1", "100", "50", ""),
    }
    assert "usage report (4 rows)" in table
    cells = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in table.splitlines()
        if line.startswith("│")
    ]
    # Columns: label, period, grants, used, charged, ...
    shown = [cell[:5] for cell in cells]
    assert ["search", "2026-01-05T10:00Z", "2", "900", "900"] in shown
    assert ["-", "2026-01-05T11:00Z", "1", "50", "50"] in shown
    assert len(shown) == 4


async def test_ledger_export_pages_through_every_entry_once(
    serve: ServeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_ledger, "_PAGE", 3)
    async with serve(config=BUDGET + AUTH) as s:
        for used in range(1, 6):
            await spend(s, "a", 100, used)
        count = await s.ledger.entry_count()
        jsonl = tmp_path / "ledger.jsonl"
        ok(await cli(s, "ledger", "export", "-o", str(jsonl)))
        as_csv = ok(await cli(s, "ledger", "export", "--format", "csv"))
        settles = ok(await cli(s, "ledger", "export", "-f", "csv", "--kind", "settle"))

    # Five reserves and five settles: more than three pages, the last short.
    assert count == 10
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["id"] for line in lines] == list(range(1, count + 1))
    rows = list(csv.DictReader(io.StringIO(as_csv)))
    assert [int(row["id"]) for row in rows] == list(range(1, count + 1))
    assert [row["kind"] for row in rows] == [line["kind"] for line in lines]
    charged = [int(r["charged"]) for r in csv.DictReader(io.StringIO(settles))]
    assert charged == [1, 2, 3, 4, 5]


async def test_tenant_and_team_changes_name_their_actor(serve: ServeFactory) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        ok(await cli(s, "teams", "set", "red", "--daily-tokens", "5000"))
        ok(await cli(s, "tenants", "set", "web", "--team", "red"))
        teams = ok(await cli(s, "teams", "list"))
        removed = as_json(await cli(s, "tenants", "remove", "web", "-f", "json"))
        gone = as_json(await cli(s, "teams", "remove", "red", "--format", "json"))
        missing = await cli(s, "teams", "remove", "red", "--format", "json")
        entries = await s.ledger.entries(kinds=["tenant", "team"])

    assert "red" in teams and "web" in teams and "daily_tokens=5000" in teams
    assert "run-time" in teams
    assert removed == {"name": "web", "message": "tenant web removed"}
    assert gone == {"name": "red", "message": "team red removed"}
    failed(missing, "NotFoundError")
    assert [e.kind.value for e in entries] == ["team", "tenant", "tenant", "team"]
    user = getpass.getuser()
    for entry in entries:
        assert entry.actor.startswith(f"admin:{user}@"), entry.actor


async def test_release_backup_and_history_outputs(
    serve: ServeFactory, tmp_path: Path
) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        held = await spend(s, "a", 700, 0)
        released = as_json(
            await cli(
                s, "reservations", "release", held, "--billed", "30", "-f", "json"
            )
        )
        copy = tmp_path / "copy.db"
        backed = ok(await cli(s, "ledger", "backup", str(copy)))
        ok(await cli(s, "autoscale", "set", "b", "recommend"))
        ok(await cli(s, "autoscale", "set", "b", "off"))
        history = ok(await cli(s, "autoscale", "history"))

    assert released == {"charged_tokens": 30, "refunded_tokens": 670}
    size = copy.stat().st_size
    assert backed == f"ledger backed up to {copy} ({size:,} bytes)\n"
    assert "autoscaler decisions (2)" in history
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in history.splitlines()
        if line.startswith("│")
    ]
    assert [row[1:] for row in rows] == [
        ["b", "mode", "-", "mode recommend"],
        ["b", "mode", "-", "mode off"],
    ]
    assert all(row[0].startswith("20") and row[0].endswith("Z") for row in rows)


async def test_status_watch_json_prints_a_line_per_snapshot(
    serve: ServeFactory,
) -> None:
    async with serve(config=BUDGET + AUTH) as s:
        command = [sys.executable, "-m", "tokenpool", "status", "--watch"]
        async with await anyio.open_process(
            [*command, "-f", "json", "--interval", "0.2", "--address", s.address],
            env={**os.environ, "TOKENPOOL_TOKEN": ADMIN},
        ) as process:
            assert process.stdout is not None
            first = await process.stdout.receive()
            await spend(s, "a", 400, 0)
            await anyio.sleep(0.8)
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(10):
                code = await process.wait()
                rest = b"".join([chunk async for chunk in process.stdout])

    assert code == 0
    snapshots = [json.loads(line) for line in (first + rest).splitlines()]
    assert len(snapshots) >= 3
    assert all(snap["at"].endswith("Z") for snap in snapshots)
    opened = [snap["budgets"][0]["open_reservations"] for snap in snapshots]
    assert opened[0] == 0 and opened[-1] == 1
    assert snapshots[0]["budgets"][0]["name"] == "b"


def test_pools_pause_help_says_open_reservations_stay_open() -> None:
    shown = CliRunner().invoke(
        app, ["pools", "pause", "--help"], env={"COLUMNS": "200"}
    )

    assert shown.exit_code == 0, shown.output
    assert "Open reservations stay open" in shown.output
    assert "open ones end" not in shown.output
