/**
 * The SDK against a real `sip2uc up` on loopback: users, presence, the presence watch and
 * its cursor, error details, token rules, and the examples as a user runs them.
 */

import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";

import {
  Availability,
  Code,
  PresenceSource,
  Sip2ucClient,
  UserSettingsSchema,
  watchPresence,
  type WatchPresenceResponse,
} from "../src/index.js";
import { failure } from "./rejection.js";
import { startServer, type RunningServer } from "./server.js";

const run = promisify(execFile);
const EXAMPLES = fileURLToPath(new URL("../examples/", import.meta.url));

/** Reads `count` messages from a stream, then leaves it (which cancels the call). */
async function take<T>(stream: AsyncIterable<T>, count: number): Promise<T[]> {
  const out: T[] = [];
  if (count === 0) {
    return out;
  }
  for await (const item of stream) {
    out.push(item);
    if (out.length === count) {
      break;
    }
  }
  return out;
}

function changeOf(message: WatchPresenceResponse): { from?: Availability; to?: Availability } {
  assert.equal(message.event.case, "change", `expected a change, got ${message.event.case}`);
  const change = message.event.value;
  return { from: change.previous?.availability, to: change.current?.availability };
}

/** A loopback port nothing listens on (bound, then closed again). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(address !== null && typeof address === "object");
  return address.port;
}

describe("against a live sip2uc up", () => {
  let server: RunningServer;
  let client: Sip2ucClient;
  let extension = 6000;
  const nextExtension = (): string => String((extension += 1));

  async function addUser(): Promise<string> {
    const ext = nextExtension();
    await client.createUser({
      extension: ext,
      displayName: `User ${ext}`,
      password: `pw-${ext}-secret`,
      e164: `+49891${ext}`,
    });
    return ext;
  }

  before(async () => {
    server = await startServer();
    // Loopback: the token is read from the server's data directory.
    client = new Sip2ucClient({ address: server.address, dataDir: server.dataDir, env: {} });
  });
  after(async () => {
    client?.close();
    const code = await server?.stop();
    await server?.dispose();
    assert.equal(code, 0, server?.log.join(""));
  });

  it("creates users and lists them page by page", async () => {
    const created = [];
    for (let i = 0; i < 3; i += 1) {
      const ext = nextExtension();
      created.push(
        await client.createUser({
          extension: ext,
          displayName: `Page ${ext}`,
          password: `pw-${ext}-x`,
        }),
      );
    }
    const first = created[0];
    assert.ok(first !== undefined);
    assert.match(first.name, /^users\/[0-9a-f]+$/);
    assert.equal(first.sipUri, `sip:${first.extension}@${(await client.getSettings()).sipDomain}`);
    const device = first.devices[0]?.kind;
    assert.equal(device?.case, "registering");
    assert.equal(device.value.digestUsername, first.extension);
    assert.equal(device.value.hasPassword, true);
    assert.equal(device.value.password, "", "the password never comes back");

    const listed = [];
    for await (const user of client.listAllUsers("", 2)) {
      listed.push(user.name);
    }
    for (const user of created) {
      assert.ok(listed.includes(user.name), `${user.name} listed`);
    }
    assert.equal(new Set(listed).size, listed.length, "no user twice across pages");
    assert.equal((await client.getUser(first.extension)).name, first.name);
  });

  it("sets, reads and clears presence", async () => {
    const ext = await addUser();
    const set = await client.presence.setPresence({
      user: ext,
      availability: Availability.AWAY,
      note: "lunch",
      expiry: { case: "ttl", value: create(DurationSchema, { seconds: 900n }) },
    });
    assert.equal(set.presence?.availability, Availability.AWAY);
    assert.equal(set.presence?.source, PresenceSource.MANUAL);
    assert.equal(set.presence?.note, "lunch");
    assert.ok(set.presence?.expireTime !== undefined, "a TTL has an expiry time");

    const got = await client.presence.getPresence({ user: ext });
    assert.equal(got.presence?.availability, Availability.AWAY);

    const cleared = await client.presence.clearPresence({ user: ext });
    assert.equal(cleared.presence?.availability, Availability.OFFLINE);
    assert.equal(cleared.presence?.source, PresenceSource.REGISTRATION);
  });

  it("watches presence and resumes from a cursor without a gap or a duplicate", async () => {
    const ext = await addUser();
    const set = (availability: Availability): Promise<unknown> =>
      client.presence.setPresence({ user: ext, availability });

    const first = client.presence.watchPresence({ users: [ext] });
    const iterator = first[Symbol.asyncIterator]();
    const snapshot = await iterator.next();
    assert.equal(snapshot.done, false);
    assert.equal(snapshot.value.event.case, "snapshot");
    assert.deepEqual(
      snapshot.value.event.value.presences.map(
        (p: { extension: string; availability: Availability }) => [p.extension, p.availability],
      ),
      [[ext, Availability.OFFLINE]],
    );
    await set(Availability.AWAY);
    await set(Availability.BUSY);
    const seen = [(await iterator.next()).value, (await iterator.next()).value];
    assert.deepEqual(seen.map(changeOf), [
      { from: Availability.OFFLINE, to: Availability.AWAY },
      { from: Availability.AWAY, to: Availability.BUSY },
    ]);
    const cursor = seen[1].cursor;
    await iterator.return?.(); // the watcher goes away

    await set(Availability.BE_RIGHT_BACK);
    await set(Availability.AVAILABLE);
    await set(Availability.AWAY);

    const resumed = client.presence.watchPresence({ users: [ext], cursor });
    const resumedIterator = resumed[Symbol.asyncIterator]();
    const replayed = [];
    for (let i = 0; i < 3; i += 1) {
      replayed.push((await resumedIterator.next()).value);
    }
    // Exactly the three changes made while away, in order: no snapshot, nothing from before
    // the cursor again, nothing skipped.
    assert.deepEqual(replayed.map(changeOf), [
      { from: Availability.BUSY, to: Availability.BE_RIGHT_BACK },
      { from: Availability.BE_RIGHT_BACK, to: Availability.AVAILABLE },
      { from: Availability.AVAILABLE, to: Availability.AWAY },
    ]);
    const cursors = [cursor, ...replayed.map((m: WatchPresenceResponse) => m.cursor)].map(BigInt);
    for (let i = 1; i < cursors.length; i += 1) {
      assert.ok(cursors[i]! > cursors[i - 1]!, `cursor ${cursors[i]} after ${cursors[i - 1]}`);
    }
    // After the replay the same stream goes live.
    await set(Availability.BUSY);
    assert.deepEqual(changeOf((await resumedIterator.next()).value), {
      from: Availability.AWAY,
      to: Availability.BUSY,
    });
    await resumedIterator.return?.();
  });

  it("watchPresence yields the snapshot, then changes, and resumes from a given cursor", async () => {
    const ext = await addUser();
    const stop = new AbortController();
    const watch = watchPresence(client, { users: [ext], signal: stop.signal });
    const snapshot = await watch.next();
    assert.equal(snapshot.done, false);
    assert.equal(snapshot.value?.event.case, "snapshot");
    await client.presence.setPresence({ user: ext, availability: Availability.AWAY });
    const change = (await watch.next()).value;
    assert.ok(change !== undefined);
    assert.deepEqual(changeOf(change), { from: Availability.OFFLINE, to: Availability.AWAY });
    stop.abort();
    assert.deepEqual(await watch.next(), { done: true, value: undefined }, "abort ends the watch");

    await client.presence.setPresence({ user: ext, availability: Availability.BUSY });
    const again = await take(watchPresence(client, { users: [ext], cursor: change.cursor }), 1);
    assert.deepEqual(again.map(changeOf), [{ from: Availability.AWAY, to: Availability.BUSY }]);
  });

  it("reads BadRequest field violations of invalid and conflicting input", async () => {
    const ext = await addUser();
    const duplicate = await failure(
      client.createUser({ extension: ext, displayName: "Twin", password: "pw-twin-123" }),
    );
    const described = client.describeError(duplicate);
    assert.equal(described.code, Code.AlreadyExists);
    assert.deepEqual(
      described.fieldViolations.map((v) => v.field),
      ["user.extension"],
    );
    assert.match(
      described.message,
      new RegExp(`^already exists: field 'user.extension': '${ext}' is already used by users/`),
    );
    assert.equal(described.unreachable, false);

    const invalid = client.describeError(
      await failure(
        client.createUser({
          extension: nextExtension(),
          displayName: "Bad number",
          password: "pw-bad-123",
          e164: "089 123",
        }),
      ),
    );
    assert.equal(invalid.code, Code.InvalidArgument);
    assert.deepEqual(
      invalid.fieldViolations.map((v) => v.field),
      ["user.e164"],
    );
    assert.match(invalid.message, /^invalid argument: field 'user\.e164': /);
  });

  it("reads ResourceInfo of what was not found and PreconditionFailure of what is not allowed", async () => {
    const missing = client.describeError(await failure(client.getUser("99999")));
    assert.equal(missing.code, Code.NotFound);
    assert.deepEqual(missing.resource, { type: "user", name: "99999", description: "" });
    assert.match(missing.message, /^not found: .*99999/);

    const ext = nextExtension();
    const { user } = await client.users.createUser({
      user: {
        sipUri: `sip:${ext}@example.com`,
        displayName: "No DND",
        extension: ext,
        settings: create(UserSettingsSchema, { dndAllowed: false }),
      },
    });
    const refused = client.describeError(
      await failure(
        client.presence.setPresence({ user: ext, availability: Availability.DO_NOT_DISTURB }),
      ),
    );
    assert.equal(refused.code, Code.FailedPrecondition);
    assert.deepEqual(
      refused.preconditionViolations.map((v) => [v.type, v.subject]),
      [["DND_NOT_ALLOWED", user?.name]],
    );
    assert.match(refused.message, /^failed precondition: users\/\S+: .*do-not-disturb/);
  });

  it("sends the token of the local data directory, and a wrong token is refused", async () => {
    const fake = mkdtempSync(join(tmpdir(), "sip2uc-fake-"));
    writeFileSync(join(fake, "admin-token"), "not-the-token\n", { mode: 0o600 });
    const wrongFile = new Sip2ucClient({ address: server.address, dataDir: fake, env: {} });
    const wrongOption = new Sip2ucClient({ address: server.address, token: "nope", env: {} });
    try {
      for (const wrong of [wrongFile, wrongOption]) {
        const unary = wrong.describeError(await failure(wrong.users.listUsers({})));
        assert.equal(unary.code, Code.Unauthenticated);
        assert.match(
          unary.message,
          /^unauthenticated: invalid bearer token \(pass the token option or set SIP2UC_TOKEN/,
        );
        const stream = await failure(take(wrong.presence.watchPresence({}), 1));
        assert.equal(stream.code, Code.Unauthenticated);
      }
      // The same call with the real token (from the server's data directory) works.
      assert.ok((await client.users.listUsers({ pageSize: 1 })).users.length <= 1);
    } finally {
      wrongFile.close();
      wrongOption.close();
      rmSync(fake, { recursive: true, force: true });
    }
  });

  it("says so when nothing listens at the address", async () => {
    const nowhere = new Sip2ucClient({ address: `127.0.0.1:${await closedPort()}`, env: {} });
    try {
      const described = nowhere.describeError(await failure(nowhere.admin.getStatus({})));
      assert.equal(described.code, Code.Unavailable);
      assert.equal(described.unreachable, true);
      assert.match(
        described.message,
        /^cannot reach the control plane at 127\.0\.0\.1:\d+ \(ECONNREFUSED\)/,
      );
    } finally {
      nowhere.close();
    }
  });

  it("runs the examples: create a user, watch presence and resume from the printed cursor", async () => {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      SIP2UC_CONTROL: server.address,
      SIP2UC_DATA_DIR: server.dataDir,
    };
    delete env["SIP2UC_TOKEN"];
    const ext = nextExtension();
    const created = await run(
      process.execPath,
      [join(EXAMPLES, "create-user.js"), ext, "--name", "Example", "--password", "pw-example-1"],
      { env },
    );
    assert.match(
      created.stdout,
      new RegExp(`^created users/[0-9a-f]+ \\(extension ${ext}, sip:${ext}@`),
    );

    const watcher = spawn(
      process.execPath,
      [join(EXAMPLES, "watch-presence.js"), ext, "--count", "1"],
      {
        env,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    watcher.stdout.setEncoding("utf8");
    const snapshotLine = new Promise<void>((resolve) =>
      watcher.stdout.on("data", (chunk: string) => {
        out += chunk;
        if (out.includes("snapshot")) {
          resolve();
        }
      }),
    );
    const exited = new Promise<number | null>((resolve) => watcher.on("exit", resolve));
    await snapshotLine;
    await client.presence.setPresence({ user: ext, availability: Availability.AWAY });
    assert.equal(await exited, 0);
    const lines = out.trim().split("\n");
    assert.match(
      lines[0] ?? "",
      new RegExp(`^${ext} offline \\(registration\\) snapshot \\[cursor \\d+\\]$`),
    );
    assert.match(
      lines[1] ?? "",
      new RegExp(`^${ext} offline -> away \\(manual: .+\\) \\[cursor (\\d+)\\]$`),
    );
    const cursor = /\[cursor (\d+)\]$/.exec(lines[1] ?? "")?.[1];
    assert.ok(cursor !== undefined);

    await client.presence.setPresence({ user: ext, availability: Availability.BUSY });
    const resumed = await run(
      process.execPath,
      [join(EXAMPLES, "watch-presence.js"), ext, "--cursor", cursor, "--count", "1"],
      { env },
    );
    assert.match(
      resumed.stdout,
      new RegExp(`^${ext} away -> busy \\(manual: .+\\) \\[cursor \\d+\\]\\n$`),
    );
  });
});
