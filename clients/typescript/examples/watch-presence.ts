/**
 * Prints every presence change as it happens, after the current state of each watched user,
 * and keeps going across dropped connections (it resumes from the last cursor, so nothing is
 * missed). Each line ends with its cursor: pass it as --cursor to a later run to get exactly
 * the changes made since.
 *
 *   node dist/examples/watch-presence.js [EXT...] [--cursor N] [--count N]
 *
 * Connection settings as in create-user (SIP2UC_CONTROL, --token, --ca-file).
 */

import { parseArgs } from "node:util";

import {
  Activity,
  Availability,
  PresenceSource,
  Sip2ucClient,
  watchPresence,
  type Presence,
} from "../src/index.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    cursor: { type: "string" },
    count: { type: "string" },
    address: { type: "string" },
    token: { type: "string" },
    "ca-file": { type: "string" },
  },
});
const limit = values.count === undefined ? Infinity : Number(values.count);

/** `Availability.DO_NOT_DISTURB` -> `do not disturb`. */
function label(names: Record<number, string>, value: number): string {
  return (names[value] ?? String(value)).toLowerCase().replace(/_/g, " ");
}

function describe(p: Presence | undefined): string {
  if (p === undefined) {
    return "?";
  }
  const quiet = p.activity === Activity.UNSPECIFIED || p.activity === Activity.NONE;
  const activity = quiet ? "" : ` [${label(Activity, p.activity)}]`;
  return label(Availability, p.availability) + activity;
}

const client = new Sip2ucClient({
  address: values.address,
  token: values.token,
  caFile: values["ca-file"],
});
const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
process.once("SIGTERM", () => stop.abort());

let seen = 0;
let cursor = values.cursor ?? "";
try {
  for await (const message of watchPresence(client, {
    users: positionals,
    cursor,
    signal: stop.signal,
    onRetry: (reason, delayMs) => console.error(`watch: ${reason}; reconnecting in ${delayMs} ms`),
  })) {
    cursor = message.cursor;
    const event = message.event;
    if (event.case === "snapshot") {
      if (event.value.cursorExpired) {
        console.error("note: changes were missed while away; a fresh snapshot follows");
      }
      for (const p of event.value.presences) {
        const source = label(PresenceSource, p.source);
        console.log(
          `${p.extension || p.user} ${describe(p)} (${source}) snapshot [cursor ${cursor}]`,
        );
      }
    } else if (event.case === "change") {
      const change = event.value;
      const who = change.current?.extension || change.current?.user || "?";
      const cause = `${label(PresenceSource, change.source)}: ${change.reason}`;
      console.log(
        `${who} ${describe(change.previous)} -> ${describe(change.current)} (${cause}) [cursor ${cursor}]`,
      );
      seen += 1;
      if (seen >= limit) {
        break;
      }
    }
  }
} catch (err) {
  console.error(`error: ${client.describeError(err).message}`);
  process.exitCode = 1;
} finally {
  client.close();
  if (cursor !== "") {
    console.error(`resume with --cursor ${cursor}`);
  }
}
