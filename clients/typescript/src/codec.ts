/** Request building and answer reading, so each is done in one place. */

import type { BudgetStatus__Output } from "./generated/tokenpool/v1/BudgetStatus";
import type { ExtendRequest } from "./generated/tokenpool/v1/ExtendRequest";
import type { ExtendResponse__Output } from "./generated/tokenpool/v1/ExtendResponse";
import type { ListBudgetsResponse__Output } from "./generated/tokenpool/v1/ListBudgetsResponse";
import type { PoolDraw__Output } from "./generated/tokenpool/v1/PoolDraw";
import type { PoolStatus__Output } from "./generated/tokenpool/v1/PoolStatus";
import type { ReleaseRequest } from "./generated/tokenpool/v1/ReleaseRequest";
import type { ReleaseResponse__Output } from "./generated/tokenpool/v1/ReleaseResponse";
import type { ReserveRequest as ReserveMessage } from "./generated/tokenpool/v1/ReserveRequest";
import type { ReserveResponse__Output } from "./generated/tokenpool/v1/ReserveResponse";
import type { SettleRequest } from "./generated/tokenpool/v1/SettleRequest";
import type { SettleResponse__Output } from "./generated/tokenpool/v1/SettleResponse";
import type { TenantStatus__Output } from "./generated/tokenpool/v1/TenantStatus";
import type { Timestamp, Timestamp__Output } from "./generated/google/protobuf/Timestamp";
import { checkUsageFields, emptyUsage } from "./scope";
import type {
  BudgetStatus,
  ExtendChange,
  Extension,
  PoolDraw,
  PoolStatus,
  Release,
  Reservation,
  ReserveRequest,
  Settlement,
  TenantStatus,
  Usage,
} from "./types";

// Every field of ReserveRequest; tsc fails here when the two disagree.
const RESERVE_FIELDS = {
  budget: true,
  tenant: true,
  tokens: true,
  inputTokens: true,
  inputChars: true,
  maxOutputTokens: true,
  model: true,
  taskType: true,
  outputDetail: true,
  structuredOutput: true,
  contextItems: true,
  urgency: true,
  maxWaitMs: true,
  leaseMs: true,
  idempotencyKey: true,
  fallbackBudgets: true,
  labels: true,
} as const satisfies Record<keyof ReserveRequest, true>;

/**
 * Checks that a count the caller passes is a whole number a JS number holds exactly.
 *
 * Negative counts go through: the daemon answers them with INVALID_ARGUMENT
 * naming the field, as for every other client.
 */
export function wholeNumber(field: string, value: unknown): number {
  if (typeof value !== "number") {
    throw new TypeError(`${field} must be a number, got ${typeof value} ${String(value)}.`);
  }
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(
      `${field} must be a whole number below 2^53, got ${value}; round it first.`,
    );
  }
  return value;
}

/** Converts a 64-bit count the daemon sent (a decimal string) to a number. */
export function count(field: string, value: string | number): number {
  const number = Number(value);
  if (!Number.isSafeInteger(number)) {
    throw new RangeError(
      `The daemon sent ${field} = ${value}, which a JavaScript number cannot hold exactly.`,
    );
  }
  return number;
}

function text(field: string, value: unknown): string {
  if (typeof value !== "string") {
    throw new TypeError(`${field} must be a string, got ${typeof value}.`);
  }
  return value;
}

function flag(field: string, value: unknown): boolean {
  if (typeof value !== "boolean") {
    throw new TypeError(`${field} must be true or false, got ${typeof value}.`);
  }
  return value;
}

function optional<T>(
  value: unknown,
  field: string,
  convert: (field: string, value: unknown) => T,
): T | undefined {
  return value === undefined ? undefined : convert(field, value);
}

