"""Random field values through the real gRPC path: answered, never harmful.

Hypothesis draws requests for every TokenPool RPC, the admin reads and the
admin writes BackupLedger, UpsertTenant and CreateKey, with edge-case and
random integers, arbitrary text and label maps, and sends them to one daemon
(with the admin token, so that keys can be made). Each answer must be
success or one of the codes of SPEC 11; a refusal must leave status, tenants,
keys, files and ledger as they were; and after every example the holds in
the pools must add up to the open reservations."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import grpc
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from google.protobuf import timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenpool_client.v1 import tokenpool_pb2 as pb

from tests.conftest import Served, ServeFactory
from tests.service._helpers import Refusal, refusal
from tokenpool.core import key_digest, new_key

ADMIN_TOKEN = new_key()
AS_ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)

CONFIG: dict[str, Any] = {
    "budgets": [
        {"name": "b", "capacity_tokens": 100_000, "max_wait_ms": 0},
        {"name": "closed", "capacity_tokens": 1000, "unknown_tenants": "refuse"},
    ],
    "tenants": [{"name": "t"}, {"name": "vip", "tier": "priority", "weight": 3}],
    "teams": [{"name": "crew"}],
    "auth": {"admin_token_sha256": key_digest(ADMIN_TOKEN)},
}

# Codes a request may be answered with (SPEC 11); anything else is a bug.
ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.PERMISSION_DENIED,
}

# Examples: enough to reach every check many times, a few seconds on 2 cores.
FUZZ_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Mostly plausible values, so requests get past the first check and reach
# grants, settles and extends; the rest edge cases and anything at all.
INT64 = st.one_of(
    st.integers(0, 3000),
    st.integers(0, 3000),
    st.integers(0, 3000),
    st.sampled_from([-(2**63), -1, 0, 1, 2**62, 2**62 + 1, 2**63 - 1]),
    st.integers(-(2**63), 2**63 - 1),
)
INT32 = st.one_of(
    st.integers(0, 3), st.integers(-3, 12), st.integers(-(2**31), 2**31 - 1)
)
# Protobuf strings are UTF-8: anything but lone surrogates.
ANY_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=300)
TEXT = st.one_of(
    st.text("abcdefgh-_.0123", max_size=12),
    st.text("abcdefgh-_.0123", max_size=12),
    ANY_TEXT,
)
VALID_NAMES = st.sampled_from(["b", "closed", "t", "u", "vip"])
NAMES = st.one_of(VALID_NAMES, VALID_NAMES, VALID_NAMES, st.just(""), TEXT)
LABELS = st.one_of(
    st.dictionaries(TEXT, TEXT, max_size=3), st.dictionaries(TEXT, TEXT, max_size=70)
)
TIMESTAMPS = st.builds(
    timestamp_pb2.Timestamp,
    seconds=st.one_of(
        st.integers(1_700_000_000, 1_800_000_000), st.integers(-(2**63), 2**63 - 1)
    ),
    nanos=st.one_of(st.just(0), INT32),
)

COUNT = st.integers(0, 3000)
SMALL = st.integers(0, 3)

# Requests that are mostly valid, so that grants, settles and extends happen.
PLAUSIBLE_RESERVES = st.fixed_dictionaries(
    {"budget": VALID_NAMES, "tenant": VALID_NAMES, "tokens": st.integers(1, 3000)},
    optional={
        "input_tokens": COUNT,
        "max_output_tokens": COUNT,
        "task_type": st.sampled_from(["code", "other", "summarization", "odd"]),
        "output_detail": SMALL,
        "urgency": SMALL,
        "lease_ms": st.integers(0, 600_000),
        "idempotency_key": st.sampled_from(["", "k1", "k2", "k3"]),
        "labels": st.dictionaries(st.sampled_from(["a", "b"]), TEXT, max_size=2),
    },
)
PLAUSIBLE_USAGE = {
    "input_tokens": COUNT,
    "cached_input_tokens": COUNT,
    "output_tokens": COUNT,
    "incomplete": st.booleans(),
}
RESERVES = st.fixed_dictionaries(
    {"budget": NAMES, "tenant": NAMES},
    optional={
        "tokens": INT64,
        "input_tokens": INT64,
        "input_chars": INT64,
        "max_output_tokens": INT64,
        "model": TEXT,
        "task_type": st.one_of(st.sampled_from(["code", "other"]), TEXT),
        "output_detail": INT32,
        "structured_output": st.booleans(),
        "context_items": INT32,
        "urgency": INT32,
        "max_wait_ms": INT64,
        "lease_ms": INT64,
        "idempotency_key": TEXT,
        "fallback_budgets": st.lists(NAMES, max_size=10),
        "labels": LABELS,
    },
)
USAGE = {
    "input_tokens": INT64,
    "cached_input_tokens": INT64,
    "cache_write_tokens": INT64,
    "output_tokens": INT64,
    "incomplete": st.booleans(),
    "response_cache_hit": st.booleans(),
    "model": TEXT,
    "provider_rate_limited": st.booleans(),
    "provider_remaining_tokens": INT64,
    "provider_limit_tokens": INT64,
}


@dataclass(frozen=True)
class Draw:
    """One request to send; `pick` names an earlier reservation, or none."""

    rpc: str
    fields: dict[str, Any]
    pick: int | None = None
    owner: bool = True
    """Whether to act as the picked reservation's tenant."""


