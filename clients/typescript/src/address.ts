/**
 * Control-plane addresses: `host:port`, `[v6]:port`, a bare host or a bare IPv6 address, and
 * whether one is this machine's loopback (which decides TLS and where a token may come from).
 */

import { isIP } from "node:net";

export const DEFAULT_PORT = 50051;
export const DEFAULT_ADDRESS = "127.0.0.1:50051";

/** A problem the client detects itself, before or without an RPC. */
export class ClientError extends Error {
  override name = "ClientError";
}

export interface HostPort {
  host: string;
  port: number;
}

/** Splits `host:port`, `[v6]:port`, a bare host or a bare IPv6 address. */
export function splitAddress(address: string, defaultPort: number = DEFAULT_PORT): HostPort {
  const value = address.trim();
  if (value === "") {
    throw new ClientError("empty address");
  }
  if (value.startsWith("[")) {
    const close = value.indexOf("]");
    const host = close > 1 ? value.slice(1, close) : "";
    if (close < 0 || host === "") {
      throw new ClientError(`bad address '${address}': unclosed '['`);
    }
    const rest = value.slice(close + 1);
    if (rest === "") {
      return { host, port: defaultPort };
    }
    if (!rest.startsWith(":")) {
      throw new ClientError(`bad address '${address}': expected ':' after ']'`);
    }
    return { host, port: parsePort(rest.slice(1), address) };
  }
  if (value.split(":").length > 2) {
    // A bare IPv6 address; with a port it must be bracketed (RFC 3986 section 3.2.2).
    return { host: value, port: defaultPort };
  }
  const colon = value.indexOf(":");
  const host = colon < 0 ? value : value.slice(0, colon);
  if (host === "") {
    throw new ClientError(`bad address '${address}': missing host`);
  }
  return { host, port: colon < 0 ? defaultPort : parsePort(value.slice(colon + 1), address) };
}

function parsePort(text: string, address: string): number {
  if (!/^[0-9]+$/.test(text)) {
    throw new ClientError(`bad address '${address}': port must be a number`);
  }
  const port = Number(text);
  if (port < 1 || port > 65535) {
    throw new ClientError(`bad address '${address}': port must be 1-65535`);
  }
  return port;
}

/** The `host:port` form (IPv6 hosts in brackets). */
export function joinAddress({ host, port }: HostPort): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

const LOOPBACK_NAMES = new Set(["localhost", "localhost.", "ip6-localhost"]);

/** Whether `host` (a name or an IP address, IPv6 with or without brackets) is loopback. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[/, "").replace(/\]$/, "");
  if (LOOPBACK_NAMES.has(bare.toLowerCase())) {
    return true;
  }
  switch (isIP(bare)) {
    case 4:
      return bare.startsWith("127.");
    case 6:
      return isLoopbackV6(bare);
    default:
      return false;
  }
}

function isLoopbackV6(address: string): boolean {
  // The URL parser writes IPv6 in its shortest form: ::1, or ::ffff:7fxx:xxxx for an
  // IPv4-mapped 127.0.0.0/8 address.
  let canonical: string;
  try {
    canonical = new URL(`http://[${address}]/`).hostname;
  } catch {
    return false; // e.g. a zone index (fe80::1%eth0), which is never loopback
  }
  return canonical === "[::1]" || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical);
}

/** Whether `address` (`host[:port]`) names this machine's loopback interface. */
export function isLoopback(address: string): boolean {
  try {
    return isLoopbackHost(splitAddress(address).host);
  } catch (err) {
    if (err instanceof ClientError) {
      return false;
    }
    throw err;
  }
}
