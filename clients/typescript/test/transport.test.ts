/** What goes on the wire: bearer token, metadata, TLS, and status details decoded. */

import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";

import * as grpc from "@grpc/grpc-js";
import {
  RefusedError,
  TokenPoolClient,
  TooLargeError,
  UnauthenticatedError,
  UnavailableError,
  UnexpectedStatusError,
} from "@tokenpool/client";

import { FakeServer, richError } from "./support/fake-server";

describe("over a plaintext channel", () => {
  const fake = new FakeServer();

  before(() => fake.start());
  after(() => fake.stop());

  async function refusal(answer: ReturnType<typeof richError>): Promise<unknown> {
    fake.reserveAnswer = answer;
    const client = new TokenPoolClient({ address: fake.address });
    try {
      return await client.reserve({ budget: "b", tenant: "t", tokens: 1 }).then(
        () => assert.fail("the fake server answers Reserve with an error"),
        (error: unknown) => error,
      );
    } finally {
      client.close();
    }
  }

  test("the token goes out as authorization: Bearer on every call", async () => {
    const client = new TokenPoolClient({
      address: fake.address,
      token: "tp_live_123",
      metadata: { "x-request-source": "checkout" },
    });
    try {
      await client.getBudget("b");
      await client.getBudget("b");
    } finally {
      client.close();
    }

    const calls = fake.received.slice(-2);
    for (const metadata of calls) {
      assert.deepEqual(metadata.get("authorization"), ["Bearer tp_live_123"]);
      assert.deepEqual(metadata.get("x-request-source"), ["checkout"]);
    }
  });

  test("per-call metadata goes with that call only", async () => {
    const client = new TokenPoolClient({ address: fake.address, token: "tp_live_123" });
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    try {
      await client.getBudget("b", { metadata: { traceparent } });
      await client.getBudget("b");
    } finally {
      client.close();
    }

    const [first, second] = fake.received.slice(-2);
    assert.deepEqual(first?.get("traceparent"), [traceparent]);
    assert.deepEqual(first?.get("authorization"), ["Bearer tp_live_123"]);
    assert.deepEqual(second?.get("traceparent"), []);
  });

  test("without a token no authorization is sent", async () => {
    const client = new TokenPoolClient({ address: fake.address });
    try {
      await client.getBudget("b");
    } finally {
      client.close();
    }

    assert.deepEqual(fake.received.at(-1)?.get("authorization"), []);
  });

  test("RetryInfo's delay is rounded up to whole milliseconds", async () => {
    const error = await refusal(
      richError(grpc.status.RESOURCE_EXHAUSTED, "no tokens now", [
        { type: "google.rpc.RetryInfo", fields: { retry_delay: { seconds: 2, nanos: 500_001 } } },
        {
          type: "google.rpc.ErrorInfo",
          fields: { reason: "TENANT_CAP", domain: "tokenpool", metadata: { pool: "priority" } },
        },
      ]),
    );

    assert.ok(error instanceof RefusedError);
    assert.equal(error.message, "no tokens now");
    assert.equal(error.reason, "TENANT_CAP");
    assert.equal(error.retryAfterMs, 2001);
    assert.equal(error.pool, "priority");
    assert.equal(error.largestGrantableTokens, undefined);
  });

  test("RefusalDetail alone gives reason, pool and retry-after", async () => {
    const error = await refusal(
      richError(grpc.status.RESOURCE_EXHAUSTED, "no tokens now", [
        {
          type: "tokenpool.v1.RefusalDetail",
          fields: {
            reason: "POOL_EXHAUSTED",
            pool: "basic",
            largestGrantableTokens: 70,
            retryAfterMs: 1500,
            requestedTokens: 90,
          },
        },
      ]),
    );

    assert.ok(error instanceof RefusedError);
    assert.equal(error.reason, "POOL_EXHAUSTED");
    assert.equal(error.pool, "basic");
    assert.equal(error.retryAfterMs, 1500);
    assert.equal(error.largestGrantableTokens, 70);
    assert.equal(error.requestedTokens, 90);
  });

  test("details of a status that names another code are ignored", async () => {
    const error = await refusal(
      richError(
        grpc.status.OUT_OF_RANGE,
        "too large",
        [{ type: "google.rpc.ErrorInfo", fields: { reason: "POOL_EXHAUSTED" } }],
        grpc.status.RESOURCE_EXHAUSTED,
      ),
    );

    assert.ok(error instanceof TooLargeError);
    assert.equal(error.reason, "");
    assert.equal(error.retryAfterMs, undefined);
  });

  test("undecodable details leave the code and message", async () => {
    const metadata = new grpc.Metadata();
    metadata.set("grpc-status-details-bin", Buffer.from([0xff, 0xff, 0xff]));

    const error = await refusal({
      code: grpc.status.UNAUTHENTICATED,
      details: "bad key",
      metadata,
    });

    assert.ok(error instanceof UnauthenticatedError);
    assert.equal(error.message, "bad key");
    assert.equal(error.reason, "");
  });

  test("a code the client does not map is an UnexpectedStatusError", async () => {
    const error = await refusal({ code: grpc.status.INTERNAL, details: "" });

    assert.ok(error instanceof UnexpectedStatusError);
    assert.equal(error.codeName, "INTERNAL");
    assert.match(error.message, /answered INTERNAL without a message/);
  });
});

