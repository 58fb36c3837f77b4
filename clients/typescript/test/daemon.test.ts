/** The client against a real daemon: each RPC, refusals, withReservation. */

import * as assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";

import * as grpc from "@grpc/grpc-js";

import {
  ConflictError,
  DeadlineExceededError,
  InvalidRequestError,
  NotFoundError,
  RefusedError,
  TokenPoolClient,
  TokenPoolError,
  TooLargeError,
  UnauthenticatedError,
  UnavailableError,
} from "@tokenpool/client";

import { selfSigned } from "./support/certs";
import { basicBudget, Daemon, freePort } from "./support/daemon";

// Each test draws on a budget of its own, so one daemon serves them all.
const BUDGETS = [
  "settle",
  "release",
  "extend",
  "refusal",
  "too-large",
  "scope-settle",
  "scope-release",
  "token",
];

let daemon: Daemon;
let client: TokenPoolClient;

before(async () => {
  daemon = await Daemon.start(BUDGETS.map((name) => basicBudget(name, 1000)).join("\n"));
  client = new TokenPoolClient({ address: daemon.address });
});

after(async () => {
  client?.close();
  await daemon?.stop();
});

async function available(budget: string): Promise<number> {
  const status = await client.getBudget(budget);
  const basic = status.pools.find((pool) => pool.name === "basic");
  assert.ok(basic, `budget ${budget} has no basic pool`);
  return basic.availableTokens;
}

test("reserve then settle charges usage and refunds the rest", async () => {
  const reservation = await client.reserve({ budget: "settle", tenant: "t", tokens: 400 });

  assert.equal(reservation.grantedTokens, 400);
  assert.equal(reservation.budget, "settle");
  assert.equal(reservation.pool, "basic");
  assert.deepEqual(reservation.sources, [{ pool: "basic", tokens: 400 }]);
  assert.ok(reservation.leaseExpiresAt.getTime() > Date.now());
  assert.equal(await available("settle"), 600);

  const settled = await client.settle(reservation.reservationId, "t", {
    inputTokens: 100,
    outputTokens: 50,
  });

  assert.deepEqual(settled, { chargedTokens: 150, refundedTokens: 250, overrunTokens: 0 });
  assert.equal(await available("settle"), 850);
  assert.equal((await client.getBudget("settle")).openReservations, 0);
});

test("settle repeated with other figures is a ConflictError", async () => {
  const reservation = await client.reserve({ budget: "settle", tenant: "t", tokens: 10 });
  await client.settle(reservation.reservationId, "t", { outputTokens: 5 });

  await assert.rejects(
    client.settle(reservation.reservationId, "t", { outputTokens: 6 }),
    (error: unknown) => error instanceof ConflictError && error.codeName === "FAILED_PRECONDITION",
  );
});

test("release charges billed input and refunds the hold", async () => {
  const reservation = await client.reserve({ budget: "release", tenant: "t", tokens: 300 });

  const released = await client.release(reservation.reservationId, "t", {
    billedInputTokens: 20,
  });

  assert.deepEqual(released, { chargedTokens: 20, refundedTokens: 280 });
  assert.equal(await available("release"), 980);
});

test("extend grows the hold and moves the lease", async () => {
  const reservation = await client.reserve({ budget: "extend", tenant: "t", tokens: 200 });
  const leaseEnd = new Date(Date.now() + 120_000);

  const extended = await client.extend(reservation.reservationId, "t", {
    totalTokens: 350,
    leaseExpiresAt: leaseEnd,
  });

  assert.equal(extended.grantedTokens, 350);
  assert.deepEqual(extended.sources, [{ pool: "basic", tokens: 350 }]);
  assert.equal(extended.leaseExpiresAt.getTime(), leaseEnd.getTime());
  assert.equal(await available("extend"), 650);
});

