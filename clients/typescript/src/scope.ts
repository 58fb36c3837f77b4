/** The reservation open inside `withReservation`, and the usage it settles. */

import type { Reservation, Usage } from "./types";

/** Names `settle` and `ReservationScope.record` accept as usage fields. */
export const USAGE_FIELDS: readonly (keyof Usage)[] = [
  "inputTokens",
  "cachedInputTokens",
  "cacheWriteTokens",
  "outputTokens",
  "incomplete",
  "responseCacheHit",
  "model",
  "providerRateLimited",
  "providerRemainingTokens",
  "providerLimitTokens",
];

/** A Usage with every field at its "not given" value. */
export function emptyUsage(): Usage {
  return {
    inputTokens: 0,
    cachedInputTokens: 0,
    cacheWriteTokens: 0,
    outputTokens: 0,
    incomplete: false,
    responseCacheHit: false,
    model: "",
    providerRateLimited: false,
    providerRemainingTokens: 0,
    providerLimitTokens: 0,
  };
}

/**
 * Throws a TypeError when `fields` names something Usage does not have.
 *
 * Plain JavaScript callers get no compile-time check, and a misspelt field
 * would otherwise be settled as 0 without a word.
 */
export function checkUsageFields(fields: object): void {
  const known: readonly string[] = USAGE_FIELDS;
  const unknown = Object.keys(fields)
    .filter((name) => !known.includes(name))
    .sort();
  if (unknown.length > 0) {
    throw new TypeError(
      `Unknown usage field ${JSON.stringify(unknown[0])}; use one of: ` +
        `${USAGE_FIELDS.join(", ")}.`,
    );
  }
}

/**
 * A granted reservation and the usage to settle when the function returns.
 *
 * Fill in `usage` (or call `record`) before the function passed to
 * `withReservation` returns; when it throws, the reservation is released
 * instead, charging `billedInputTokens`.
 */
export class ReservationScope {
  /** The granted reservation. */
  readonly reservation: Reservation;
  /** Usage settled when the function returns normally. */
  readonly usage: Usage = emptyUsage();
  /** Input tokens the provider billed although the call failed. */
  billedInputTokens = 0;

  constructor(reservation: Reservation) {
    this.reservation = reservation;
  }

  /**
   * Sets usage fields, e.g. `scope.record({ outputTokens: 512 })`.
   *
   * @throws TypeError A name is not a field of `Usage`.
   */
  record(fields: Partial<Usage>): void {
    checkUsageFields(fields);
    Object.assign(this.usage, fields);
  }
}
