/**
 * TypeScript client of the tokenpool daemon: reserve tokens before each paid
 * LLM API call, settle what the call really used after it.
 *
 * `TokenPoolClient` is the whole API; failures reject with subclasses of
 * `TokenPoolError`.
 */

export {
  type CallOptions,
  type ClientOptions,
  DEFAULT_ADDRESS,
  DEFAULT_TIMEOUT_MS,
  type ReservationFunction,
  type TlsOptions,
  TokenPoolClient,
} from "./client";
export {
  ConflictError,
  DeadlineExceededError,
  type ErrorFields,
  errorFromRpc,
  InvalidRequestError,
  NotFoundError,
  PermissionDeniedError,
  RefusedError,
  type RefusalFields,
  TokenPoolError,
  TooLargeError,
  UnauthenticatedError,
  UnavailableError,
  UnexpectedStatusError,
} from "./errors";
export { ReservationScope, USAGE_FIELDS } from "./scope";
export type {
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