test("a refusal decodes reason, pool, retry-after and largest grantable", async () => {
  await client.reserve({ budget: "refusal", tenant: "t", tokens: 900 });

  const refused = await client.reserve({ budget: "refusal", tenant: "t", tokens: 200 }).then(
    () => assert.fail("a request above what is free must be refused"),
    (error: unknown) => error,
  );

  assert.ok(refused instanceof RefusedError);
  assert.ok(refused instanceof TokenPoolError);
  assert.equal(refused.codeName, "RESOURCE_EXHAUSTED");
  assert.match(refused.message, /cannot grant 200 tokens/);
  assert.equal(refused.reason, "POOL_EXHAUSTED");
  assert.equal(refused.pool, "basic");
  assert.equal(refused.largestGrantableTokens, 100);
  assert.equal(refused.requestedTokens, 200);
  assert.ok(refused.retryAfterMs !== undefined && refused.retryAfterMs > 0);
  assert.equal(refused.metadata.budget, "refusal");
});

test("a request above what could ever be granted is a TooLargeError", async () => {
  const error = await client.reserve({ budget: "too-large", tenant: "t", tokens: 1001 }).then(
    () => assert.fail("1001 tokens of a 1000-token budget must be out of range"),
    (caught: unknown) => caught,
  );

  assert.ok(error instanceof TooLargeError);
  assert.equal(error.codeName, "OUT_OF_RANGE");
  assert.equal(error.reason, "REQUEST_TOO_LARGE");
  assert.equal(error.largestGrantableTokens, 1000);
  assert.equal(error.requestedTokens, 1001);
  assert.equal(await available("too-large"), 1000);
});

test("unknown budgets and negative counts map to their errors", async () => {
  await assert.rejects(
    client.reserve({ budget: "nope", tenant: "t", tokens: 1 }),
    (error: unknown) =>
      error instanceof NotFoundError && /Unknown budget 'nope'/.test(error.message),
  );
  await assert.rejects(
    client.reserve({ budget: "settle", tenant: "t", tokens: -1 }),
    (error: unknown) => error instanceof InvalidRequestError && /negative/.test(error.message),
  );
});

test("withReservation settles the recorded usage and returns fn's value", async () => {
  const answer = await client.withReservation(
    { budget: "scope-settle", tenant: "t", inputTokens: 100, maxOutputTokens: 300 },
    async (scope) => {
      assert.equal(scope.reservation.grantedTokens, 400);
      assert.equal(await available("scope-settle"), 600);
      scope.record({ inputTokens: 100, outputTokens: 50 });
      return "the model's answer";
    },
  );

  assert.equal(answer, "the model's answer");
  assert.equal(await available("scope-settle"), 850);
  assert.equal((await client.getBudget("scope-settle")).openReservations, 0);
});

test("withReservation releases when fn throws, and rethrows", async () => {
  const failure = new Error("provider failed");

  await assert.rejects(
    client.withReservation({ budget: "scope-release", tenant: "t", tokens: 400 }, (scope) => {
      scope.billedInputTokens = 20;
      throw failure;
    }),
    (error: unknown) => error === failure,
  );

  assert.equal(await available("scope-release"), 980);
  assert.equal((await client.getBudget("scope-release")).openReservations, 0);
});

test("a bearer token is accepted by a daemon running open", async () => {
  const withToken = new TokenPoolClient({ address: daemon.address, token: "tenant-key" });
  try {
    const reservation = await withToken.reserve({ budget: "token", tenant: "t", tokens: 10 });
    await withToken.release(reservation.reservationId, "t");
  } finally {
    withToken.close();
  }

  assert.equal(await available("token"), 1000);
});

test("a deadline that passes is a DeadlineExceededError", async () => {
  await assert.rejects(
    client.getBudget("settle", { timeoutMs: 0.001 }),
    (error: unknown) => error instanceof DeadlineExceededError,
  );
});

test("a daemon nobody listens for is an UnavailableError", async () => {
  const nowhere = new TokenPoolClient({ address: `127.0.0.1:${await freePort()}` });
  try {
    await assert.rejects(
      nowhere.listBudgets(),
      (error: unknown) => error instanceof UnavailableError,
    );
  } finally {
    nowhere.close();
  }
});