def _closing(rpc: str, usage: dict[str, Any]) -> st.SearchStrategy[Draw]:
    return st.builds(
        Draw,
        rpc=st.just(rpc),
        fields=st.fixed_dictionaries(
            {"tenant": NAMES}, optional={"reservation_id": ANY_TEXT, **usage}
        ),
        pick=st.one_of(st.none(), st.integers(0, 1000), st.integers(0, 1000)),
        owner=st.sampled_from([True, True, True, False]),
    )


DRAWS = st.one_of(
    st.builds(Draw, rpc=st.just("Reserve"), fields=PLAUSIBLE_RESERVES),
    st.builds(Draw, rpc=st.just("Reserve"), fields=RESERVES),
    _closing("Settle", PLAUSIBLE_USAGE),
    _closing("Settle", USAGE),
    _closing("Extend", {"total_tokens": COUNT}),
    _closing("Release", {"billed_input_tokens": INT64}),
    _closing("Extend", {"total_tokens": INT64, "lease_expires_at": TIMESTAMPS}),
    st.builds(
        Draw, rpc=st.just("GetBudget"), fields=st.fixed_dictionaries({"budget": NAMES})
    ),
    st.builds(
        Draw, rpc=st.just("GetTenant"), fields=st.fixed_dictionaries({"tenant": NAMES})
    ),
    st.builds(
        Draw,
        rpc=st.just("ListReservations"),
        fields=st.fixed_dictionaries(
            {}, optional={"budget": NAMES, "tenant": NAMES, "limit": INT32}
        ),
    ),
)

# Backup file names, put in the test's folder (never a random absolute path):
# random text without slashes, and names that are never usable.
UNUSABLE_NAMES = st.sampled_from(
    ["", "missing/copy.db", "ledger.db", "x" * 300, "x" * 5000, "a\x00b"]
)
BACKUP_NAMES = st.one_of(
    st.builds(lambda text: text.replace("/", "_"), TEXT),
    st.builds(lambda text: text.replace("/", "_"), ANY_TEXT),
    UNUSABLE_NAMES,
    UNUSABLE_NAMES,
)
CAPS = st.builds(
    pb.Caps,
    max_pool_percent=st.one_of(st.none(), INT32),
    daily_tokens=st.one_of(st.none(), INT64),
    max_in_flight_tokens=st.one_of(st.none(), INT64),
    daily_cost_usd=st.one_of(st.none(), st.sampled_from(["1.50", "-1", "x"]), TEXT),
    alert_percent=st.lists(INT32, max_size=3),
)
ADMIN_WRITES = st.one_of(
    st.builds(
        Draw,
        rpc=st.just("BackupLedger"),
        fields=st.fixed_dictionaries({"path": BACKUP_NAMES}),
    ),
    st.builds(
        Draw,
        rpc=st.just("UpsertTenant"),
        fields=st.fixed_dictionaries(
            {"name": NAMES},
            optional={
                "tier": st.one_of(st.sampled_from(["basic", "priority", "x"]), TEXT),
                "weight": INT64,
                "team": st.one_of(st.just("crew"), NAMES),
                "caps": CAPS,
                "clear": st.lists(st.one_of(st.just("team"), TEXT), max_size=3),
            },
        ),
    ),
    st.builds(
        Draw,
        rpc=st.just("CreateKey"),
        fields=st.fixed_dictionaries({"tenant": NAMES}, optional={"label": TEXT}),
    ),
)
# A quarter of the draws are admin writes; the examples stay bounded.
DRAWS = st.one_of(DRAWS, DRAWS, DRAWS, ADMIN_WRITES)

# The Admin RPCs among the draws; the rest are TokenPool's.
ADMIN_RPCS = {"ListReservations", "BackupLedger", "UpsertTenant", "CreateKey"}

