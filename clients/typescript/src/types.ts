/** Values the tokenpool client takes and returns. */

/**
 * What `reserve` asks for: a budget, a tenant, and how to size the hold.
 *
 * Give `tokens` to hold an explicit count, or leave it out and give what the
 * daemon sizes the hold from (input and output fields). Every optional field
 * defaults to 0, "", false or empty, which the daemon reads as not given.
 */
export interface ReserveRequest {
  /** Budget (upstream quota) to draw on. */
  budget: string;
  /** Who spends the tokens. */
  tenant: string;
  /** Explicit count to hold; 0 sizes the hold from the fields below. */
  tokens?: number;
  /** Input (prompt) tokens of the call, when known. */
  inputTokens?: number;
  /** Input size in characters, for callers with no token count. */
  inputChars?: number;
  /** The call's max output tokens, when known; caps the output allowance. */
  maxOutputTokens?: number;
  /** Model the call goes to (pricing and reports). */
  model?: string;
  /** classification, extraction, summarization, analysis, generation, code or other. */
  taskType?: string;
  /** How detailed the output is meant to be, 0 (brief) to 3. */
  outputDetail?: number;
  /** Whether the output is JSON or the like. */
  structuredOutput?: boolean;
  /** Prior turns or documents the call references. */
  contextItems?: number;
  /** 1 (the default when 0) upwards; weights priority sharing. */
  urgency?: number;
  /** How long to wait for tokens, in milliseconds; 0 answers at once. */
  maxWaitMs?: number;
  /** Lease length in milliseconds; 0 takes the budget's default. */
  leaseMs?: number;
  /** Makes a retried reserve return the original reservation. */
  idempotencyKey?: string;
  /** Budgets to try, in order, when this one refuses. */
  fallbackBudgets?: readonly string[];
  /** Free labels (endpoint and the like) for metrics and reports. */
  labels?: Readonly<Record<string, string>>;
}

/** Tokens a reservation drew from one pool. */
export interface PoolDraw {
  /** basic, priority or burst. */
  readonly pool: string;
  /** Tokens drawn from that pool. */
  readonly tokens: number;
}

/** A granted reservation: tokens held for one API call. */
export interface Reservation {
  /** Names the reservation to settle, release and extend. */
  readonly reservationId: string;
  /** Tokens held for the call. */
  readonly grantedTokens: number;
  /** The tenant's own pool (basic or priority). */
  readonly pool: string;
  /** The budget that granted it (a fallback budget when one did). */
  readonly budget: string;
  /** Where the tokens came from, in drawing order. */
  readonly sources: readonly PoolDraw[];
  /** Complexity score 1-10; 0 when the caller gave an explicit count. */
  readonly complexityScore: number;
  /** Allocation multiplier applied to the output allowance. */
  readonly multiplier: number;
  /** When the lease ends; a reservation not settled by then expires. */
  readonly leaseExpiresAt: Date;
  /** Time spent waiting for tokens, in milliseconds. */
  readonly waitedMs: number;
}

/** What an API call really used, as reported by settle. */
export interface Usage {
  /** Input tokens that were not prompt-cache reads. */
  inputTokens: number;
  /** Input tokens read from the provider's prompt cache. */
  cachedInputTokens: number;
  /** Input tokens written to the provider's prompt cache. */
  cacheWriteTokens: number;
  /** Output tokens. */
  outputTokens: number;
  /** The call was cut off; the larger of usage and hold is charged. */
  incomplete: boolean;
  /** The answer came from a response cache; everything is refunded. */
  responseCacheHit: boolean;
  /** Model that served the call, when it differs from the reservation's. */
  model: string;
  /** The provider answered with a rate-limit error. */
  providerRateLimited: boolean;
  /** Remaining tokens the provider's headers reported, if any. */
  providerRemainingTokens: number;
  /** Token limit the provider's headers reported, if any. */
  providerLimitTokens: number;
}

/** How the daemon accounted a settle. */
export interface Settlement {
  /** Tokens charged against the budget. */
  readonly chargedTokens: number;
  /** Tokens given back to the pools. */
  readonly refundedTokens: number;
  /** Tokens used beyond the hold. */
  readonly overrunTokens: number;
}

/** How the daemon accounted a release. */
export interface Release {
  /** Tokens charged (the billed input tokens). */
  readonly chargedTokens: number;
  /** Tokens given back to the pools. */
  readonly refundedTokens: number;
}

/** What `extend` changes; a field left out keeps the current value. */
export interface ExtendChange {
  /** New total hold; 0 or absent keeps the current hold. */
  totalTokens?: number;
  /** New lease end; absent keeps the current one. */
  leaseExpiresAt?: Date;
}

/** A reservation's hold and lease after an extend. */
export interface Extension {
  /** Tokens held now. */
  readonly grantedTokens: number;
  /** Where the hold comes from now. */
  readonly sources: readonly PoolDraw[];
  /** When the lease ends now. */
  readonly leaseExpiresAt: Date;
}

/** One pool of a budget as it stands now. */
export interface PoolStatus {
  /** basic, priority or burst. */
  readonly name: string;
  /** Whole percent of the budget's capacity. */
  readonly sharePercent: number;
  /** Tokens per window. */
  readonly capacityTokens: number;
  /** Tokens that can be drawn now (never below zero). */
  readonly availableTokens: number;
  /** Tokens open reservations drew from this pool, lent ones included. */
  readonly inFlightTokens: number;
  /** How far the pool's level is below zero. */
  readonly debtTokens: number;
  /** Requests queued for this pool. */
  readonly waiting: number;
  /** Drawn from this pool by other pools' tenants, outstanding now. */
  readonly lentTokens: number;
  /** Drawn by this pool's tenants from other pools, outstanding now. */
  readonly borrowedTokens: number;
  /** (capacity - available) / capacity; 0 at capacity 0. */
  readonly utilization: number;
  /** Tokens charged to this pool since the daemon started. */
  readonly chargedTokens: number;
}

/** A budget's capacity and pools as they stand now. */
export interface BudgetStatus {
  /** The budget's name. */
  readonly name: string;
  /** Tokens per window. */
  readonly capacityTokens: number;
  /** Length of the refill window in seconds. */
  readonly windowSeconds: number;
  /** basic, priority and burst, in that order. */
  readonly pools: readonly PoolStatus[];
  /** Reservations open now. */
  readonly openReservations: number;
}

/** A tenant's tier, weight and what it holds now. */
export interface TenantStatus {
  /** The tenant's name. */
  readonly name: string;
  /** basic or priority. */
  readonly tier: string;
  /** Share weight in its pool. */
  readonly weight: number;
  /** Whether the configuration names it (false: admitted as unknown). */
  readonly configured: boolean;
  /** Reservations it holds open now. */
  readonly openReservations: number;
  /** Tokens it holds now, over all budgets. */
  readonly inFlightTokens: number;
}
