/** The google.rpc status details a failed call carries, decoded. */

import type { Metadata } from "@grpc/grpc-js";
import * as protobuf from "protobufjs";

import { protoRoot } from "./proto";

// The trailer in which gRPC carries a serialized google.rpc.Status.
const STATUS_DETAILS_KEY = "grpc-status-details-bin";

// The messages of google/rpc/status.proto and error_details.proto that this
// client reads, with the well-known types they use. These are frozen public
// APIs; writing out the few fields read spares a dependency on the whole
// googleapis tree.
const googleRoot = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Any: {
              fields: {
                typeUrl: { type: "string", id: 1 },
                value: { type: "bytes", id: 2 },
              },
            },
            Duration: {
              fields: {
                seconds: { type: "int64", id: 1 },
                nanos: { type: "int32", id: 2 },
              },
            },
          },
        },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: "int32", id: 1 },
                message: { type: "string", id: 2 },
                details: { rule: "repeated", type: "google.protobuf.Any", id: 3 },
              },
            },
            ErrorInfo: {
              fields: {
                reason: { type: "string", id: 1 },
                domain: { type: "string", id: 2 },
                metadata: { keyType: "string", type: "string", id: 3 },
              },
            },
            RetryInfo: {
              fields: {
                retryDelay: { type: "google.protobuf.Duration", id: 1 },
              },
            },
          },
        },
      },
    },
  },
} as protobuf.INamespace);

const StatusType = googleRoot.lookupType("google.rpc.Status");
const ErrorInfoType = googleRoot.lookupType("google.rpc.ErrorInfo");
const RetryInfoType = googleRoot.lookupType("google.rpc.RetryInfo");
const RefusalDetailType = protoRoot.lookupType("tokenpool.v1.RefusalDetail");

// 64-bit integers as decimal strings, unset fields as their defaults.
const TO_OBJECT: protobuf.IConversionOptions = {
  longs: String,
  defaults: true,
};

/** google.rpc.ErrorInfo: which limit or pool, and facts about it. */
export interface ErrorInfo {
  readonly reason: string;
  readonly domain: string;
  readonly metadata: Readonly<Record<string, string>>;
}

/** tokenpool.v1.RefusalDetail, sent with RESOURCE_EXHAUSTED and OUT_OF_RANGE. */
export interface RefusalDetail {
  readonly reason: string;
  readonly pool: string;
  readonly largestGrantableTokens: number;
  readonly retryAfterMs: number;
  readonly requestedTokens: number;
}

/** The details of one failed call; a detail that was not sent is absent. */
export interface StatusDetails {
  readonly errorInfo?: ErrorInfo;
  /** google.rpc.RetryInfo's delay, rounded up to whole milliseconds. */
  readonly retryDelayMs?: number;
  readonly refusal?: RefusalDetail;
}

interface AnyMessage {
  typeUrl: string;
  value: Uint8Array;
}

function decode(type: protobuf.Type, bytes: Uint8Array): Record<string, unknown> {
  return type.toObject(type.decode(bytes), TO_OBJECT);
}

// The name after the last "/" of an Any's type URL is the message's full name.
function find(details: readonly AnyMessage[], type: protobuf.Type): Uint8Array | undefined {
  const fullName = type.fullName.replace(/^\./, "");
  const detail = details.find(
    (candidate) => candidate.typeUrl.slice(candidate.typeUrl.lastIndexOf("/") + 1) === fullName,
  );
  return detail?.value;
}

function errorInfo(bytes: Uint8Array): ErrorInfo {
  const info = decode(ErrorInfoType, bytes);
  return {
    reason: String(info.reason),
    domain: String(info.domain),
    metadata: { ...(info.metadata as Record<string, string>) },
  };
}

function retryDelayMs(bytes: Uint8Array): number | undefined {
  const info = decode(RetryInfoType, bytes);
  const delay = info.retryDelay as { seconds: string; nanos: number } | null | undefined;
  if (delay === null || delay === undefined) {
    return undefined;
  }
  return Number(delay.seconds) * 1000 + Math.ceil(delay.nanos / 1e6);
}

function refusal(bytes: Uint8Array): RefusalDetail {
  const detail = decode(RefusalDetailType, bytes);
  return {
    reason: String(detail.reason),
    pool: String(detail.pool),
    largestGrantableTokens: Number(detail.largestGrantableTokens),
    retryAfterMs: Number(detail.retryAfterMs),
    requestedTokens: Number(detail.requestedTokens),
  };
}

/**
 * Reads the google.rpc.Status a failed call carries in its trailers.
 *
 * Details are ignored when the rich status names another code or message
 * than the call itself: they would describe something else (the Python
 * client's grpc-status does the same).
 */
export function readStatusDetails(
  code: number,
  message: string,
  trailers: Metadata | undefined,
): StatusDetails {
  const raw = trailers?.get(STATUS_DETAILS_KEY)[0];
  if (raw === undefined || typeof raw === "string") {
    return {};
  }

  try {
    return decodeStatus(code, message, raw);
  } catch {
    // Undecodable bytes say nothing reliable: keep the call's code and text.
    return {};
  }
}

function decodeStatus(code: number, message: string, raw: Uint8Array): StatusDetails {
  const status = StatusType.toObject(StatusType.decode(raw), { defaults: true });
  if (status.code !== code || status.message !== message) {
    return {};
  }

  const details = status.details as AnyMessage[];
  const infoBytes = find(details, ErrorInfoType);
  const retryBytes = find(details, RetryInfoType);
  const refusalBytes = find(details, RefusalDetailType);
  const delayMs = retryBytes === undefined ? undefined : retryDelayMs(retryBytes);
  return {
    ...(infoBytes !== undefined && { errorInfo: errorInfo(infoBytes) }),
    ...(delayMs !== undefined && { retryDelayMs: delayMs }),
    ...(refusalBytes !== undefined && { refusal: refusal(refusalBytes) }),
  };
}
