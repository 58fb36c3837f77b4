/** The tokenpool.v1 service and message types, loaded from the generated descriptor. */

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import * as protobuf from "protobufjs";

import { descriptor } from "./generated/descriptor";
import type { ProtoGrpcType } from "./generated/tokenpool";

// Must match GEN_TYPES_FLAGS in scripts/generate.js, which shaped the types:
// 64-bit integers arrive as decimal strings (a JS number cannot hold every
// int64), and unset fields arrive as their defaults, never undefined.
const LOADER_OPTIONS: protoLoader.Options = {
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

// protobufjs's own INamespace type lacks map fields' keyType and requires
// comments, though toJSON writes exactly this shape.
const namespace = descriptor as protobuf.INamespace;

/** The tokenpool.v1 package as grpc-js sees it: service clients and messages. */
export const tokenpool = (
  grpc.loadPackageDefinition(
    protoLoader.fromJSON(namespace, LOADER_OPTIONS),
  ) as unknown as ProtoGrpcType
).tokenpool.v1;

/** The same descriptor for protobufjs, to decode status details by hand. */
export const protoRoot = protobuf.Root.fromJSON(namespace);
