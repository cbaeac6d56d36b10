/**
 * A real `sip2uc up` (control plane + default sidecar) for the tests: a temporary data
 * directory, ports the kernel picks, stopped with SIGTERM like an operator would.
 *
 * The command is the checkout's own (`scripts/bootstrap` first, which creates .venv on a
 * fresh clone and is a no-op afterwards), or `SIP2UC_BIN` when set.
 */

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomInt } from "node:crypto";
import { fileURLToPath } from "node:url";

const READY = /sip2uc up: admin API (\S+),/;
const CERTIFICATE = /admin API certificate: (\S+)/;
const STARTUP_MS = 30_000;
const STOP_MS = 30_000;
// This file runs as dist/test/server.js; the checkout's root is four levels up.
const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));

export interface StartOptions {
  /** Serve the admin API over TLS with a self-signed certificate. */
  tls?: boolean;
  /** Reuse a data directory (a restart); default: a new temporary one. */
  dataDir?: string;
  /** Listen here instead of on a port the kernel picks (a restart on the same address). */
  grpcListen?: string;
}

export interface RunningServer {
  readonly address: string;
  readonly dataDir: string;
  /** The self-signed certificate of a TLS server, to pass as caFile. */
  readonly certificate: string | undefined;
  /** Everything the server logged so far. */
  readonly log: string[];
  /** SIGTERM, then the exit code (SIGKILL after 30 s). */
  stop(): Promise<number | null>;
  /** SIGKILL: the control plane dies without closing anything. */
  crash(): Promise<void>;
  /** A new server on the same data directory and admin address (after stop or crash). */
  restart(): Promise<RunningServer>;
  /** Stops the server and removes its data directory if the tests made it. */
  dispose(): Promise<void>;
}

let bootstrapped = false;

function command(): string[] {
  const override = process.env["SIP2UC_BIN"];
  if (override) {
    return [override];
  }
  if (!bootstrapped) {
    // Minutes on a fresh clone (creates .venv), milliseconds afterwards.
    const result = spawnSync(join(ROOT, "scripts", "bootstrap"), { stdio: "inherit" });
    if (result.status !== 0) {
      throw new Error(`scripts/bootstrap failed (${result.status ?? result.signal})`);
    }
    bootstrapped = true;
  }
  return [join(ROOT, ".venv", "bin", "sip2uc")];
}

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) {
    child.kill("SIGKILL");
  }
});

export async function startServer(options: StartOptions = {}): Promise<RunningServer> {
  return await launch(options, options.dataDir === undefined);
}

async function launch(options: StartOptions, ownDir: boolean): Promise<RunningServer> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "sip2uc-ts-"));
  // The tests place no calls, so the relay never binds these ports; a random range keeps
  // parallel runs from even looking alike.
  const rtpLow = 40_000 + 20 * randomInt(0, 1000);
  const [program, ...prefix] = command();
  const args = [
    ...prefix,
    "up",
    "--data-dir",
    dataDir,
    "--grpc-listen",
    options.grpcListen ?? "127.0.0.1:0",
    "--sip-listen",
    "127.0.0.1:0",
    "--metrics-listen",
    "127.0.0.1:0",
    "--rtp-ports",
    `${rtpLow}-${rtpLow + 19}`,
    ...(options.tls === true ? ["--tls"] : []),
  ];
  const child = spawn(program ?? "sip2uc", args, { stdio: ["ignore", "ignore", "pipe"] });
  running.add(child);
  const log: string[] = [];
  const exited = new Promise<number | null>((resolve) => {
    child.on("exit", (code) => {
      running.delete(child);
      resolve(code);
    });
  });

  const ready = await new Promise<{ address: string; certificate: string | undefined }>(
    (resolve, reject) => {
      let certificate: string | undefined;
      let partial = "";
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`sip2uc up did not report ready:\n${log.join("")}`));
      }, STARTUP_MS);
      // Keeps reading after start-up too, so that the server never blocks on a full pipe.
      child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
        const lines = (partial + chunk).split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) {
          log.push(`${line}\n`);
          certificate = CERTIFICATE.exec(line)?.[1] ?? certificate;
          const match = READY.exec(line);
          if (match?.[1] !== undefined) {
            clearTimeout(timer);
            resolve({ address: match[1], certificate });
          }
        }
      });
      child.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`sip2uc up exited with ${code}:\n${log.join("")}`));
      });
    },
  );

  const stop = async (): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null) {
      return child.exitCode;
    }
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_MS);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };
  return {
    ...ready,
    dataDir,
    log,
    stop,
    crash: async () => {
      child.kill("SIGKILL");
      await exited;
    },
    restart: async () => await launch({ ...options, dataDir, grpcListen: ready.address }, ownDir),
    dispose: async () => {
      await stop();
      if (ownDir) {
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}
