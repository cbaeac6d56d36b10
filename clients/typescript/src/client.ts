/**
 * A connection to a sip2uc control plane: one HTTP/2 connection speaking the gRPC protocol
 * (Connect for Node.js), the admin bearer token on every call, TLS unless the address is
 * loopback, and typed clients for the public services.
 */

import { readFileSync } from "node:fs";

import { create } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import { ClientError, DEFAULT_ADDRESS, isLoopback, joinAddress, splitAddress } from "./address.js";
import { describeError, type ErrorDescription } from "./errors.js";
import { AdminService, type Settings } from "./gen/sip2uc/v1/admin_pb.js";
import { CallService } from "./gen/sip2uc/v1/calls_pb.js";
import { ConnectorService } from "./gen/sip2uc/v1/connectors_pb.js";
import { DirectoryService } from "./gen/sip2uc/v1/directory_pb.js";
import { PresenceService } from "./gen/sip2uc/v1/presence_pb.js";
import { RegistrationService, type Registration } from "./gen/sip2uc/v1/registrations_pb.js";
import { DeviceSchema, UserSchema, UserService, type User } from "./gen/sip2uc/v1/users_pb.js";
import { discoverToken, type Environment } from "./token.js";

/** Unary calls get a deadline so that a hung server cannot hang a script. */
export const DEFAULT_TIMEOUT_MS = 15_000;

export interface ClientOptions {
  /** `host:port` of the admin API (default: `SIP2UC_CONTROL`, else 127.0.0.1:50051). */
  address?: string | undefined;
  /**
   * The admin bearer token (default: `SIP2UC_TOKEN`, else - for a loopback address only -
   * `<dataDir>/admin-token`).
   */
  token?: string | undefined;
  /** Where a local `sip2uc up` keeps its data (default: `SIP2UC_DATA_DIR`, else `var`). */
  dataDir?: string | undefined;
  /** Use TLS (default: when a caFile is given or the address is not loopback). */
  tls?: boolean | undefined;
  /** PEM file with the roots to verify the server with, instead of the system's. */
  caFile?: string | undefined;
  /** Deadline of unary calls in milliseconds (streams have none unless a call sets one). */
  timeoutMs?: number | undefined;
  /** Environment to read `SIP2UC_*` from (default: `process.env`). */
  env?: Environment | undefined;
}

/** Adds `authorization: Bearer <token>` to every call. */
function bearerToken(token: string): Interceptor {
  return (next) => async (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return await next(req);
  };
}

/** `inner`, with a deadline on unary calls that do not set their own. */
function withUnaryDeadline(inner: Transport, timeoutMs: number): Transport {
  return {
    unary: (method, signal, callTimeoutMs, header, input, contextValues) =>
      inner.unary(method, signal, callTimeoutMs ?? timeoutMs, header, input, contextValues),
    stream: (method, signal, callTimeoutMs, header, input, contextValues) =>
      inner.stream(method, signal, callTimeoutMs, header, input, contextValues),
  };
}

export interface NewUser {
  extension: string;
  displayName: string;
  /** Password of the one registering handset; its digest username is the extension. */
  password: string;
  e164?: string | undefined;
  email?: string | undefined;
  /** SIP identity (default: `sip:<extension>@<domain>`). */
  sipUri?: string | undefined;
  /** Domain of the default SIP identity (default: the server's `sip_domain` setting). */
  domain?: string | undefined;
}

export class Sip2ucClient {
  /** The address in `host:port` form. */
  readonly address: string;
  readonly tls: boolean;
  readonly transport: Transport;
  readonly users: Client<typeof UserService>;
  readonly presence: Client<typeof PresenceService>;
  readonly registrations: Client<typeof RegistrationService>;
  readonly calls: Client<typeof CallService>;
  readonly admin: Client<typeof AdminService>;
  readonly directory: Client<typeof DirectoryService>;
  readonly connectors: Client<typeof ConnectorService>;
  private readonly session: Http2SessionManager;

