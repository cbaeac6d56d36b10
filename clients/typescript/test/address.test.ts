import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ClientError, isLoopback, joinAddress, splitAddress } from "../src/address.js";

describe("splitAddress", () => {
  it("splits host:port, [v6]:port, a bare host and a bare IPv6 address", () => {
    assert.deepEqual(splitAddress("pbx.example.com:443"), { host: "pbx.example.com", port: 443 });
    assert.deepEqual(splitAddress("[::1]:50052"), { host: "::1", port: 50052 });
    assert.deepEqual(splitAddress("pbx.example.com"), { host: "pbx.example.com", port: 50051 });
    assert.deepEqual(splitAddress("fd00::5"), { host: "fd00::5", port: 50051 });
    assert.deepEqual(splitAddress("[fd00::5]"), { host: "fd00::5", port: 50051 });
  });

  it("names what is wrong with a bad address", () => {
    assert.throws(() => splitAddress(""), new ClientError("empty address"));
    assert.throws(() => splitAddress("[::1:50051"), /unclosed '\['/);
    assert.throws(() => splitAddress("[::1]50051"), /expected ':' after '\]'/);
    assert.throws(() => splitAddress(":50051"), /missing host/);
    assert.throws(() => splitAddress("host:http"), /port must be a number/);
    assert.throws(() => splitAddress("host:70000"), /port must be 1-65535/);
  });

  it("joins IPv6 hosts in brackets", () => {
    assert.equal(joinAddress({ host: "::1", port: 50051 }), "[::1]:50051");
    assert.equal(joinAddress({ host: "127.0.0.1", port: 1 }), "127.0.0.1:1");
  });
});

describe("isLoopback", () => {
  it("is true for 127.0.0.0/8, ::1 in any spelling, mapped 127/8 and localhost", () => {
    for (const address of [
      "127.0.0.1:50051",
      "127.1.2.3",
      "[::1]:50051",
      "::1",
      "[0:0:0:0:0:0:0:1]:1",
      "[::ffff:127.0.0.1]:1",
      "localhost:50051",
      "LOCALHOST",
    ]) {
      assert.equal(isLoopback(address), true, address);
    }
  });

  it("is false for other hosts and for addresses that do not parse", () => {
    for (const address of [
      "10.0.0.1:50051",
      "128.0.0.1",
      "[::2]:1",
      "[::ffff:10.0.0.1]:1",
      "fe80::1%lo",
      "localhost.example.com",
      "127.0.0.1.example.com",
      "",
      "[::1",
    ]) {
      assert.equal(isLoopback(address), false, address);
    }
  });
});
