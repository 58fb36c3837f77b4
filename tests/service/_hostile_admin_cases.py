"""Hostile requests to the Admin RPCs: ids, pages, modes, paths and caps."""

from __future__ import annotations

import grpc
from google.protobuf import timestamp_pb2
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.service._hostile import (
    INT64_MAX,
    INVALID,
    NOT_FOUND,
    Case,
    Ids,
    admin_release_call,
    as_tenant_call,
    backup_call,
    key_call,
    rpc_call,
)


def ledger_folder(ids: Ids) -> str:
    return ids.db_path.rsplit("/", 1)[0]


# The Admin RPCs beyond the first release's: ids, pages, modes, paths, caps.
ADMIN_CASES: list[Case] = [
    Case(
        "a tenant in a team that does not exist",
        rpc_call(
            "admin", "UpsertTenant", pb.UpsertTenantRequest, name="n", team="nope"
        ),
        NOT_FOUND,
        "Unknown team",
        "'nope'",
    ),
    Case(
        "a negative tenant weight",
        rpc_call("admin", "UpsertTenant", pb.UpsertTenantRequest, name="n", weight=-1),
        INVALID,
        "weight",
        "weight",
    ),
    Case(
        "a tenant weight of 2^63-1",
        rpc_call(
            "admin", "UpsertTenant", pb.UpsertTenantRequest, name="n", weight=INT64_MAX
        ),
        INVALID,
        "weight",
        "weight",
    ),
    Case(
        "a tier that does not exist",
        rpc_call(
            "admin", "UpsertTenant", pb.UpsertTenantRequest, name="n", tier="gold"
        ),
        INVALID,
        "tier",
        "tier",
    ),
    Case(
        "a negative daily cap of a tenant",
        rpc_call(
            "admin",
            "UpsertTenant",
            pb.UpsertTenantRequest,
            name="known",
            caps=pb.Caps(daily_tokens=-1),
        ),
        INVALID,
        "daily_tokens",
        "daily_tokens",
    ),
    Case(
        "a cost cap that is not a number",
        rpc_call(
            "admin",
            "UpsertTenant",
            pb.UpsertTenantRequest,
            name="known",
            caps=pb.Caps(daily_cost_usd="lots"),
        ),
        INVALID,
        "daily_cost_usd",
        "daily_cost_usd",
    ),
    Case(
        "a tenant field that cannot be cleared",
        rpc_call(
            "admin", "UpsertTenant", pb.UpsertTenantRequest, name="n", clear=["x"]
        ),
        INVALID,
        "clear",
        "clear",
    ),
    Case(
        "a team in-flight cap of 2^63-1",
        rpc_call(
            "admin",
            "UpsertTeam",
            pb.UpsertTeamRequest,
            name="crew",
            caps=pb.Caps(max_in_flight_tokens=INT64_MAX),
        ),
        INVALID,
        "max_in_flight_tokens",
        "max_in_flight_tokens",
    ),
    Case(
        "a pool percent of a team above 100",
        rpc_call(
            "admin",
            "UpsertTeam",
            pb.UpsertTeamRequest,
            name="crew",
            caps=pb.Caps(max_pool_percent=101),
        ),
        INVALID,
        "max_pool_percent",
        "max_pool_percent",
    ),
    Case(
        "a team cleared of its team",
        rpc_call("admin", "UpsertTeam", pb.UpsertTeamRequest, name="n", clear=["team"]),
        INVALID,
        "clear",
        "clear",
    ),
    Case(
        "removal of an unknown tenant",
        rpc_call("admin", "RemoveTenant", pb.RemoveTenantRequest, name="nobody"),
        NOT_FOUND,
        "not configured",
        "'nobody'",
    ),
    Case(
        "removal of an unknown team",
        rpc_call("admin", "RemoveTeam", pb.RemoveTeamRequest, name="nobody"),
        NOT_FOUND,
        "Unknown team",
        "'nobody'",
    ),
    Case(
        "removal of a team that has members",
        rpc_call("admin", "RemoveTeam", pb.RemoveTeamRequest, name="crew"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "still has members",
        "'crew'",
    ),
    Case(
        "tenants listed with a tenant key",
        as_tenant_call("ListTenants", pb.ListTenantsRequest),
        grpc.StatusCode.PERMISSION_DENIED,
        "admin call",
        "ListTenants",
    ),
    Case(
        "teams listed with a tenant key",
        as_tenant_call("ListTeams", pb.ListTeamsRequest),
        grpc.StatusCode.PERMISSION_DENIED,
        "admin call",
        "ListTeams",
    ),
    Case(
        "an operator's release of an unknown reservation",
        rpc_call(
            "admin",
            "ReleaseReservation",
            pb.ReleaseReservationRequest,
            reservation_id="0" * 32,
        ),
        NOT_FOUND,
        "Unknown",
        "reservation_id",
    ),
    Case(
        "an operator's release with an empty id",
        rpc_call("admin", "ReleaseReservation", pb.ReleaseReservationRequest),
        INVALID,
        "must not be empty",
        "reservation_id",
    ),
    Case(
        "an operator's release with a 10 kB id",
        rpc_call(
            "admin",
            "ReleaseReservation",
            pb.ReleaseReservationRequest,
            reservation_id="r" * 10_000,
        ),
        INVALID,
        "characters long",
        "reservation_id",
    ),
    Case(
        "an operator's release with control characters in the id",
        rpc_call(
            "admin",
            "ReleaseReservation",
            pb.ReleaseReservationRequest,
            reservation_id="a\x1bb",
        ),
        INVALID,
        "control characters",
        "reservation_id",
    ),
    Case(
        "an operator's release of a settled reservation",
        admin_release_call("settled"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "already settled",
        "{settled}",
    ),
    Case(
        "entries after a negative id",
        rpc_call("admin", "ListEntries", pb.ListEntriesRequest, after_id=-1),
        INVALID,
        "negative",
        "after_id",
    ),
    Case(
        "entries after id -2^63",
        rpc_call("admin", "ListEntries", pb.ListEntriesRequest, after_id=-(2**63)),
        INVALID,
        "negative",
        "after_id",
    ),
    Case(
        "a negative page of entries",
        rpc_call("admin", "ListEntries", pb.ListEntriesRequest, limit=-1),
        INVALID,
        "outside",
        "limit",
    ),
    Case(
        "a page of entries above the maximum",
        rpc_call("admin", "ListEntries", pb.ListEntriesRequest, limit=2**31 - 1),
        INVALID,
        "outside",
        "limit",
    ),
    Case(
        "entries of a kind that does not exist",
        rpc_call(
            "admin", "ListEntries", pb.ListEntriesRequest, kinds=["settle", "nope"]
        ),
        INVALID,
        "'nope'",
        "kinds",
    ),
    Case(
        "entries since an impossible time",
        rpc_call(
            "admin",
            "ListEntries",
            pb.ListEntriesRequest,
            since=timestamp_pb2.Timestamp(seconds=INT64_MAX),
        ),
        INVALID,
        "Timestamp",
        "since",
    ),
    Case(
        "a backup with no path",
        backup_call(lambda _: ""),
        INVALID,
        "name the file",
        "path",
    ),
    Case(
        "a backup to a 10 kB path",
        backup_call(lambda ids: f"{ledger_folder(ids)}/{'x' * 10_000}.db"),
        INVALID,
        "characters long",
        "path",
    ),
    Case(
        "a backup to a file name too long for the system",
        backup_call(lambda ids: f"{ledger_folder(ids)}/{'x' * 300}.db"),
        INVALID,
        "File name too long",
        "path",
    ),
    Case(
        "a backup to a path with a NUL byte",
        backup_call(lambda ids: f"{ledger_folder(ids)}/copy\x00.db"),
        INVALID,
        "control characters",
        "path",
    ),
    Case(
        "a backup to a path with escape codes",
        backup_call(lambda ids: f"{ledger_folder(ids)}/copy\x1b[31m.db"),
        INVALID,
        "control characters",
        "path",
    ),
    Case(
        "a backup over the ledger itself",
        backup_call(lambda ids: ids.db_path),
        INVALID,
        "exists already",
        "path",
    ),
    Case(
        "a backup into a folder that does not exist",
        backup_call(lambda ids: f"{ledger_folder(ids)}/missing/copy.db"),
        INVALID,
        "does not exist",
        "path",
    ),
    Case(
        "a backup under a file, not a folder",
        backup_call(lambda ids: f"{ids.db_path}/copy.db"),
        INVALID,
        "does not exist",
        "path",
    ),
    Case(
        "the autoscaler of an unknown budget",
        rpc_call("admin", "GetAutoscale", pb.GetAutoscaleRequest, budget="nope"),
        NOT_FOUND,
        "Unknown budget",
        "'nope'",
    ),
    Case(
        "an autoscaler switched on an unknown budget",
        rpc_call(
            "admin", "SetAutoscale", pb.SetAutoscaleRequest, budget="nope", mode="act"
        ),
        NOT_FOUND,
        "Unknown budget",
        "'nope'",
    ),
    Case(
        "an autoscale mode that does not exist",
        rpc_call(
            "admin", "SetAutoscale", pb.SetAutoscaleRequest, budget="b", mode="turbo"
        ),
        INVALID,
        "not one of off, act or recommend",
        "mode",
    ),
    Case(
        "an empty autoscale mode",
        rpc_call("admin", "SetAutoscale", pb.SetAutoscaleRequest, budget="b"),
        INVALID,
        "not one of",
        "mode",
    ),
    Case(
        "a 10 kB autoscale mode",
        rpc_call(
            "admin",
            "SetAutoscale",
            pb.SetAutoscaleRequest,
            budget="b",
            mode="a" * 10_000,
        ),
        INVALID,
        "not one of",
        "mode",
    ),
    Case(
        "a key label with control characters",
        rpc_call("admin", "CreateKey", pb.CreateKeyRequest, tenant="t", label="a\x1bb"),
        INVALID,
        "control characters",
        "label",
    ),
    Case(
        "a 10 kB key label",
        rpc_call(
            "admin", "CreateKey", pb.CreateKeyRequest, tenant="t", label="l" * 10_000
        ),
        INVALID,
        "characters long",
        "label",
    ),
    Case(
        "rotation of an unknown key",
        rpc_call("admin", "RotateKey", pb.RotateKeyRequest, key_id="k-000000000000"),
        NOT_FOUND,
        "Unknown key_id",
        "'k-000000000000'",
    ),
    Case(
        "rotation of a revoked key",
        key_call("RotateKey", "revoked_key"),
        NOT_FOUND,
        "Unknown key_id",
        "{revoked_key}",
    ),
    Case(
        "rotation with an empty key id",
        rpc_call("admin", "RotateKey", pb.RotateKeyRequest),
        INVALID,
        "must not be empty",
        "key_id",
    ),
    Case(
        "rotation with a 10 kB key id",
        rpc_call("admin", "RotateKey", pb.RotateKeyRequest, key_id="k" * 10_000),
        INVALID,
        "characters long",
        "key_id",
    ),
    Case(
        "rotation to a label with control characters",
        key_call("RotateKey", "key", label="new\nline"),
        INVALID,
        "control characters",
        "label",
    ),
    Case(
        "revocation of an unknown key",
        rpc_call("admin", "RevokeKey", pb.RevokeKeyRequest, key_id="file-nothing"),
        NOT_FOUND,
        "Unknown key_id",
        "'file-nothing'",
    ),
    Case(
        "revocation of a revoked key",
        key_call("RevokeKey", "revoked_key"),
        NOT_FOUND,
        "Unknown key_id",
        "{revoked_key}",
    ),
    Case(
        "revocation with an empty key id",
        rpc_call("admin", "RevokeKey", pb.RevokeKeyRequest),
        INVALID,
        "must not be empty",
        "key_id",
    ),
    Case(
        "revocation with control characters in the key id",
        rpc_call("admin", "RevokeKey", pb.RevokeKeyRequest, key_id="k\x00"),
        INVALID,
        "control characters",
        "key_id",
    ),
]
