/**
 * Errors of the tokenpool client, decoded from gRPC statuses.
 *
 * Every failed call rejects with a subclass of one root, chosen by the code:
 *
 *     TokenPoolError
 *     ├── InvalidRequestError     INVALID_ARGUMENT
 *     ├── NotFoundError           NOT_FOUND
 *     ├── ConflictError           FAILED_PRECONDITION
 *     ├── RefusedError            RESOURCE_EXHAUSTED (retryable)
 *     ├── TooLargeError           OUT_OF_RANGE (never grantable; do not retry)
 *     ├── PermissionDeniedError   PERMISSION_DENIED
 *     ├── UnauthenticatedError    UNAUTHENTICATED
 *     ├── UnavailableError        UNAVAILABLE
 *     ├── DeadlineExceededError   DEADLINE_EXCEEDED
 *     └── UnexpectedStatusError   any other code
 *
 * Arguments the client can reject itself (an unknown field, a fractional
 * token count) throw TypeError or RangeError before any call.
 */

import { Metadata, status } from "@grpc/grpc-js";

import { readStatusDetails } from "./status-details";

/** What every client error carries besides its message. */
export interface ErrorFields {
  /** The gRPC status code. */
  readonly code: status;
  /** The google.rpc.ErrorInfo reason, or "" when none was sent. */
  readonly reason?: string;
  /** The google.rpc.ErrorInfo metadata (empty when none was sent). */
  readonly metadata?: Readonly<Record<string, string>>;
  /** The grpc-js error this one was decoded from. */
  readonly cause?: unknown;
}

/** What the two refusals carry besides ErrorFields. */
export interface RefusalFields extends ErrorFields {
  readonly pool?: string;
  readonly retryAfterMs?: number;
  readonly largestGrantableTokens?: number;
  readonly requestedTokens?: number;
}

/** Raised when a call to the daemon fails; the root of all client errors. */
export class TokenPoolError extends Error {
  /** The gRPC status code. */
  readonly code: status;
  /** The code's name, e.g. "RESOURCE_EXHAUSTED". */
  readonly codeName: string;
  /** The google.rpc.ErrorInfo reason, e.g. "POOL_EXHAUSTED"; "" when none was sent. */
  readonly reason: string;
  /** The google.rpc.ErrorInfo metadata; empty when none was sent. */
  readonly metadata: Readonly<Record<string, string>>;

  constructor(message: string, fields: ErrorFields) {
    const codeName = status[fields.code] ?? `CODE_${fields.code}`;
    super(
      message || `The daemon answered ${codeName} without a message; check its log for the cause.`,
      fields.cause === undefined ? undefined : { cause: fields.cause },
    );
    this.name = new.target.name;
    this.code = fields.code;
    this.codeName = codeName;
    this.reason = fields.reason ?? "";
    this.metadata = { ...fields.metadata };
  }
}

/** Raised when the daemon rejects a request's arguments (INVALID_ARGUMENT). */
export class InvalidRequestError extends TokenPoolError {}

/** Raised when a named budget, tenant or reservation does not exist. */
export class NotFoundError extends TokenPoolError {}

/**
 * Raised when the request conflicts with the reservation's state.
 *
 * The status is FAILED_PRECONDITION: for example a settle after expiry or
 * release, or an idempotency key reused with different arguments.
 */
export class ConflictError extends TokenPoolError {}

/** Base of the two refusals, which carry the RefusalDetail; never raised itself. */
abstract class RefusalError extends TokenPoolError {
  /** The pool the request was for, or "" when not sent. */
  readonly pool: string;
  /** Suggested wait before retrying, in milliseconds, or undefined. */
  readonly retryAfterMs: number | undefined;
  /** Largest request grantable now, or undefined when not sent. */
  readonly largestGrantableTokens: number | undefined;
  /** Tokens the request asked for, or undefined when not sent. */
  readonly requestedTokens: number | undefined;

  constructor(message: string, fields: RefusalFields) {
    super(message, fields);
    this.pool = fields.pool ?? "";
    this.retryAfterMs = fields.retryAfterMs;
    this.largestGrantableTokens = fields.largestGrantableTokens;
    this.requestedTokens = fields.requestedTokens;
  }
}

