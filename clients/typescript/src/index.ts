/**
 * sip2uc-client: the sip2uc admin API (`sip2uc.v1`) for Node.js.
 *
 * `Sip2ucClient` connects (token and TLS rules as the `sip2uc` command), `describeError`
 * turns failures into readable lines with their `google.rpc` details, and `watchPresence`
 * follows presence across reconnections. The generated messages, enums and service
 * descriptors of `sip2uc.v1` (and `google.rpc` error details) are exported as well.
 */

export * from "./address.js";
export * from "./client.js";
export * from "./errors.js";
export * from "./token.js";
export * from "./watch.js";

export * from "./gen/sip2uc/v1/admin_pb.js";
export * from "./gen/sip2uc/v1/calls_pb.js";
export * from "./gen/sip2uc/v1/common_pb.js";
export * from "./gen/sip2uc/v1/connectors_pb.js";
export * from "./gen/sip2uc/v1/directory_pb.js";
export * from "./gen/sip2uc/v1/presence_pb.js";
export * from "./gen/sip2uc/v1/registrations_pb.js";
export * from "./gen/sip2uc/v1/sidecar_pb.js";
export * from "./gen/sip2uc/v1/users_pb.js";
export * from "./gen/google/rpc/error_details_pb.js";

export { Code, ConnectError } from "@connectrpc/connect";
export { create, toJson, fromJson } from "@bufbuild/protobuf";