test("listBudgets and getTenant read the daemon's state", async () => {
  const names = (await client.listBudgets()).map((budget) => budget.name);
  assert.deepEqual(names, BUDGETS);

  const tenant = await client.getTenant("t");
  assert.equal(tenant.name, "t");
  assert.equal(tenant.tier, "basic");
  assert.equal(tenant.configured, false);
});

/** A new API key and the `[[auth.tenant_keys]]` table that accepts it for tenant. */
function tenantKey(tenant: string): { key: string; table: string } {
  const key = randomBytes(24).toString("hex");
  const digest = createHash("sha256").update(key).digest("hex");
  return {
    key,
    table: `[[auth.tenant_keys]]\ntenant = "${tenant}"\nsha256 = "${digest}"\n`,
  };
}

async function withClient<T>(
  options: ConstructorParameters<typeof TokenPoolClient>[0],
  fn: (client: TokenPoolClient) => Promise<T>,
): Promise<T> {
  const client = new TokenPoolClient(options);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

test("with [auth] tenant keys a key acts as its tenant, others are UNAUTHENTICATED", async () => {
  const { key, table } = tenantKey("search");
  const guarded = await Daemon.start(basicBudget("keys", 1000), { tables: table });
  try {
    await withClient({ address: guarded.address, token: key }, async (tenant) => {
      const held = await tenant.reserve({ budget: "keys", tenant: "search", tokens: 100 });
      const settled = await tenant.settle(held.reservationId, "search", { outputTokens: 40 });
      assert.equal(settled.chargedTokens, 40);
    });
    const strangers: [string | undefined, RegExp][] = [
      [undefined, /authorization: Bearer <key>/],
      ["not-a-key", /neither a known tenant API key nor the admin token/],
    ];
    for (const [token, message] of strangers) {
      await withClient({ address: guarded.address, token }, async (stranger) => {
        const error = await stranger.reserve({ budget: "keys", tenant: "search", tokens: 1 }).then(
          () => assert.fail(`token ${String(token)} must be refused`),
          (e: unknown) => e,
        );
        assert.ok(error instanceof UnauthenticatedError, String(error));
        assert.equal(error.codeName, "UNAUTHENTICATED");
        assert.match(error.message, message);
      });
    }
  } finally {
    await guarded.stop();
  }
});

const tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), "tokenpool-ts-tls-"));
const certificate = selfSigned(tlsDir);
after(() => fs.rmSync(tlsDir, { recursive: true, force: true }));

test(
  "with [server.tls] and mutual TLS a client with the certificate and key gets through",
  { skip: certificate === undefined ? "openssl could not make a test certificate" : false },
  async () => {
    const cert = certificate!;
    const { key, table } = tenantKey("search");
    const secure = await Daemon.start(basicBudget("tls", 1000), {
      server:
        `[server.tls]\ncert_file = ${JSON.stringify(cert.certFile)}\n` +
        `key_file = ${JSON.stringify(cert.keyFile)}\n` +
        `client_ca_file = ${JSON.stringify(cert.certFile)}\nrequire_client_cert = true\n`,
      tables: table,
      healthCredentials: grpc.credentials.createSsl(cert.cert, cert.key, cert.cert),
    });
    try {
      const tls = { rootCerts: cert.cert, privateKey: cert.key, certChain: cert.cert };
      await withClient({ address: secure.address, token: key, tls }, async (tenant) => {
        const held = await tenant.reserve({ budget: "tls", tenant: "search", tokens: 10 });
        await tenant.release(held.reservationId, "search");
        assert.equal((await tenant.getBudget("tls")).openReservations, 0);
      });
      const refused = [
        { address: secure.address, token: key, timeoutMs: 5000 },
        { address: secure.address, token: key, timeoutMs: 5000, tls: { rootCerts: cert.cert } },
      ];
      for (const options of refused) {
        await withClient(options, (client) =>
          assert.rejects(
            client.getBudget("tls"),
            (error: unknown) => error instanceof UnavailableError,
          ),
        );
      }
    } finally {
      await secure.stop();
    }
  },
);