/**
 * Raised when too few tokens are free now (RESOURCE_EXHAUSTED).
 *
 * Retry after `retryAfterMs`, or ask for at most `largestGrantableTokens`.
 */
export class RefusedError extends RefusalError {}

/**
 * Raised when a request exceeds what could ever be granted (OUT_OF_RANGE).
 *
 * Retrying cannot help: ask for at most `largestGrantableTokens`, or raise
 * the budget's capacity.
 */
export class TooLargeError extends RefusalError {}

/** Raised when the daemon refuses this caller or tenant (PERMISSION_DENIED). */
export class PermissionDeniedError extends TokenPoolError {}

/** Raised when the call carries no valid credentials (UNAUTHENTICATED). */
export class UnauthenticatedError extends TokenPoolError {}

/** Raised when the daemon cannot be reached or cannot serve (UNAVAILABLE). */
export class UnavailableError extends TokenPoolError {}

/** Raised when the call's deadline passes before an answer arrives. */
export class DeadlineExceededError extends TokenPoolError {}

/** Raised when the daemon answers with a status this client does not map. */
export class UnexpectedStatusError extends TokenPoolError {}

type ErrorClass = new (message: string, fields: ErrorFields) => TokenPoolError;

// The one place where status codes turn into error classes.
const ERRORS_BY_CODE = new Map<status, ErrorClass>([
  [status.INVALID_ARGUMENT, InvalidRequestError],
  [status.NOT_FOUND, NotFoundError],
  [status.FAILED_PRECONDITION, ConflictError],
  [status.RESOURCE_EXHAUSTED, RefusedError],
  [status.OUT_OF_RANGE, TooLargeError],
  [status.PERMISSION_DENIED, PermissionDeniedError],
  [status.UNAUTHENTICATED, UnauthenticatedError],
  [status.UNAVAILABLE, UnavailableError],
  [status.DEADLINE_EXCEEDED, DeadlineExceededError],
]);

interface ServiceErrorLike {
  code: number;
  details?: string;
  metadata?: Metadata;
}

function isServiceError(error: unknown): error is ServiceErrorLike {
  return (
    error instanceof Error &&
    typeof (error as Partial<ServiceErrorLike>).code === "number" &&
    (error as Partial<ServiceErrorLike>).metadata instanceof Metadata
  );
}

/**
 * Translates a failed grpc-js call into the matching client error.
 *
 * Reads google.rpc ErrorInfo and RetryInfo and the tokenpool.v1
 * RefusalDetail from the status details; fields of details that were not
 * sent are undefined or "". Anything that is not a grpc-js call error
 * becomes an UnexpectedStatusError with code UNKNOWN.
 */
export function errorFromRpc(error: unknown): TokenPoolError {
  if (!isServiceError(error)) {
    return new UnexpectedStatusError(String(error), { code: status.UNKNOWN, cause: error });
  }

  const code = error.code as status;
  const message = error.details ?? "";
  const details = readStatusDetails(code, message, error.metadata);
  const reason = details.errorInfo?.reason || details.refusal?.reason || "";
  const metadata = details.errorInfo?.metadata ?? {};
  const Class = ERRORS_BY_CODE.get(code) ?? UnexpectedStatusError;
  if (!(Class.prototype instanceof RefusalError)) {
    return new Class(message, { code, reason, metadata, cause: error });
  }

  const refusal = details.refusal;
  // RetryInfo is the standard place; RefusalDetail repeats it for clients
  // that read only tokenpool's own detail. 0 there means "no hint".
  const retryAfterMs =
    details.retryDelayMs ??
    (refusal !== undefined && refusal.retryAfterMs > 0 ? refusal.retryAfterMs : undefined);
  const fields: RefusalFields = {
    code,
    reason,
    metadata,
    cause: error,
    pool: refusal?.pool || metadata.pool || "",
    ...(retryAfterMs !== undefined && { retryAfterMs }),
    ...(refusal !== undefined && {
      largestGrantableTokens: refusal.largestGrantableTokens,
      requestedTokens: refusal.requestedTokens,
    }),
  };
  return new Class(message, fields);
}
