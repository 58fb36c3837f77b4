/** A grpc-js TokenPool server that records what it gets and answers as told. */

import * as path from "node:path";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import * as protobuf from "protobufjs";

// Loaded from the repository's proto by proto-loader itself, not through the
// client's generated descriptor, so the two are checked against each other.
const PROTO_DIR = path.resolve(
  path.dirname(require.resolve("@tokenpool/client/package.json")),
  "..",
  "..",
  "proto",
);
const definition = protoLoader.loadSync("tokenpool/v1/tokenpool.proto", {
  includeDirs: [PROTO_DIR],
  longs: String,
  defaults: true,
});
const loaded = grpc.loadPackageDefinition(definition) as unknown as {
  tokenpool: { v1: { TokenPool: { service: grpc.ServiceDefinition } } };
};
const tokenpoolRoot = protobuf.loadSync(path.join(PROTO_DIR, "tokenpool/v1/tokenpool.proto"));

// google.rpc.Status and the details the daemon sends, encoded independently
// of the client's decoder.
const googleRoot = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Any: {
              fields: { type_url: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } },
            },
            Duration: {
              fields: { seconds: { type: "int64", id: 1 }, nanos: { type: "int32", id: 2 } },
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
            RetryInfo: { fields: { retry_delay: { type: "google.protobuf.Duration", id: 1 } } },
          },
        },
      },
    },
  },
} as protobuf.INamespace);

/** One status detail: the message's full name and its fields. */
export interface Detail {
  type: "google.rpc.ErrorInfo" | "google.rpc.RetryInfo" | "tokenpool.v1.RefusalDetail";
  fields: Record<string, unknown>;
}

function packed(detail: Detail): Record<string, unknown> {
  const root = detail.type.startsWith("google.") ? googleRoot : tokenpoolRoot;
  const type = root.lookupType(detail.type);
  return {
    type_url: `type.googleapis.com/${detail.type}`,
    value: type.encode(type.fromObject(detail.fields)).finish(),
  };
}

/** A grpc-js error whose trailers carry a rich status with `details`. */
export function richError(
  code: grpc.status,
  message: string,
  details: Detail[],
  statusCode: grpc.status = code,
): Partial<grpc.StatusObject> {
  const Status = googleRoot.lookupType("google.rpc.Status");
  const status = Status.fromObject({ code: statusCode, message, details: details.map(packed) });
  const metadata = new grpc.Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(Status.encode(status).finish()));
  return { code, details: message, metadata };
}

/** What the fake server answers to Reserve: a grant or an error. */
export type ReserveAnswer = Record<string, unknown> | Partial<grpc.StatusObject>;

/** A TokenPool server on a loopback port: GetBudget echoes, Reserve answers as told. */
export class FakeServer {
  readonly server = new grpc.Server();
  /** The metadata of every call received, in order. */
  readonly received: grpc.Metadata[] = [];
  /** What the next Reserve gets. */
  reserveAnswer: ReserveAnswer = { code: grpc.status.UNIMPLEMENTED, details: "not set" };
  address = "";

  constructor() {
    this.server.addService(loaded.tokenpool.v1.TokenPool.service, {
      GetBudget: (
        call: grpc.ServerUnaryCall<{ budget: string }, unknown>,
        callback: grpc.sendUnaryData<unknown>,
      ) => {
        this.received.push(call.metadata);
        callback(null, { name: call.request.budget, capacityTokens: 1000, windowSeconds: 60 });
      },
      Reserve: (
        call: grpc.ServerUnaryCall<unknown, unknown>,
        callback: grpc.sendUnaryData<unknown>,
      ) => {
        this.received.push(call.metadata);
        const answer = this.reserveAnswer;
        if ("code" in answer) {
          callback(answer as Partial<grpc.StatusObject>, null);
        } else {
          callback(null, answer);
        }
      },
    });
  }

  /** Listens on 127.0.0.1 with `credentials` (insecure when left out). */
  async start(
    credentials = grpc.ServerCredentials.createInsecure(),
    host = "127.0.0.1",
  ): Promise<void> {
    const port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`127.0.0.1:0`, credentials, (error, bound) =>
        error ? reject(error) : resolve(bound),
      );
    });
    this.address = `${host}:${port}`;
  }

  /** Stops at once, cutting any call in flight. */
  stop(): void {
    this.server.forceShutdown();
  }
}
