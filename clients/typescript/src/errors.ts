/**
 * Failed calls as one readable line, for people, and as structured fields, for scripts.
 *
 * The control plane attaches `google.rpc` details to its errors (in the
 * `grpc-status-details-bin` trailer, which Connect decodes into `ConnectError.details`):
 * `BadRequest` field violations for invalid or conflicting input, `ResourceInfo` for what was
 * not found, `PreconditionFailure` for what the current state does not allow.
 */

import { Code, ConnectError } from "@connectrpc/connect";

import {
  BadRequestSchema,
  HelpSchema,
  LocalizedMessageSchema,
  PreconditionFailureSchema,
  QuotaFailureSchema,
  ResourceInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";

export interface FieldViolation {
  /** The request field, as a path: `user.extension`, `users[2]`. */
  readonly field: string;
  readonly description: string;
}

export interface PreconditionViolation {
  /** A kind the server defines, e.g. `DND_NOT_ALLOWED`. */
  readonly type: string;
  /** What the violation is about, e.g. `users/7eacd5feb6e84ba4`. */
  readonly subject: string;
  readonly description: string;
}

export interface ResourceDescription {
  readonly type: string;
  readonly name: string;
  readonly description: string;
}

export interface ErrorDescription {
  readonly code: Code;
  /** One line, e.g. `invalid argument: field 'user.e164': must be E.164 like +4989123456`. */
  readonly message: string;
  /** No connection could be made at all (as opposed to a server that answered). */
  readonly unreachable: boolean;
  readonly fieldViolations: readonly FieldViolation[];
  readonly preconditionViolations: readonly PreconditionViolation[];
  /** The resource a NOT_FOUND (or similar) error is about. */
  readonly resource: ResourceDescription | undefined;
}

// Node.js error codes of a connection that could not be made at all.
const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EADDRNOTAVAIL",
]);

// OpenSSL's certificate verification results as Node.js reports them; other TLS failures
// carry ERR_SSL_* / ERR_TLS_* codes or EPROTO.
const CERTIFICATE_CODES = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "HOSTNAME_MISMATCH",
]);

const TOKEN_HINT =
  " (pass the token option or set SIP2UC_TOKEN; on the control plane's host the token is " +
  "in <data-dir>/admin-token)";

/** Node.js error codes (`ECONNREFUSED`, `ERR_TLS_CERT_ALTNAME_INVALID`...) along the cause chain. */
function nodeErrorCodes(reason: unknown): string[] {
  const codes: string[] = [];
  const seen = new Set<unknown>();
  let current = reason;
  while (current instanceof Error && !seen.has(current)) {
    seen.add(current);
    const code: unknown = (current as { code?: unknown }).code;
    if (typeof code === "string") {
      codes.push(code);
    }
    current = current.cause;
  }
  return codes;
}

function isTlsFailure(code: string): boolean {
  return (
    CERTIFICATE_CODES.has(code) ||
    code.startsWith("ERR_SSL_") ||
    code.startsWith("ERR_TLS_") ||
    code === "EPROTO"
  );
}

/** `InvalidArgument` -> `invalid argument`, the words gRPC's canonical code names use. */
export function codePhrase(code: Code): string {
  const name = Code[code] ?? "Unknown";
  return name.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
}

/**
 * Describes a failed call (any thrown value; non-Connect errors become UNKNOWN). Field
 * violations replace the server's summary in `message` (they say the same, more precisely);
 * other details are appended when they add something. `address` names the control plane in
 * messages about connections.
 */
export function describeError(err: unknown, address?: string): ErrorDescription {
  const error = ConnectError.from(err);
  const where = address ?? "the configured address";
  const fieldViolations = error
    .findDetails(BadRequestSchema)
    .flatMap((d) => d.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
  const preconditionViolations = error
    .findDetails(PreconditionFailureSchema)
    .flatMap((d) =>
      d.violations.map((v) => ({ type: v.type, subject: v.subject, description: v.description })),
    );
  const resourceInfo = error.findDetails(ResourceInfoSchema)[0];
  const resource =
    resourceInfo === undefined
      ? undefined
      : {
          type: resourceInfo.resourceType,
          name: resourceInfo.resourceName,
          description: resourceInfo.description,
        };
  const base = { code: error.code, fieldViolations, preconditionViolations, resource };
  const fromServer = error.details.length > 0;

  const nodeCodes = nodeErrorCodes(error.cause);
  const tls = nodeCodes.find(isTlsFailure);
  if (!fromServer && tls !== undefined) {
    return {
      ...base,
      unreachable: true,
      message:
        `TLS with the control plane at ${where} failed (${tls}): check the tls and caFile ` +
        "options",
    };
  }
  const unreachable = nodeCodes.find((code) => UNREACHABLE_CODES.has(code));
  if (!fromServer && unreachable !== undefined) {
    return {
      ...base,
      unreachable: true,
      message: `cannot reach the control plane at ${where} (${unreachable}): is \`sip2uc up\` running?`,
    };
  }
  if (!fromServer && error.rawMessage.startsWith("http/2 stream closed")) {
    // A TLS server drops a plaintext HTTP/2 connection without a word; so does anything
    // else that is not a gRPC server.
    return {
      ...base,
      unreachable: true,
      message:
        `the control plane at ${where} closed the connection before answering: if it ` +
        "serves TLS, pass tls: true (and caFile for a self-signed certificate)",
    };
  }
  if (error.code === Code.DeadlineExceeded && !fromServer) {
    return {
      ...base,
      unreachable: false,
      message: `the control plane at ${where} did not answer in time`,
    };
  }

  const phrase = codePhrase(error.code);
  let summary = error.rawMessage.trim();
  if (summary.toLowerCase().startsWith(`${phrase}:`)) {
    summary = summary.slice(phrase.length + 1).trim();
  }
  const violations = [
    ...fieldViolations.map((v) => `field '${v.field}': ${v.description}`),
    ...preconditionViolations.map((v) => `${v.subject || v.type}: ${v.description}`),
    ...error
      .findDetails(QuotaFailureSchema)
      .flatMap((d) => d.violations.map((v) => `${v.subject}: ${v.description}`)),
  ].filter((text) => text !== "");
  const notes = [
    ...(resource?.description ? [resource.description] : []),
    ...error.findDetails(LocalizedMessageSchema).map((d) => d.message),
    ...error.findDetails(HelpSchema).flatMap((d) => d.links.map((link) => `see ${link.url}`)),
  ].filter((note) => note !== "" && !summary.includes(note));
  // ErrorInfo and RetryInfo are for programs; the server's message already says it for people.
  const parts = [...(violations.length > 0 ? violations : summary ? [summary] : []), ...notes];
  let message = parts.length > 0 ? `${phrase}: ${parts.join("; ")}` : phrase;
  if (error.code === Code.Unauthenticated) {
    message += TOKEN_HINT;
  } else if (
    error.code === Code.Unimplemented &&
    violations.length === 0 &&
    (summary === "" || summary.toLowerCase().includes("method not implemented"))
  ) {
    message = "not implemented by this control plane yet";
  }
  return { ...base, unreachable: false, message };
}

/** `describeError(err, address).message`. */
export function formatError(err: unknown, address?: string): string {
  return describeError(err, address).message;
}