MESSAGES = {
    "Reserve": pb.ReserveRequest,
    "Settle": pb.SettleRequest,
    "Release": pb.ReleaseRequest,
    "Extend": pb.ExtendRequest,
    "GetBudget": pb.GetBudgetRequest,
    "GetTenant": pb.GetTenantRequest,
    "ListReservations": pb.ListReservationsRequest,
    "BackupLedger": pb.BackupLedgerRequest,
    "UpsertTenant": pb.UpsertTenantRequest,
    "CreateKey": pb.CreateKeyRequest,
}


@dataclass
class Fuzzer:
    """Sends draws to one daemon and checks what came back."""

    portal: BlockingPortal
    s: Served
    held: list[tuple[str, str]] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    admin_writes: int = 0
    """Admin writes that went through."""

    def request(self, draw: Draw) -> Any:
        fields = dict(draw.fields)
        if draw.pick is not None and self.held:
            rid, tenant = self.held[draw.pick % len(self.held)]
            fields["reservation_id"] = rid
            if draw.owner:
                fields["tenant"] = tenant
        if draw.rpc == "BackupLedger" and fields["path"]:
            fields["path"] = f"{self.s.db_path.parent}/{fields['path']}"
        return MESSAGES[draw.rpc](**fields)

    async def send(self, draw: Draw) -> Any:
        stub = self.s.admin if draw.rpc in ADMIN_RPCS else self.s.api
        call = getattr(stub, draw.rpc)(self.request(draw), metadata=AS_ADMIN)
        try:
            return await call
        except grpc.aio.AioRpcError:
            return await refusal(call)

    async def snapshot(self) -> tuple[object, ...]:
        admin = self.s.admin
        budgets = await self.s.api.ListBudgets(
            pb.ListBudgetsRequest(), metadata=AS_ADMIN
        )
        listed = await admin.ListReservations(
            pb.ListReservationsRequest(limit=10_000), metadata=AS_ADMIN
        )
        tenants = await admin.ListTenants(pb.ListTenantsRequest(), metadata=AS_ADMIN)
        keys = await admin.ListKeys(pb.ListKeysRequest(), metadata=AS_ADMIN)
        files = sorted(
            [path.name async for path in anyio.Path(self.s.db_path).parent.iterdir()]
        )
        entries = await self.s.ledger.entry_count()
        return budgets, listed, tenants, keys, files, entries

    async def check(self, draw: Draw) -> None:
        before = await self.snapshot()
        answer = await self.send(draw)

        if isinstance(answer, Refusal):
            self.codes[answer.code.name] = self.codes.get(answer.code.name, 0) + 1
            assert answer.code in ALLOWED, (draw, answer)
            assert answer.message
            if answer.code == grpc.StatusCode.INVALID_ARGUMENT:
                assert answer.bad_fields, answer
                assert answer.bad_fields[0].split(" ")[0] in answer.message
            assert await self.snapshot() == before, (draw, answer)
        else:
            self.codes["OK"] = self.codes.get("OK", 0) + 1
            if draw.rpc == "Reserve":
                self.held.append((answer.reservation_id, draw.fields["tenant"]))
            elif draw.rpc in ADMIN_RPCS - {"ListReservations"}:
                self.admin_writes += 1
        await self.holds_add_up()

    async def holds_add_up(self) -> None:
        budgets = await self.s.api.ListBudgets(
            pb.ListBudgetsRequest(), metadata=AS_ADMIN
        )
        listed = await self.s.admin.ListReservations(
            pb.ListReservationsRequest(limit=10_000), metadata=AS_ADMIN
        )
        for status in budgets.budgets:
            open_here = [r for r in listed.reservations if r.budget == status.name]
            assert status.open_reservations == len(open_here)
            assert sum(p.in_flight_tokens for p in status.pools) == sum(
                r.granted_tokens for r in open_here
            )
            assert all(p.available_tokens >= 0 for p in status.pools)


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal(backend="asyncio") as running:
        yield running


def test_random_fields_are_answered_and_harm_nothing(
    portal: BlockingPortal, serve: ServeFactory
) -> None:
    with portal.wrap_async_context_manager(serve(**CONFIG)) as served:
        fuzzer = Fuzzer(portal, served)

        @FUZZ_SETTINGS
        @given(draw=DRAWS)
        def example(draw: Draw) -> None:
            portal.call(fuzzer.check, draw)

        example()

        # Both outcomes were reached, and the daemon still serves.
        assert fuzzer.codes.get("OK", 0) > 0
        assert fuzzer.codes.get("INVALID_ARGUMENT", 0) > 0
        assert fuzzer.admin_writes > 0
        granted = portal.call(
            fuzzer.send, Draw("Reserve", {"budget": "b", "tenant": "t", "tokens": 1})
        )
        assert granted.granted_tokens == 1
