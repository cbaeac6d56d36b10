/**
 * TLS and reconnection against a real `sip2uc up --tls` (a self-signed certificate in its
 * data directory): the certificate as custom CA, what a client without it or without TLS
 * is told, and a presence watch that outlives a crash and restart of the control plane.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Availability, Code, Sip2ucClient, watchPresence } from "../src/index.js";
import { failure } from "./rejection.js";
import { startServer, type RunningServer } from "./server.js";

describe("against a live sip2uc up --tls", () => {
  let server: RunningServer;
  let client: Sip2ucClient;

  before(async () => {
    server = await startServer({ tls: true });
    assert.ok(server.certificate !== undefined, "the server names its certificate");
    // A CA file turns TLS on, even on loopback.
    client = new Sip2ucClient({
      address: server.address,
      caFile: server.certificate,
      dataDir: server.dataDir,
      env: {},
    });
  });
  after(async () => {
    client?.close();
    await server?.dispose();
  });

  it("verifies the server with the given CA file, by IP address and by name", async () => {
    assert.equal(client.tls, true);
    const status = await client.admin.getStatus({});
    assert.ok(status !== undefined);
    const port = server.address.split(":").pop();
    const byName = new Sip2ucClient({
      address: `localhost:${port}`,
      tls: true,
      caFile: server.certificate,
      dataDir: server.dataDir,
      env: {},
    });
    try {
      await byName.admin.getStatus({});
    } finally {
      byName.close();
    }
  });

  it("says TLS failed when the certificate is not trusted", async () => {
    const untrusting = new Sip2ucClient({ address: server.address, tls: true, env: {} });
    try {
      const described = untrusting.describeError(await failure(untrusting.admin.getStatus({})));
      assert.equal(described.unreachable, true);
      assert.match(
        described.message,
        /^TLS with the control plane at 127\.0\.0\.1:\d+ failed \(DEPTH_ZERO_SELF_SIGNED_CERT\): check the tls and caFile options$/,
      );
    } finally {
      untrusting.close();
    }
  });

  it("tells a plaintext client that the server may want TLS", async () => {
    const plaintext = new Sip2ucClient({ address: server.address, env: {} });
    assert.equal(plaintext.tls, false, "loopback defaults to plaintext");
    try {
      const described = plaintext.describeError(await failure(plaintext.admin.getStatus({})));
      assert.equal(described.unreachable, true);
      assert.match(
        described.message,
        /closed the connection before answering: if it serves TLS, pass tls: true/,
      );
    } finally {
      plaintext.close();
    }
  });

  it("refuses a CA file without TLS instead of ignoring it", () => {
    assert.throws(
      () => new Sip2ucClient({ address: server.address, tls: false, caFile: server.certificate }),
      /caFile is given but tls is false/,
    );
  });

  it("keeps a presence watch across a crash and restart of the control plane, missing nothing", async () => {
    const ext = "7001";
    await client.createUser({ extension: ext, displayName: "Restart", password: "pw-restart-1" });
    const retries: string[] = [];
    const stop = new AbortController();
    const watch = watchPresence(client, {
      users: [ext],
      signal: stop.signal,
      firstBackoffMs: 100,
      maxBackoffMs: 400,
      onRetry: (reason) => retries.push(reason),
    });
    try {
      assert.equal((await watch.next()).value?.event.case, "snapshot");
      await client.presence.setPresence({ user: ext, availability: Availability.AWAY });
      const before = (await watch.next()).value;
      assert.equal(before?.event.case, "change");

      // The control plane dies mid-stream and comes back on the same data and address.
      await server.crash();
      server = await server.restart();
      await client.presence.setPresence({ user: ext, availability: Availability.BUSY });

      const after = (await watch.next()).value;
      // Resumed from the cursor: the change made after the restart, no new snapshot.
      assert.equal(after?.event.case, "change");
      assert.equal(after.event.value.previous?.availability, Availability.AWAY);
      assert.equal(after.event.value.current?.availability, Availability.BUSY);
      assert.ok(BigInt(after.cursor) > BigInt(before?.cursor ?? "0"));
      assert.ok(retries.length >= 1, "the drop was reported");
    } finally {
      stop.abort();
      await watch.return(undefined);
    }
  });

  it("gets the server's refusal of a wrong token over TLS", async () => {
    const wrong = new Sip2ucClient({
      address: server.address,
      tls: true,
      caFile: server.certificate,
      token: "wrong",
      env: {},
    });
    try {
      assert.equal((await failure(wrong.users.listUsers({}))).code, Code.Unauthenticated);
    } finally {
      wrong.close();
    }
  });
});
