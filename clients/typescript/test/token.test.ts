import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { discoverToken } from "../src/token.js";

describe("discoverToken", () => {
  let dataDir = "";
  before(() => {
    dataDir = mkdtempSync(join(tmpdir(), "sip2uc-token-"));
    writeFileSync(join(dataDir, "admin-token"), "from-file\n", { mode: 0o600 });
  });
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  it("prefers the explicit token, then SIP2UC_TOKEN, then the data directory's file", () => {
    const env = { SIP2UC_TOKEN: "from-env", SIP2UC_DATA_DIR: dataDir };
    const address = "127.0.0.1:50051";
    assert.equal(discoverToken({ token: "given", address, env }), "given");
    assert.equal(discoverToken({ address, env }), "from-env");
    assert.equal(discoverToken({ address, env: { SIP2UC_DATA_DIR: dataDir } }), "from-file");
    assert.equal(discoverToken({ address, dataDir, env: {} }), "from-file");
  });

  it("never reads the local file for a remote control plane", () => {
    assert.equal(discoverToken({ address: "10.1.2.3:50051", dataDir, env: {} }), undefined);
    assert.equal(
      discoverToken({ address: "10.1.2.3:50051", env: { SIP2UC_TOKEN: "from-env" } }),
      "from-env",
    );
  });

  it("goes without a token when there is no file or it is empty", () => {
    const empty = mkdtempSync(join(tmpdir(), "sip2uc-token-"));
    try {
      assert.equal(discoverToken({ address: "[::1]:1", dataDir: empty, env: {} }), undefined);
      writeFileSync(join(empty, "admin-token"), " \n");
      assert.equal(discoverToken({ address: "[::1]:1", dataDir: empty, env: {} }), undefined);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
