/**
 * A presence watch that survives dropped connections: it reopens `WatchPresence` from the
 * last cursor it received, so the server replays every change made while the stream was
 * down (or sends a fresh snapshot with `cursorExpired` when the cursor aged out of its log).
 */

import { setTimeout as sleep } from "node:timers/promises";

import { Code, ConnectError } from "@connectrpc/connect";

import type { Sip2ucClient } from "./client.js";
import { formatError } from "./errors.js";
import type { WatchPresenceResponse } from "./gen/sip2uc/v1/presence_pb.js";

/** Codes after which a dropped stream is worth opening again: the server went away or
 * restarted, or something between cut the connection. */
const RETRYABLE = new Set<Code>([
  Code.Unavailable,
  Code.Internal,
  Code.Unknown,
  Code.Aborted,
  Code.Canceled,
]);

export interface WatchPresenceOptions {
  /** User references to watch (resource names, extensions, E.164 numbers, SIP URIs); none: all. */
  users?: readonly string[] | undefined;
  /** Resume after this cursor (from an earlier response); empty: start with a snapshot. */
  cursor?: string | undefined;
  /** Ends the watch (the generator then returns). */
  signal?: AbortSignal | undefined;
  /** Told the reason and the delay before each reconnection. */
  onRetry?: ((reason: string, delayMs: number) => void) | undefined;
  firstBackoffMs?: number | undefined;
  maxBackoffMs?: number | undefined;
}

/**
 * Yields every message of `WatchPresence` - a snapshot first unless resuming, then each
 * change - reconnecting with exponential backoff whenever the stream drops. A failure before
 * anything was received is thrown: the address or token is wrong, and retrying would only
 * hide it. Each message carries its cursor; keep the last one to resume in a later run.
 */
export async function* watchPresence(
  client: Sip2ucClient,
  options: WatchPresenceOptions = {},
): AsyncGenerator<WatchPresenceResponse, void, undefined> {
  const first = options.firstBackoffMs ?? 500;
  const max = options.maxBackoffMs ?? 10_000;
  const signal = options.signal;
  let cursor = options.cursor ?? "";
  let receivedAny = false;
  let backoff = first;
  // A function, so that the compiler does not narrow `aborted` across awaits.
  const stopped = (): boolean => signal?.aborted === true;
  while (!stopped()) {
    let reason = "the server closed the stream";
    try {
      const stream = client.presence.watchPresence(
        { users: [...(options.users ?? [])], cursor },
        { signal },
      );
      for await (const response of stream) {
        receivedAny = true;
        backoff = first;
        if (response.cursor !== "") {
          cursor = response.cursor;
        }
        yield response;
      }
    } catch (err) {
      if (stopped()) {
        return;
      }
      if (!receivedAny || !RETRYABLE.has(ConnectError.from(err).code)) {
        throw err;
      }
      reason = formatError(err, client.address);
    }
    if (stopped()) {
      return;
    }
    options.onRetry?.(reason, backoff);
    try {
      await sleep(backoff, undefined, { signal });
    } catch {
      return; // aborted while waiting
    }
    backoff = Math.min(backoff * 2, max);
  }
}
