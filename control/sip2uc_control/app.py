"""The control-plane process: gRPC server (API, sidecar API, health, reflection) over the core."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sip2uc.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    calls_pb2,
    calls_pb2_grpc,
    connectors_pb2,
    connectors_pb2_grpc,
    contacts_pb2,
    contacts_pb2_grpc,
    directory_pb2,
    directory_pb2_grpc,
    messages_pb2,
    messages_pb2_grpc,
    presence_pb2,
    presence_pb2_grpc,
    registrations_pb2,
    registrations_pb2_grpc,
    sidecar_pb2,
    sidecar_pb2_grpc,
    trunks_pb2,
    trunks_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)

from .api.admin import AdminServicer
from .api.calls import CallServicer
from .api.connectors import ConnectorServicer
from .api.contacts import ContactServicer
from .api.directory import DirectoryServicer
from .api.messages import MessageServicer
from .api.presence import PresenceServicer
from .api.registrations import RegistrationServicer
from .api.sidecar import SidecarServicer
from .api.trunks import TrunkServicer
from .api.users import UserServicer
from .auth import (
    Authenticator,
    AuthInterceptor,
    LatencyInterceptor,
    is_loopback_host,
    load_or_create_token,
)
from .core import ControlCore
from .recent_log import RecentLog, RecentLogHandler
from .response_streams import ResponseStreamInterceptor
from .telemetry import setup_telemetry

log = logging.getLogger(__name__)

# The largest request is a directory CSV import (`CsvSource.content`); 16 MiB holds a few hundred
# thousand rows. Anything larger is refused RESOURCE_EXHAUSTED before it is buffered.
MAX_RECEIVE_MESSAGE_BYTES = 16 * 1024 * 1024

SERVICE_NAMES = (
    users_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
    presence_pb2.DESCRIPTOR.services_by_name["PresenceService"].full_name,
    registrations_pb2.DESCRIPTOR.services_by_name["RegistrationService"].full_name,
    calls_pb2.DESCRIPTOR.services_by_name["CallService"].full_name,
    sidecar_pb2.DESCRIPTOR.services_by_name["SidecarService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    directory_pb2.DESCRIPTOR.services_by_name["DirectoryService"].full_name,
    connectors_pb2.DESCRIPTOR.services_by_name["ConnectorService"].full_name,
    contacts_pb2.DESCRIPTOR.services_by_name["ContactService"].full_name,
    trunks_pb2.DESCRIPTOR.services_by_name["TrunkService"].full_name,
    messages_pb2.DESCRIPTOR.services_by_name["MessageService"].full_name,
)


def server_interceptors(
    *inner: grpc.aio.ServerInterceptor,  # type: ignore[type-arg]
) -> list[grpc.aio.ServerInterceptor]:  # type: ignore[type-arg]
    """The server's interceptors, outermost first: response streams served to their end in
    their own task (`response_streams`), then a span per RPC, then `inner`."""
    interceptors: list[grpc.aio.ServerInterceptor] = [ResponseStreamInterceptor()]  # type: ignore[type-arg]
    try:
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        interceptors.append(aio_server_interceptor())  # type: ignore[no-untyped-call]
    except ImportError:  # pragma: no cover - instrumentation is a locked dependency
        pass
    return [*interceptors, *inner]


@dataclass
class ControlConfig:
    data_dir: Path = Path("var")
    grpc_listen: str = "127.0.0.1:50051"
    metrics_listen: str | None = "127.0.0.1:9464"
    database_url: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


class ConfigError(ValueError):
    """The configuration cannot be run (e.g. a public listen address without TLS)."""


class ControlPlane:
    def __init__(self, config: ControlConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock  # every decision's time (expiry, no-answer); tests pass their own
        self.core: ControlCore | None = None
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.token = ""
        self.address = ""
        self._sidecar_api: SidecarServicer | None = None
        # The process's recent warnings, for AdminService.ListLogEntries/WatchLogEntries.
        self.recent_log = RecentLog()
        self._log_handler: RecentLogHandler | None = None

    async def start(self) -> None:
        cfg = self.config
        host, _, port_text = cfg.grpc_listen.rpartition(":")
        if not host or not port_text.isdigit():
            raise ConfigError(f"--grpc-listen must be HOST:PORT, got {cfg.grpc_listen!r}")
        loopback = is_loopback_host(host)
        tls = cfg.tls_cert is not None and cfg.tls_key is not None
        if not loopback and not tls:
            raise ConfigError(
                f"listening on {cfg.grpc_listen} (not loopback) requires TLS: give --tls-cert and --tls-key"
            )
        self.token = load_or_create_token(cfg.data_dir)
        self._log_handler = RecentLogHandler(self.recent_log, asyncio.get_running_loop())
        logging.getLogger().addHandler(self._log_handler)
        try:
            await self._serve(cfg, loopback, tls)
        except BaseException:
            self._remove_log_handler()
            raise

    async def _serve(self, cfg: ControlConfig, loopback: bool, tls: bool) -> None:
        host = cfg.grpc_listen.rpartition(":")[0]
        setup_telemetry("sip2uc-control", cfg.metrics_listen)
        self.core = core = await ControlCore.open(cfg.database_url, cfg.data_dir, self.clock)
        auth = Authenticator(self.token, core.enrollments, loopback=loopback)
        interceptors = server_interceptors(
            AuthInterceptor(auth),
            LatencyInterceptor(lambda s, attrs: core.metrics.rpc_duration.record(s, attrs)),
        )
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES)],
        )
        self._sidecar_api = sidecar = SidecarServicer(core, auth)
        users_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(core), server)
        presence_pb2_grpc.add_PresenceServiceServicer_to_server(PresenceServicer(core), server)
        registrations_pb2_grpc.add_RegistrationServiceServicer_to_server(
            RegistrationServicer(core), server
        )
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminServicer(core, sidecar.push_settings, self.recent_log), server
        )
        sidecar_pb2_grpc.add_SidecarServiceServicer_to_server(sidecar, server)
        calls_pb2_grpc.add_CallServiceServicer_to_server(CallServicer(core), server)
        directory_pb2_grpc.add_DirectoryServiceServicer_to_server(DirectoryServicer(core), server)
        connectors_pb2_grpc.add_ConnectorServiceServicer_to_server(ConnectorServicer(core), server)
        contacts_pb2_grpc.add_ContactServiceServicer_to_server(ContactServicer(core), server)
        trunks_pb2_grpc.add_TrunkServiceServicer_to_server(
            TrunkServicer(core, sidecar.push_settings), server
        )
        messages_pb2_grpc.add_MessageServiceServicer_to_server(MessageServicer(core), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        if tls:
            assert cfg.tls_cert is not None and cfg.tls_key is not None
            creds = grpc.ssl_server_credentials(
                [(cfg.tls_key.read_bytes(), cfg.tls_cert.read_bytes())]
            )
            port = server.add_secure_port(cfg.grpc_listen, creds)
        else:
            port = server.add_insecure_port(cfg.grpc_listen)
        if port == 0:
            raise ConfigError(f"cannot listen on {cfg.grpc_listen}")
        await server.start()
        self.server = server
        self.address = f"{host}:{port}"
        core.start_background()
        for name in (*SERVICE_NAMES, ""):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "control plane listening on %s (%s, token in %s)",
            self.address,
            "TLS" if tls else "plaintext, loopback only",
            cfg.data_dir / "admin-token",
        )

    def sidecar_credential(self, name: str) -> str:
        """A credential for a sidecar in this process (`sip2uc up`'s own): it lives only in
        memory and acts only as `name`."""
        assert self.core is not None, "start() first"
        return self.core.enrollments.ephemeral(name)

    def begin_stop(self) -> None:
        """From now on sidecars that leave are expected (the process is stopping)."""
        if self._sidecar_api is not None:
            self._sidecar_api.stopping = True

    async def stop(self, grace: float = 5.0) -> None:
        self.begin_stop()
        await self.health.enter_graceful_shutdown()
        if self.server is not None:
            await self.server.stop(grace)
        if self.core is not None:
            await self.core.close()
        self.recent_log.close()
        log.info("control plane stopped")
        self._remove_log_handler()

    def _remove_log_handler(self) -> None:
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler = None