function openssl(args: string[]): boolean {
  try {
    execFileSync("openssl", args, { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("over TLS", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tokenpool-tls-"));
  const file = (name: string): string => path.join(dir, name);
  // One self-signed certificate for localhost serves as CA, server and client.
  const haveCertificate = openssl([
    ...(
      "req -x509 -nodes -days 1 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 " +
      "-subj /CN=localhost -addext subjectAltName=DNS:localhost"
    ).split(" "),
    ...["-keyout", file("key.pem"), "-out", file("cert.pem")],
  ]);
  const skip = haveCertificate ? false : "openssl could not make a test certificate";
  const fake = new FakeServer();

  before(async () => {
    if (!haveCertificate) {
      return;
    }
    const key = fs.readFileSync(file("key.pem"));
    const cert = fs.readFileSync(file("cert.pem"));
    // Mutual TLS: the server demands a client certificate signed by `cert`.
    await fake.start(
      grpc.ServerCredentials.createSsl(cert, [{ private_key: key, cert_chain: cert }], true),
      "localhost",
    );
  });
  after(() => {
    fake.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("a client with the CA and its own certificate gets through", { skip }, async () => {
    const client = new TokenPoolClient({
      address: fake.address,
      token: "tp_live_456",
      tls: {
        rootCerts: fs.readFileSync(file("cert.pem")),
        privateKey: fs.readFileSync(file("key.pem")),
        certChain: fs.readFileSync(file("cert.pem")),
      },
    });
    try {
      assert.equal((await client.getBudget("b")).name, "b");
    } finally {
      client.close();
    }

    assert.deepEqual(fake.received.at(-1)?.get("authorization"), ["Bearer tp_live_456"]);
  });

  test("a client without a certificate is turned away", { skip }, async () => {
    const client = new TokenPoolClient({
      address: fake.address,
      tls: { rootCerts: fs.readFileSync(file("cert.pem")) },
      timeoutMs: 5000,
    });
    try {
      await assert.rejects(
        client.getBudget("b"),
        (error: unknown) => error instanceof UnavailableError,
      );
    } finally {
      client.close();
    }
  });

  test("a plaintext client cannot talk to a TLS server", { skip }, async () => {
    const client = new TokenPoolClient({ address: fake.address, timeoutMs: 5000 });
    try {
      await assert.rejects(
        client.getBudget("b"),
        (error: unknown) => error instanceof UnavailableError,
      );
    } finally {
      client.close();
    }
  });
});
