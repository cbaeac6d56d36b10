import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Code, ConnectError } from "@connectrpc/connect";

import {
  BadRequestSchema,
  HelpSchema,
  LocalizedMessageSchema,
  QuotaFailureSchema,
} from "../src/gen/google/rpc/error_details_pb.js";
import { codePhrase, describeError } from "../src/errors.js";

describe("describeError", () => {
  it("puts field violations in place of the server's summary", () => {
    const err = new ConnectError("user.e164 is invalid", Code.InvalidArgument, undefined, [
      {
        desc: BadRequestSchema,
        value: {
          fieldViolations: [
            { field: "user.e164", description: "must be E.164 like +4989123456" },
            { field: "user.extension", description: "2-10 digits" },
          ],
        },
      },
    ]);
    assert.equal(
      describeError(err).message,
      "invalid argument: field 'user.e164': must be E.164 like +4989123456; " +
        "field 'user.extension': 2-10 digits",
    );
  });

  it("appends quota violations, localized messages and help links the summary lacks", () => {
    const err = new ConnectError("too many sidecars", Code.ResourceExhausted, undefined, [
      {
        desc: QuotaFailureSchema,
        value: { violations: [{ subject: "sidecars", description: "at most 64" }] },
      },
      { desc: LocalizedMessageSchema, value: { locale: "en", message: "too many sidecars" } },
      {
        desc: HelpSchema,
        value: { links: [{ description: "limits", url: "https://example.com/limits" }] },
      },
    ]);
    assert.equal(
      describeError(err).message,
      "resource exhausted: sidecars: at most 64; see https://example.com/limits",
    );
  });

  it("does not repeat the code's phrase the server already wrote", () => {
    const err = new ConnectError("Not found: user '7'", Code.NotFound);
    assert.equal(describeError(err).message, "not found: user '7'");
  });

  it("turns anything thrown into an UNKNOWN description", () => {
    const described = describeError(new Error("boom"));
    assert.equal(described.code, Code.Unknown);
    assert.equal(described.message, "unknown: boom");
    assert.equal(described.unreachable, false);
  });

  it("names the codes as gRPC does", () => {
    assert.equal(codePhrase(Code.FailedPrecondition), "failed precondition");
    assert.equal(codePhrase(Code.Unauthenticated), "unauthenticated");
  });
});