/** Builds a ReserveRequest message, refusing unknown and mistyped fields. */
export function reserveMessage(request: ReserveRequest): ReserveMessage {
  const unknown = Object.keys(request)
    .filter((name) => !Object.hasOwn(RESERVE_FIELDS, name))
    .sort();
  if (unknown.length > 0) {
    throw new TypeError(
      `reserve() got an unknown field ${JSON.stringify(unknown[0])}; use one of: ` +
        `${Object.keys(RESERVE_FIELDS).join(", ")}.`,
    );
  }
  const fallbackBudgets = request.fallbackBudgets ?? [];
  if (typeof fallbackBudgets === "string" || !Array.isArray(fallbackBudgets)) {
    throw new TypeError(
      `fallbackBudgets must be an array of budget names, got ${JSON.stringify(fallbackBudgets)}; ` +
        "pass [name] for one budget.",
    );
  }

  return {
    budget: text("budget", request.budget),
    tenant: text("tenant", request.tenant),
    tokens: optional(request.tokens, "tokens", wholeNumber),
    inputTokens: optional(request.inputTokens, "inputTokens", wholeNumber),
    inputChars: optional(request.inputChars, "inputChars", wholeNumber),
    maxOutputTokens: optional(request.maxOutputTokens, "maxOutputTokens", wholeNumber),
    model: optional(request.model, "model", text),
    taskType: optional(request.taskType, "taskType", text),
    outputDetail: optional(request.outputDetail, "outputDetail", wholeNumber),
    structuredOutput: optional(request.structuredOutput, "structuredOutput", flag),
    contextItems: optional(request.contextItems, "contextItems", wholeNumber),
    urgency: optional(request.urgency, "urgency", wholeNumber),
    maxWaitMs: optional(request.maxWaitMs, "maxWaitMs", wholeNumber),
    leaseMs: optional(request.leaseMs, "leaseMs", wholeNumber),
    idempotencyKey: optional(request.idempotencyKey, "idempotencyKey", text),
    fallbackBudgets: fallbackBudgets.map((name, i) => text(`fallbackBudgets[${i}]`, name)),
    labels: { ...request.labels },
  };
}

/** Builds a SettleRequest from usage fields over the "not given" values. */
export function settleMessage(
  reservationId: string,
  tenant: string,
  usage: Partial<Usage>,
): SettleRequest {
  checkUsageFields(usage);
  const merged = { ...emptyUsage(), ...usage };
  return {
    reservationId: text("reservationId", reservationId),
    tenant: text("tenant", tenant),
    inputTokens: wholeNumber("inputTokens", merged.inputTokens),
    cachedInputTokens: wholeNumber("cachedInputTokens", merged.cachedInputTokens),
    cacheWriteTokens: wholeNumber("cacheWriteTokens", merged.cacheWriteTokens),
    outputTokens: wholeNumber("outputTokens", merged.outputTokens),
    incomplete: flag("incomplete", merged.incomplete),
    responseCacheHit: flag("responseCacheHit", merged.responseCacheHit),
    model: text("model", merged.model),
    providerRateLimited: flag("providerRateLimited", merged.providerRateLimited),
    providerRemainingTokens: wholeNumber("providerRemainingTokens", merged.providerRemainingTokens),
    providerLimitTokens: wholeNumber("providerLimitTokens", merged.providerLimitTokens),
  };
}

/** Builds a ReleaseRequest. */
export function releaseMessage(
  reservationId: string,
  tenant: string,
  billedInputTokens: number,
): ReleaseRequest {
  return {
    reservationId: text("reservationId", reservationId),
    tenant: text("tenant", tenant),
    billedInputTokens: wholeNumber("billedInputTokens", billedInputTokens),
  };
}

function timestamp(field: string, date: Date): Timestamp {
  const ms = date instanceof Date ? date.getTime() : Number.NaN;
  if (Number.isNaN(ms)) {
    throw new RangeError(`${field} must be a valid Date, got ${String(date)}.`);
  }
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1_000_000 };
}

