/**
 * Creates a user with one registering handset (digest username = extension), like
 * `sip2uc user add`.
 *
 *   node dist/examples/create-user.js 456 --name Alice --password s3cret-pw [--e164 +4989123456]
 *
 * Connects to SIP2UC_CONTROL (default 127.0.0.1:50051); the token comes from --token,
 * SIP2UC_TOKEN, or on loopback from <SIP2UC_DATA_DIR or ./var>/admin-token. A control plane
 * elsewhere is reached over TLS; --ca-file names the PEM roots to verify it with.
 */

import { parseArgs } from "node:util";

import { Sip2ucClient } from "../src/index.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    name: { type: "string" },
    password: { type: "string" },
    e164: { type: "string" },
    "sip-uri": { type: "string" },
    address: { type: "string" },
    token: { type: "string" },
    "ca-file": { type: "string" },
  },
});
const [extension] = positionals;
if (extension === undefined || values.name === undefined || values.password === undefined) {
  console.error("usage: create-user EXTENSION --name NAME --password PASSWORD [--e164 +49...]");
  process.exit(2);
}

const client = new Sip2ucClient({
  address: values.address,
  token: values.token,
  caFile: values["ca-file"],
});
try {
  const user = await client.createUser({
    extension,
    displayName: values.name,
    password: values.password,
    e164: values.e164,
    sipUri: values["sip-uri"],
  });
  console.log(`created ${user.name} (extension ${user.extension}, ${user.sipUri})`);
} catch (err) {
  console.error(`error: ${client.describeError(err).message}`);
  process.exitCode = 1;
} finally {
  client.close();
}
