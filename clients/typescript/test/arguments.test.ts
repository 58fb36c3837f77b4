/** Arguments the client rejects itself, before anything goes on the wire. */

import * as assert from "node:assert/strict";
import { after, test } from "node:test";

import * as grpc from "@grpc/grpc-js";
import * as api from "@tokenpool/client";
import { ReservationScope, type Reservation, TokenPoolClient } from "@tokenpool/client";

// Nothing listens here: a check that let a call through would fail as
// UNAVAILABLE instead of the TypeError or RangeError the tests expect.
const client = new TokenPoolClient({ address: "127.0.0.1:9" });
after(() => client.close());

const RESERVATION: Reservation = {
  reservationId: "r1",
  grantedTokens: 10,
  pool: "basic",
  budget: "b",
  sources: [],
  complexityScore: 0,
  multiplier: 1,
  leaseExpiresAt: new Date(0),
  waitedMs: 0,
};

test("an unknown reserve field is a TypeError naming it", async () => {
  const request = { budget: "b", tenant: "t", tokens: 1, maxOutput: 300 };

  await assert.rejects(client.reserve(request as api.ReserveRequest), {
    name: "TypeError",
    message: /unknown field "maxOutput"; use one of: budget, tenant, tokens/,
  });
});

test("a fractional or unsafe token count is a RangeError", async () => {
  await assert.rejects(client.reserve({ budget: "b", tenant: "t", tokens: 1.5 }), {
    name: "RangeError",
    message: /tokens must be a whole number below 2\^53, got 1.5/,
  });
  await assert.rejects(client.settle("r1", "t", { outputTokens: 2 ** 53 }), {
    name: "RangeError",
    message: /outputTokens must be a whole number/,
  });
});

test("a count given as a string is a TypeError", async () => {
  const request = { budget: "b", tenant: "t", tokens: "12" } as unknown as api.ReserveRequest;

  await assert.rejects(client.reserve(request), {
    name: "TypeError",
    message: /tokens must be a number, got string 12/,
  });
});

test("fallbackBudgets given as one string is a TypeError", async () => {
  const request = {
    budget: "b",
    tenant: "t",
    tokens: 1,
    fallbackBudgets: "spare",
  } as unknown as api.ReserveRequest;

  await assert.rejects(client.reserve(request), { name: "TypeError", message: /pass \[name\]/ });
});

test("an unknown usage field is a TypeError in settle and record", async () => {
  const usage = { outputTokens: 1, completionTokens: 5 } as Partial<api.Usage>;

  await assert.rejects(client.settle("r1", "t", usage), {
    name: "TypeError",
    message: /Unknown usage field "completionTokens"/,
  });
  assert.throws(() => new ReservationScope(RESERVATION).record(usage), {
    name: "TypeError",
    message: /Unknown usage field "completionTokens"/,
  });
});

test("record sets the usage withReservation settles", () => {
  const scope = new ReservationScope(RESERVATION);

  scope.record({ inputTokens: 12, outputTokens: 3, incomplete: true });

  assert.equal(scope.usage.inputTokens, 12);
  assert.equal(scope.usage.outputTokens, 3);
  assert.equal(scope.usage.incomplete, true);
  assert.equal(scope.usage.cachedInputTokens, 0);
  assert.equal(scope.billedInputTokens, 0);
});

test("an invalid lease end is a RangeError", async () => {
  await assert.rejects(client.extend("r1", "t", { leaseExpiresAt: new Date("soon") }), {
    name: "RangeError",
    message: /leaseExpiresAt must be a valid Date/,
  });
});

test("client options that contradict each other are refused", () => {
  assert.throws(() => new TokenPoolClient({ timeoutMs: 0 }), {
    name: "RangeError",
    message: /timeoutMs must be a positive number of milliseconds, got 0/,
  });
  assert.throws(() => new TokenPoolClient({ token: "" }), {
    name: "TypeError",
    message: /token must be a non-empty string/,
  });
  assert.throws(
    () => new TokenPoolClient({ token: "k", metadata: { authorization: "Bearer other" } }),
    { name: "TypeError", message: /either as token or in metadata.authorization/ },
  );
  assert.throws(
    () => new TokenPoolClient({ tls: true, credentials: grpc.credentials.createInsecure() }),
    { name: "TypeError", message: /either tls or credentials/ },
  );
});

test("the public surface is exactly the documented names", () => {
  assert.deepEqual(Object.keys(api).sort(), [
    "ConflictError",
    "DEFAULT_ADDRESS",
    "DEFAULT_TIMEOUT_MS",
    "DeadlineExceededError",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "RefusedError",
    "ReservationScope",
    "TokenPoolClient",
    "TokenPoolError",
    "TooLargeError",
    "USAGE_FIELDS",
    "UnauthenticatedError",
    "UnavailableError",
    "UnexpectedStatusError",
    "errorFromRpc",
  ]);
});

test("every error class is a TokenPoolError named after itself", () => {
  const classes = Object.entries(api).filter(
    ([name]) => name.endsWith("Error") && name !== "TokenPoolError",
  ) as [string, typeof api.TokenPoolError][];
  assert.equal(classes.length, 10);

  for (const [name, ErrorClass] of classes) {
    const error = new ErrorClass("m", { code: grpc.status.UNKNOWN });
    assert.ok(error instanceof api.TokenPoolError, name);
    assert.equal(error.name, name);
  }
});