/** Builds an ExtendRequest; an absent lease end keeps the current one. */
export function extendMessage(
  reservationId: string,
  tenant: string,
  change: ExtendChange,
): ExtendRequest {
  return {
    reservationId: text("reservationId", reservationId),
    tenant: text("tenant", tenant),
    totalTokens: wholeNumber("totalTokens", change.totalTokens ?? 0),
    ...(change.leaseExpiresAt !== undefined && {
      leaseExpiresAt: timestamp("leaseExpiresAt", change.leaseExpiresAt),
    }),
  };
}

// An unset timestamp reads as the epoch, as protobuf's own libraries read it.
function date(value: Timestamp__Output | null): Date {
  if (value === null) {
    return new Date(0);
  }
  return new Date(count("seconds", value.seconds) * 1000 + Math.floor(value.nanos / 1e6));
}

function sources(draws: readonly PoolDraw__Output[]): PoolDraw[] {
  return draws.map((draw) => ({ pool: draw.pool, tokens: count("tokens", draw.tokens) }));
}

/** Converts a ReserveResponse. */
export function reservation(response: ReserveResponse__Output): Reservation {
  return {
    reservationId: response.reservationId,
    grantedTokens: count("grantedTokens", response.grantedTokens),
    pool: response.pool,
    budget: response.budget,
    sources: sources(response.sources),
    complexityScore: response.complexityScore,
    multiplier: response.multiplier,
    leaseExpiresAt: date(response.leaseExpiresAt),
    waitedMs: count("waitedMs", response.waitedMs),
  };
}

/** Converts a SettleResponse. */
export function settlement(response: SettleResponse__Output): Settlement {
  return {
    chargedTokens: count("chargedTokens", response.chargedTokens),
    refundedTokens: count("refundedTokens", response.refundedTokens),
    overrunTokens: count("overrunTokens", response.overrunTokens),
  };
}

/** Converts a ReleaseResponse. */
export function release(response: ReleaseResponse__Output): Release {
  return {
    chargedTokens: count("chargedTokens", response.chargedTokens),
    refundedTokens: count("refundedTokens", response.refundedTokens),
  };
}

/** Converts an ExtendResponse. */
export function extension(response: ExtendResponse__Output): Extension {
  return {
    grantedTokens: count("grantedTokens", response.grantedTokens),
    sources: sources(response.sources),
    leaseExpiresAt: date(response.leaseExpiresAt),
  };
}

function poolStatus(pool: PoolStatus__Output): PoolStatus {
  return {
    name: pool.name,
    sharePercent: pool.sharePercent,
    capacityTokens: count("capacityTokens", pool.capacityTokens),
    availableTokens: count("availableTokens", pool.availableTokens),
    inFlightTokens: count("inFlightTokens", pool.inFlightTokens),
    debtTokens: count("debtTokens", pool.debtTokens),
    waiting: count("waiting", pool.waiting),
    lentTokens: count("lentTokens", pool.lentTokens),
    borrowedTokens: count("borrowedTokens", pool.borrowedTokens),
    utilization: pool.utilization,
    chargedTokens: count("chargedTokens", pool.chargedTokens),
  };
}

/** Converts a BudgetStatus message. */
export function budgetStatus(budget: BudgetStatus__Output): BudgetStatus {
  return {
    name: budget.name,
    capacityTokens: count("capacityTokens", budget.capacityTokens),
    windowSeconds: count("windowSeconds", budget.windowSeconds),
    pools: budget.pools.map(poolStatus),
    openReservations: count("openReservations", budget.openReservations),
  };
}

/** Converts a ListBudgetsResponse. */
export function budgetStatuses(response: ListBudgetsResponse__Output): BudgetStatus[] {
  return response.budgets.map(budgetStatus);
}

/** Converts a TenantStatus message. */
export function tenantStatus(tenant: TenantStatus__Output): TenantStatus {
  return {
    name: tenant.name,
    tier: tenant.tier,
    weight: count("weight", tenant.weight),
    configured: tenant.configured,
    openReservations: count("openReservations", tenant.openReservations),
    inFlightTokens: count("inFlightTokens", tenant.inFlightTokens),
  };
}
