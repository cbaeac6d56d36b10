import assert from "node:assert/strict";

import { ConnectError } from "@connectrpc/connect";

/** The error a call rejects with, as a ConnectError; fails the test if the call succeeds. */
export async function failure(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (err) {
    return ConnectError.from(err);
  }
  assert.fail("the call succeeded");
}
