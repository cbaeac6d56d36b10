/**
 * Where the admin bearer token comes from: the caller, `SIP2UC_TOKEN`, or - for a loopback
 * address only - the `admin-token` file that `sip2uc up` writes into its data directory.
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";

import { isLoopback } from "./address.js";

export const DEFAULT_DATA_DIR = "var";
export const TOKEN_FILE_NAME = "admin-token";

export type Environment = Readonly<Record<string, string | undefined>>;

/** The data directory of a local `sip2uc up`: `SIP2UC_DATA_DIR`, else `var`. */
export function defaultDataDir(env: Environment = process.env): string {
  return env["SIP2UC_DATA_DIR"] || DEFAULT_DATA_DIR;
}

export interface TokenSource {
  /** A token given explicitly; wins over everything else. */
  token?: string | undefined;
  /** The control plane's address, `host:port`. */
  address: string;
  /** Where to look for `admin-token` (default: `defaultDataDir(env)`). */
  dataDir?: string | undefined;
  env?: Environment | undefined;
}

/**
 * Finds the admin token: the explicit value, `SIP2UC_TOKEN`, or - only for a loopback
 * address - `<data-dir>/admin-token`. The file is never read for another host, so that a
 * local token is not sent elsewhere. Returns undefined when there is none (a loopback
 * control plane accepts calls without a token).
 */
export function discoverToken(source: TokenSource): string | undefined {
  if (source.token) {
    return source.token;
  }
  const env = source.env ?? process.env;
  const fromEnv = env["SIP2UC_TOKEN"];
  if (fromEnv) {
    return fromEnv;
  }
  if (!isLoopback(source.address)) {
    return undefined;
  }
  const path = join(source.dataDir ?? defaultDataDir(env), TOKEN_FILE_NAME);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined; // no local server's data here: go without a token
  }
  return text.trim() || undefined;
}
