/** The client of the daemon's TokenPool service. */

import { randomUUID } from "node:crypto";

import * as grpc from "@grpc/grpc-js";

import * as codec from "./codec";
import { errorFromRpc } from "./errors";
import type { BudgetStatus__Output } from "./generated/tokenpool/v1/BudgetStatus";
import type { ExtendResponse__Output } from "./generated/tokenpool/v1/ExtendResponse";
import type { ListBudgetsResponse__Output } from "./generated/tokenpool/v1/ListBudgetsResponse";
import type { ReleaseResponse__Output } from "./generated/tokenpool/v1/ReleaseResponse";
import type { ReserveResponse__Output } from "./generated/tokenpool/v1/ReserveResponse";
import type { SettleResponse__Output } from "./generated/tokenpool/v1/SettleResponse";
import type { TenantStatus__Output } from "./generated/tokenpool/v1/TenantStatus";
import type { TokenPoolClient as TokenPoolStub } from "./generated/tokenpool/v1/TokenPool";
import { tokenpool } from "./proto";
import { ReservationScope } from "./scope";
import { traceMetadata } from "./trace";
import type {
  BudgetStatus,
  ExtendChange,
  Extension,
  Release,
  Reservation,
  ReserveRequest,
  Settlement,
  TenantStatus,
  Usage,
} from "./types";

/** Address of a daemon running with its default configuration. */
export const DEFAULT_ADDRESS = "127.0.0.1:50051";

/** Milliseconds a call may take before the client gives up, waiting for tokens aside. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/** PEM files for a TLS channel; every field may be left out. */
export interface TlsOptions {
  /** CA certificates to trust; the system's roots when left out. */
  rootCerts?: Buffer;
  /** The client's private key, for mutual TLS (with certChain). */
  privateKey?: Buffer;
  /** The client's certificate chain, for mutual TLS (with privateKey). */
  certChain?: Buffer;
}

/** How a TokenPoolClient reaches the daemon. */
export interface ClientOptions {
  /** host:port of the daemon; DEFAULT_ADDRESS when left out. */
  address?: string;
  /** Deadline of each call in milliseconds; Reserve adds its maxWaitMs on top. */
  timeoutMs?: number;
  /** A tenant API key, sent as `authorization: Bearer <token>` on every call. */
  token?: string;
  /** TLS: true for the system's roots, or the PEM files to use. */
  tls?: boolean | TlsOptions;
  /** Channel credentials made by hand; instead of `tls`, never with it. */
  credentials?: grpc.ChannelCredentials;
  /** More metadata sent with every call. */
  metadata?: Readonly<Record<string, string>>;
  /** grpc-js channel options, e.g. keepalive settings. */
  channelOptions?: grpc.ChannelOptions;
}

/** Options of one call. */
export interface CallOptions {
  /** This call's deadline in milliseconds, instead of the client's. */
  timeoutMs?: number;
  /** Metadata for this call only, e.g. a W3C `traceparent`; over the client's. */
  metadata?: Readonly<Record<string, string>>;
}

/** What `withReservation` settles or releases with; see ReservationScope. */
export type ReservationFunction<T> = (scope: ReservationScope) => T | Promise<T>;

// A stub method reduced to the one overload the client calls.
type UnaryInvoker<R> = (
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: grpc.requestCallback<R>,
) => grpc.ClientUnaryCall;

function positiveMs(field: string, value: number): number {
  if (!(typeof value === "number" && value > 0 && Number.isFinite(value))) {
    throw new RangeError(`${field} must be a positive number of milliseconds, got ${value}.`);
  }
  return value;
}

function channelCredentials(options: ClientOptions): grpc.ChannelCredentials {
  if (options.credentials !== undefined && options.tls !== undefined) {
    throw new TypeError("Give either tls or credentials, not both.");
  }
  if (options.credentials !== undefined) {
    return options.credentials;
  }
  if (options.tls === undefined || options.tls === false) {
    return grpc.credentials.createInsecure();
  }
  const files = options.tls === true ? {} : options.tls;
  return grpc.credentials.createSsl(
    files.rootCerts ?? null,
    files.privateKey ?? null,
    files.certChain ?? null,
  );
}

