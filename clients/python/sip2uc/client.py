"""A small typed client for the sip2uc admin API (`sip2uc.v1`).

It wraps one synchronous gRPC channel and exposes the generated stubs, a few
helpers the `sip2uc` command-line tool needs, and the turning of a
`grpc.RpcError` into one readable line (including the `google.rpc` error
details the control plane attaches, e.g. `BadRequest.field_violations`).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import grpc
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2, status_pb2

from sip2uc.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    calls_pb2_grpc,
    common_pb2,
    contacts_pb2_grpc,
    directory_pb2_grpc,
    messages_pb2_grpc,
    presence_pb2_grpc,
    registrations_pb2,
    registrations_pb2_grpc,
    sidecar_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_PORT = 50051
DEFAULT_DATA_DIR = Path("var")
TOKEN_FILE_NAME = "admin-token"  # noqa: S105 - a file name, not a secret
# Unary calls get a deadline so that a hung server cannot hang a script.
DEFAULT_TIMEOUT = 15.0
_GRPC_DETAILS_KEY = "grpc-status-details-bin"
# Phrases gRPC core uses when no connection could be made at all (as opposed
# to a server that answered UNAVAILABLE on purpose).
_CONNECT_FAILURE_MARKERS = (
    "failed to connect",
    "connection refused",
    "dns resolution failed",
    "name resolution",
    "connections to all backends failing",
    "handshake",
    "socket closed",
    "connection reset",
    "deadline exceeded while waiting for connection",
)


class ClientError(Exception):
    """A problem the client detects itself, before or without an RPC."""


def split_target(target: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """Splits `host:port`, `[v6]:port`, a bare host or a bare IPv6 address."""
    value = target.strip()
    if not value:
        raise ClientError("empty address")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not host:
            raise ClientError(f"bad address {target!r}: unclosed '['")
        if not rest:
            return host, default_port
        if not rest.startswith(":"):
            raise ClientError(f"bad address {target!r}: expected ':' after ']'")
        return host, _port(rest[1:], target)
    if value.count(":") > 1:
        # A bare IPv6 address; with a port it must be bracketed (RFC 3986 3.2.2).
        return value, default_port
    host, sep, port = value.partition(":")
    if not host:
        raise ClientError(f"bad address {target!r}: missing host")
    return host, _port(port, target) if sep else default_port


def _port(text: str, target: str) -> int:
    if not text.isdigit():
        raise ClientError(f"bad address {target!r}: port must be a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ClientError(f"bad address {target!r}: port must be 1-65535")
    return port


def join_target(host: str, port: int) -> str:
    """The `host:port` form gRPC expects (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(target: str) -> bool:
    """Whether `target` (`host[:port]`) names this machine's loopback interface."""
    try:
        host, _ = split_target(target)
    except ClientError:
        return False
    return is_loopback_host(host)


def is_loopback_host(host: str) -> bool:
    host = host.removeprefix("[").removesuffix("]")
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    value = env.get("SIP2UC_DATA_DIR", "")
    return Path(value) if value else DEFAULT_DATA_DIR


def discover_token(
    token: str | None,
    target: str,
    data_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """Finds the admin token: the explicit value, `SIP2UC_TOKEN`, or - only for
    a loopback target - `<data-dir>/admin-token`, which `sip2uc up` writes.

    The file is not consulted for remote targets so that a local token is
    never sent to another host.
    """
    if token:
        return token
    env = os.environ if environ is None else environ
    if env.get("SIP2UC_TOKEN"):
        return env["SIP2UC_TOKEN"]
    if not is_loopback(target):
        return None
    path = (data_dir if data_dir is not None else default_data_dir(env)) / TOKEN_FILE_NAME
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Sequence[tuple[str, str | bytes]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Adds `authorization: Bearer <token>` to every call.

    Metadata rather than call credentials, because gRPC refuses call
    credentials on a plaintext channel and loopback is plaintext.
    """

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> _CallDetails:
        metadata = [*(details.metadata or ()), self._header]
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class Sip2ucClient:
    """A connection to a sip2uc control plane.

    TLS is used automatically when the target is not loopback (pass `tls` to
    decide explicitly); `ca_file` names PEM roots to verify the server with
    (default: the system store). With a `token`, every call carries
    `authorization: Bearer <token>`.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        token: str | None = None,
        tls: bool | None = None,
        ca_file: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        host, port = split_target(target)
        self.target = join_target(host, port)
        self.timeout = timeout
        self.tls = (not is_loopback(self.target)) if tls is None else tls
        options = [("grpc.max_receive_message_length", 32 * 1024 * 1024)]
        if self.tls:
            roots = ca_file.read_bytes() if ca_file is not None else None
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            channel = grpc.secure_channel(self.target, credentials, options=options)
        else:
            channel = grpc.insecure_channel(self.target, options=options)
        self._raw_channel = channel
        if token:
            channel = grpc.intercept_channel(channel, _BearerToken(token))
        self.channel: grpc.Channel = channel
        self.users = users_pb2_grpc.UserServiceStub(channel)
        self.presence = presence_pb2_grpc.PresenceServiceStub(channel)
        self.registrations = registrations_pb2_grpc.RegistrationServiceStub(channel)
        self.calls = calls_pb2_grpc.CallServiceStub(channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(channel)
        self.directory = directory_pb2_grpc.DirectoryServiceStub(channel)
        self.contacts = contacts_pb2_grpc.ContactServiceStub(channel)
        self.messages = messages_pb2_grpc.MessageServiceStub(channel)
        self.sidecars = sidecar_pb2_grpc.SidecarServiceStub(channel)

    def close(self) -> None:
        self._raw_channel.close()

    def __enter__(self) -> Sip2ucClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- helpers the CLI uses ------------------------------------------------

    def get_settings(self) -> admin_pb2.Settings:
        response = self.admin.GetSettings(admin_pb2.GetSettingsRequest(), timeout=self.timeout)
        return response.settings

    def create_user(
        self,
        extension: str,
        name: str,
        password: str,
        e164: str | None = None,
        domain: str | None = None,
        *,
        sip_uri: str | None = None,
        email: str | None = None,
        digest_algorithms: Sequence[common_pb2.DigestAlgorithm.ValueType] = (),
    ) -> users_pb2.User:
        """Creates a user with one registering handset whose digest username is
        the extension, challenged with `digest_algorithms` (most preferred first;
        none: the sidecar's default). The SIP identity defaults to
        `sip:<extension>@<domain>`, the domain to the server's `sip_domain`
        setting."""
        if not sip_uri:
            sip_domain = domain or self.get_settings().sip_domain
            if not sip_domain:
                raise ClientError(
                    "the server has no sip_domain setting: pass a SIP URI "
                    "or set it with `sip2uc settings set sip_domain DOMAIN`"
                )
            sip_uri = f"sip:{extension}@{sip_domain}"
        user = users_pb2.User(
            sip_uri=sip_uri,
            display_name=name,
            extension=extension,
            e164=e164 or "",
            email=email or "",
            devices=[
                users_pb2.Device(
                    registering=users_pb2.RegisteringDevice(
                        digest_username=extension,
                        password=password,
                        digest_algorithms=digest_algorithms,
                    )
                )
            ],
        )
        response = self.users.CreateUser(
            users_pb2.CreateUserRequest(user=user), timeout=self.timeout
        )
        return response.user

    def resolve_user(self, ref: str) -> users_pb2.User:
        """The user for a reference: `users/{id}`, extension, E.164 or SIP URI."""
        response = self.users.GetUser(users_pb2.GetUserRequest(name=ref), timeout=self.timeout)
        return response.user

    def update_user(self, user: users_pb2.User, paths: Sequence[str]) -> users_pb2.User:
        request = users_pb2.UpdateUserRequest(
            user=user, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        )
        return self.users.UpdateUser(request, timeout=self.timeout).user

    def iter_users(self, filter_text: str = "", page_size: int = 500) -> Iterator[users_pb2.User]:
        token = ""
        while True:
            response = self.users.ListUsers(
                users_pb2.ListUsersRequest(
                    page_size=page_size, page_token=token, filter=filter_text
                ),
                timeout=self.timeout,
            )
            yield from response.users
            token = response.next_page_token
            if not token:
                return

    def iter_registrations(
        self, user: str = "", sidecar: str = "", page_size: int = 500
    ) -> Iterator[registrations_pb2.Registration]:
        token = ""
        while True:
            response = self.registrations.ListRegistrations(
                registrations_pb2.ListRegistrationsRequest(
                    page_size=page_size, page_token=token, user=user, sidecar=sidecar
                ),
                timeout=self.timeout,
            )
            yield from response.registrations
            token = response.next_page_token
            if not token:
                return

    def iter_subscriptions(
        self, user: str = "", page_size: int = 500
    ) -> Iterator[registrations_pb2.Subscription]:
        token = ""
        while True:
            response = self.registrations.ListSubscriptions(
                registrations_pb2.ListSubscriptionsRequest(
                    page_size=page_size, page_token=token, user=user
                ),
                timeout=self.timeout,
            )
            yield from response.subscriptions
            token = response.next_page_token
            if not token:
                return


# -- errors ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorDescription:
    """What went wrong with an RPC, for people and for scripts."""

    code: grpc.StatusCode
    message: str
    unreachable: bool


def rich_status(err: grpc.RpcError) -> Any:
    """The `google.rpc.Status` the server attached, if any and if it decodes."""
    trailing = getattr(err, "trailing_metadata", None)
    if not callable(trailing):
        return None
    try:
        metadata = trailing() or ()
        for key, value in metadata:
            if key == _GRPC_DETAILS_KEY and isinstance(value, bytes):
                return status_pb2.Status.FromString(value)
    except Exception:  # a broken detail must not hide the error itself
        return None
    return None


def _detail_lines(status: Any) -> tuple[list[str], list[str]]:
    """Violations (which say precisely what is wrong) and other notes."""
    violations: list[str] = []
    notes: list[str] = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        precondition = error_details_pb2.PreconditionFailure()
        resource = error_details_pb2.ResourceInfo()
        localized = error_details_pb2.LocalizedMessage()
        quota = error_details_pb2.QuotaFailure()
        help_ = error_details_pb2.Help()
        if detail.Unpack(bad_request):
            violations.extend(
                f"field '{v.field}': {v.description}" for v in bad_request.field_violations
            )
        elif detail.Unpack(precondition):
            violations.extend(
                f"{v.subject or v.type}: {v.description}" for v in precondition.violations
            )
        elif detail.Unpack(quota):
            violations.extend(f"{v.subject}: {v.description}" for v in quota.violations)
        elif detail.Unpack(resource):
            if resource.description:
                notes.append(resource.description)
        elif detail.Unpack(localized):
            notes.append(localized.message)
        elif detail.Unpack(help_):
            notes.extend(f"see {link.url}" for link in help_.links)
        # ErrorInfo and RetryInfo are for programs; their reason is already in
        # the message the server wrote for people.
    return [v for v in violations if v], [n for n in notes if n]


def describe_rpc_error(err: grpc.RpcError, target: str | None = None) -> ErrorDescription:
    """Turns a failed RPC into one readable line, e.g.
    "invalid argument: field 'user.e164': must be E.164 like +4989123456".

    Field violations replace the server's summary (they say the same, more
    precisely); other details are appended when they add something.
    """
    code_fn = getattr(err, "code", None)
    details_fn = getattr(err, "details", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details = str((details_fn() if callable(details_fn) else None) or "").strip()
    status = rich_status(err)
    violations, notes = _detail_lines(status) if status is not None else ([], [])
    where = target or "the configured address"
    lowered = details.lower()
    if code is grpc.StatusCode.UNAVAILABLE and status is None and "ssl" in lowered:
        return ErrorDescription(
            code,
            f"TLS with the control plane at {where} failed: check --tls/--no-tls and --ca-file",
            True,
        )
    if (
        code is grpc.StatusCode.UNAVAILABLE
        and status is None
        and any(marker in lowered for marker in _CONNECT_FAILURE_MARKERS)
    ):
        return ErrorDescription(
            code, f"cannot reach the control plane at {where}: is `sip2uc up` running?", True
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED and status is None:
        return ErrorDescription(code, f"the control plane at {where} did not answer in time", False)
    phrase = code.name.lower().replace("_", " ")
    if lowered.startswith(phrase + ":"):
        details = details[len(phrase) + 1 :].strip()
    parts = violations or ([details] if details else [])
    parts.extend(note for note in notes if note not in details)
    message = f"{phrase}: {'; '.join(parts)}" if parts else phrase
    if code is grpc.StatusCode.UNAUTHENTICATED:
        message += (
            " (pass --token or set SIP2UC_TOKEN; on the control plane's host the token "
            "is in <data-dir>/admin-token)"
        )
    elif code is grpc.StatusCode.UNIMPLEMENTED and (
        not violations and (not details or "method not implemented" in lowered)
    ):
        # The generated servicer's default text names a Python exception;
        # say what it means instead.
        message = "not implemented by this control plane yet"
    return ErrorDescription(code, message, False)


def format_rpc_error(err: grpc.RpcError, target: str | None = None) -> str:
    return describe_rpc_error(err, target).message