  constructor(options: ClientOptions = {}) {
    const env = options.env ?? process.env;
    this.address = joinAddress(
      splitAddress(options.address || env["SIP2UC_CONTROL"] || DEFAULT_ADDRESS),
    );
    // A CA file only means something with TLS: it turns TLS on unless told otherwise.
    this.tls = options.tls ?? (options.caFile !== undefined || !isLoopback(this.address));
    if (options.caFile !== undefined && !this.tls) {
      throw new ClientError("caFile is given but tls is false");
    }
    let ca: Buffer | undefined;
    if (options.caFile !== undefined) {
      try {
        ca = readFileSync(options.caFile);
      } catch (err) {
        throw new ClientError(`cannot read the CA file ${options.caFile}: ${String(err)}`);
      }
    }
    const baseUrl = `${this.tls ? "https" : "http"}://${this.address}`;
    this.session = new Http2SessionManager(baseUrl, {}, ca === undefined ? {} : { ca });
    const token = discoverToken({
      token: options.token,
      address: this.address,
      dataDir: options.dataDir,
      env,
    });
    const grpc = createGrpcTransport({
      baseUrl,
      sessionManager: this.session,
      interceptors: token === undefined ? [] : [bearerToken(token)],
    });
    this.transport = withUnaryDeadline(grpc, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.users = createClient(UserService, this.transport);
    this.presence = createClient(PresenceService, this.transport);
    this.registrations = createClient(RegistrationService, this.transport);
    this.calls = createClient(CallService, this.transport);
    this.admin = createClient(AdminService, this.transport);
    this.directory = createClient(DirectoryService, this.transport);
    this.connectors = createClient(ConnectorService, this.transport);
  }

  /** `describeError(err, this.address)`: a failed call as a readable line and its details. */
  describeError(err: unknown): ErrorDescription {
    return describeError(err, this.address);
  }

  /** Closes the connection; calls still running fail with CANCELED. */
  close(): void {
    this.session.abort();
  }

  async getSettings(): Promise<Settings> {
    const { settings } = await this.admin.getSettings({});
    if (settings === undefined) {
      throw new ClientError("the server sent no settings");
    }
    return settings;
  }

  /**
   * Creates a user with one registering handset whose digest username is the extension. The
   * SIP identity defaults to `sip:<extension>@<domain>`, the domain to the server's
   * `sip_domain` setting.
   */
  async createUser(user: NewUser): Promise<User> {
    let sipUri = user.sipUri;
    if (!sipUri) {
      const domain = user.domain || (await this.getSettings()).sipDomain;
      if (!domain) {
        throw new ClientError(
          "the server has no sip_domain setting: pass sipUri or domain, or set it with " +
            "`sip2uc settings set sip_domain DOMAIN`",
        );
      }
      sipUri = `sip:${user.extension}@${domain}`;
    }
    const message = create(UserSchema, {
      sipUri,
      displayName: user.displayName,
      extension: user.extension,
      e164: user.e164 ?? "",
      email: user.email ?? "",
      devices: [
        create(DeviceSchema, {
          kind: {
            case: "registering",
            value: { digestUsername: user.extension, password: user.password },
          },
        }),
      ],
    });
    const response = await this.users.createUser({ user: message });
    if (response.user === undefined) {
      throw new ClientError("the server sent no user");
    }
    return response.user;
  }

  /** The user for a reference: `users/{id}`, extension, E.164 number or SIP URI. */
  async getUser(ref: string): Promise<User> {
    const { user } = await this.users.getUser({ name: ref });
    if (user === undefined) {
      throw new ClientError("the server sent no user");
    }
    return user;
  }

  /** Every user matching `filter` (see ListUsersRequest), fetching page after page. */
  async *listAllUsers(filter = "", pageSize = 500): AsyncGenerator<User, void, undefined> {
    let pageToken = "";
    do {
      const page = await this.users.listUsers({ filter, pageSize, pageToken });
      yield* page.users;
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
  }

  /** Every registration binding, optionally of one user or sidecar, page after page. */
  async *listAllRegistrations(
    filter: { user?: string; sidecar?: string } = {},
    pageSize = 500,
  ): AsyncGenerator<Registration, void, undefined> {
    let pageToken = "";
    do {
      const page = await this.registrations.listRegistrations({
        user: filter.user ?? "",
        sidecar: filter.sidecar ?? "",
        pageSize,
        pageToken,
      });
      yield* page.registrations;
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
  }
}