function callMetadata(options: ClientOptions): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(options.metadata ?? {})) {
    metadata.set(key, value);
  }
  if (options.token === undefined) {
    return metadata;
  }

  if (typeof options.token !== "string" || options.token === "") {
    throw new TypeError("token must be a non-empty string (a tenant API key).");
  }
  if (metadata.get("authorization").length > 0) {
    throw new TypeError("Give the token either as token or in metadata.authorization, not both.");
  }
  metadata.set("authorization", `Bearer ${options.token}`);
  return metadata;
}

/**
 * Client of the daemon's TokenPool service: reserve before each paid API
 * call, settle after it.
 *
 * Every failed call rejects with a TokenPoolError subclass whose `cause` is
 * the grpc-js error. Call `close()` when done.
 */
export class TokenPoolClient {
  private readonly stub: TokenPoolStub;
  private readonly timeoutMs: number;
  // Built once: the token and extra metadata are the same on every call.
  private readonly metadata: grpc.Metadata;

  constructor(options: ClientOptions = {}) {
    this.timeoutMs = positiveMs("timeoutMs", options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.metadata = callMetadata(options);
    this.stub = new tokenpool.TokenPool(
      options.address ?? DEFAULT_ADDRESS,
      channelCredentials(options),
      options.channelOptions ?? {},
    );
  }

  /** Closes the channel; calls after this fail. */
  close(): void {
    this.stub.close();
  }

  private unary<R>(invoke: UnaryInvoker<R>, call: CallOptions, timeoutMs?: number): Promise<R> {
    const deadline =
      Date.now() + positiveMs("timeoutMs", timeoutMs ?? call.timeoutMs ?? this.timeoutMs);
    // grpc-js may add to the metadata it is given; each call gets a copy.
    const metadata = this.metadata.clone();
    // The caller's trace context, when @opentelemetry/api is installed;
    // metadata given for the call wins over it.
    for (const [key, value] of Object.entries(traceMetadata())) {
      metadata.set(key, value);
    }
    for (const [key, value] of Object.entries(call.metadata ?? {})) {
      metadata.set(key, value);
    }
    return new Promise((resolve, reject) => {
      invoke(metadata, { deadline }, (error, response) => {
        if (error) {
          reject(errorFromRpc(error));
        } else if (response === undefined) {
          reject(errorFromRpc(new Error("The daemon sent an empty answer.")));
        } else {
          resolve(response);
        }
      });
    });
  }

  /**
   * Holds tokens for one API call, waiting up to `maxWaitMs` for them.
   *
   * The call's deadline is the timeout plus `maxWaitMs`: the daemon waits
   * for tokens no longer than the deadline, so it must not cut the wait short.
   *
   * @throws RefusedError Too few tokens are free now; retry later.
   * @throws TooLargeError The request could never be granted.
   * @throws TypeError A field is unknown or of the wrong type.
   */
  async reserve(request: ReserveRequest, call: CallOptions = {}): Promise<Reservation> {
    const message = codec.reserveMessage(request);
    const waitMs = Math.max(request.maxWaitMs ?? 0, 0);
    const timeoutMs = (call.timeoutMs ?? this.timeoutMs) + waitMs;
    const response = await this.unary<ReserveResponse__Output>(
      (metadata, options, callback) => this.stub.reserve(message, metadata, options, callback),
      call,
      timeoutMs,
    );
    return codec.reservation(response);
  }

  /** Reports what the call really used; unused tokens go back. */
  async settle(
    reservationId: string,
    tenant: string,
    usage: Partial<Usage> = {},
    call: CallOptions = {},
  ): Promise<Settlement> {
    const message = codec.settleMessage(reservationId, tenant, usage);
    const response = await this.unary<SettleResponse__Output>(
      (metadata, options, callback) => this.stub.settle(message, metadata, options, callback),
      call,
    );
    return codec.settlement(response);
  }

  /**
   * Ends a reservation whose call never happened or failed.
   *
   * Give billedInputTokens when the provider billed the input anyway.
   */
  async release(
    reservationId: string,
    tenant: string,
    options: { billedInputTokens?: number } = {},
    call: CallOptions = {},
  ): Promise<Release> {
    const message = codec.releaseMessage(reservationId, tenant, options.billedInputTokens ?? 0);
    const response = await this.unary<ReleaseResponse__Output>(
      (metadata, callOptions, callback) =>
        this.stub.release(message, metadata, callOptions, callback),
      call,
    );
    return codec.release(response);
  }

  /** Sets a new total hold and/or lease end for a running call. */
  async extend(
    reservationId: string,
    tenant: string,
    change: ExtendChange,
    call: CallOptions = {},
  ): Promise<Extension> {
    const message = codec.extendMessage(reservationId, tenant, change);
    const response = await this.unary<ExtendResponse__Output>(
      (metadata, options, callback) => this.stub.extend(message, metadata, options, callback),
      call,
    );
    return codec.extension(response);
  }

  /** Returns one budget's capacity and pools as they stand now. */
  async getBudget(budget: string, call: CallOptions = {}): Promise<BudgetStatus> {
    const response = await this.unary<BudgetStatus__Output>(
      (metadata, options, callback) => this.stub.getBudget({ budget }, metadata, options, callback),
      call,
    );
    return codec.budgetStatus(response);
  }

  /** Returns every budget the daemon serves, in configuration order. */
  async listBudgets(call: CallOptions = {}): Promise<BudgetStatus[]> {
    const response = await this.unary<ListBudgetsResponse__Output>(
      (metadata, options, callback) => this.stub.listBudgets({}, metadata, options, callback),
      call,
    );
    return codec.budgetStatuses(response);
  }

  /** Returns a tenant's tier, weight and what it holds now. */
  async getTenant(tenant: string, call: CallOptions = {}): Promise<TenantStatus> {
    const response = await this.unary<TenantStatus__Output>(
      (metadata, options, callback) => this.stub.getTenant({ tenant }, metadata, options, callback),
      call,
    );
    return codec.tenantStatus(response);
  }

  /**
   * Reserves, runs fn, then settles its recorded usage, or releases if it throws.
   *
   * Fill in `scope.usage` (or call `scope.record(...)`) inside fn. When fn
   * throws, the reservation is released, charging `scope.billedInputTokens`,
   * and fn's error propagates; a failed release is reported as a process
   * warning (code TOKENPOOL_RELEASE_FAILED), never thrown over it, and the
   * reservation's lease then expires. A fresh idempotency key is used unless
   * the request has one.
   *
   * @returns What fn returned, once the settle is acknowledged.
   */
  async withReservation<T>(
    request: ReserveRequest,
    fn: ReservationFunction<T>,
    call: CallOptions = {},
  ): Promise<T> {
    const keyed = { ...request, idempotencyKey: request.idempotencyKey || randomUUID() };
    const scope = new ReservationScope(await this.reserve(keyed, call));

    let result: T;
    try {
      result = await fn(scope);
    } catch (error) {
      await this.releaseQuietly(scope, request.tenant, call);
      throw error;
    }

    await this.settle(scope.reservation.reservationId, request.tenant, scope.usage, call);
    return result;
  }

  private async releaseQuietly(
    scope: ReservationScope,
    tenant: string,
    call: CallOptions,
  ): Promise<void> {
    const reservationId = scope.reservation.reservationId;
    try {
      await this.release(
        reservationId,
        tenant,
        { billedInputTokens: scope.billedInputTokens },
        call,
      );
    } catch (error) {
      process.emitWarning(
        `Release failed after the function threw; the lease will expire ` +
          `(reservationId=${reservationId}): ${String(error)}`,
        { code: "TOKENPOOL_RELEASE_FAILED" },
      );
    }
  }
}
