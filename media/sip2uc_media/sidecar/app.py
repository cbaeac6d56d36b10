"""The sidecar process: binds the SIP listeners, wires the edge to the control link.

`Sidecar.start` never waits for the control plane: the link dials in the background and, until
the first welcome, requests that need the control plane are answered 503 + Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
from sip2uc_core.sip.digest import Algorithm, Credentials, NonceCountTracker, NonceIssuer
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.transaction import TransactionId

from ..b2bua.legs import LegConfig
from ..phonebook.http_auth import HttpDigest
from ..phonebook.model import Phonebook
from ..phonebook.server import ControlUnreachable, PhonebookServer, ServerHooks
from ..rtp.aio import RelayEngine
from ..rtp.ports import PortAllocator
from ..transport.base import Source
from ..transport.client import Dialer
from ..transport.tcp import StreamServer, open_stream_server
from ..transport.tls import ensure_self_signed, server_context
from ..transport.udp import UdpTransport, open_udp
from ..trunk.carrier import TrunkCarrier
from ..trunk.upkeep import Outgoing
from .calls import CallHandler
from .capacity import LegCapacity, leg_capacity, raise_open_file_limit
from .commands import Command, DeliverMessage, EdgeSettings, LiftBan
from .config import SidecarConfig, format_hostport, parse_hostport
from .control_link import ControlLink
from .dispatch import SipEdge
from .intake import Intake
from .known_sources import KnownSources
from .messages import MessageHandler
from .overload import IntakeQueue
from .protection import BanList, NetworkAllowList
from .registrar import Registrar, RegistrarPolicy
from .requests import ControlUnavailableError, HelloInfo
from .subscribe import SubscribeHandler
from .telemetry import IntakeMetrics, PhonebookMetrics

__all__ = ["Sidecar", "install_uvloop"]

_log = logging.getLogger(__name__)

NONCE_LIFETIME = 300.0
SECRET_FILE = "sidecar-secret"  # noqa: S105 - a file name, not a secret


def install_uvloop() -> bool:
    """Use uvloop's event loop policy when it is installed; True if it now is."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def load_secret(data_dir: Path) -> bytes:
    """The nonce/tag secret, kept across restarts so that handsets' nonces stay valid.

    Losing it is harmless (every handset is challenged again), so a corrupt file is replaced.
    """
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / SECRET_FILE
    try:
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret[:32]
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    return secret


class Sidecar:
    def __init__(self, config: SidecarConfig) -> None:
        self.config = config
        self.instance_id = uuid.uuid4().hex
        self._udp: UdpTransport | None = None
        self._streams: dict[Transport, StreamServer] = {}
        self.listen_addresses: dict[Transport, tuple[str, int]] = {}
        self.edge: SipEdge | None = None
        self.intake: Intake | None = None
        self.control: ControlLink | None = None
        self.relay: RelayEngine | None = None
        self.calls: CallHandler | None = None
        self.trunks: TrunkCarrier | None = None
        self.dialer: Dialer | None = None
        self.subscriptions: SubscribeHandler | None = None
        self.messages: MessageHandler | None = None
        self.capacity = LegCapacity(0, "RTP ports")
        #: The shared address book as last received from the control plane (None until then).
        self.phonebook: Phonebook | None = None
        self.phonebook_server: PhonebookServer | None = None
        self._phonebook_digest: HttpDigest | None = None
        self._phonebook_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        clock = loop.time
        secret = load_secret(config.data_dir)
        registrar = Registrar(
            NonceIssuer(secret, NONCE_LIFETIME),
            # Nonces survive a restart (the secret is kept) but their counts do not: those issued
            # before this start are answered stale=true once.
            NonceCountTracker(200_000, max_idle=NONCE_LIFETIME, started=time.time()),
            tag_secret=secret,
            policy=RegistrarPolicy(
                algorithms=tuple(Algorithm.parse(a) for a in config.digest_algorithms)
            ),
        )
        self.control = ControlLink(
            config.control,
            token=config.token,
            token_file=config.token_file,
            hello=self._hello,
            on_settings=self._apply_settings,
            credentials=self._control_credentials(),
            rpc_timeout=config.rpc_timeout,
            heartbeat_interval=config.heartbeat_interval,
            on_command=self._command,
            load=self._load,
        )
        edge_bans = BanList()
        self.control.bans_source(lambda: edge_bans.active(clock()))
        self.edge = SipEdge(
            name=config.name,
            registrar=registrar,
            control=self.control,
            send=self._send,
            clock=clock,
            wall_clock=time.time,
            bans=edge_bans,
            local_allow=NetworkAllowList(config.allowed_networks),
            max_message_size=config.max_message_size,
            retry_after=config.retry_after,
            known=KnownSources(),
        )
        self.edge.guard.on_bans_changed = self.control.bans_changed
        self.intake = self._intake(clock)
        await self._bind(clock)
        sip_host, sip_port = self.listen_addresses[Transport.UDP]
        rtp_host = config.rtp_host or sip_host
        self.relay = RelayEngine(rtp_host, PortAllocator(*config.rtp_ports))
        await self.relay.start()
        self.capacity = leg_capacity(self.relay.ports.capacity, raise_open_file_limit())
        if self.capacity.bound_by != "RTP ports":
            _log.warning(
                "sidecar %s: the open-file limit caps call legs at %d (raise it, ulimit -n)",
                config.name,
                self.capacity.legs,
            )
        self.calls = CallHandler(
            name=config.name,
            registrar=registrar,
            control=self.control,
            relay=self.relay,
            config=LegConfig(
                sip_host=sip_host,
                sip_port=sip_port,
                relay_host=rtp_host,
                random_bytes=os.urandom,
                # TLS listens on its own port: Via and Contact of a TLS dialog must name it.
                transport_ports=tuple((k, p) for k, (_h, p) in self.listen_addresses.items()),
            ),
            clock=clock,
            wall_clock=time.time,
            retry_after=config.retry_after,
        )
        self.relay.on_event = self.calls.relay_event
        self.calls.configure(trunk_sources=(), channel_limit=self.capacity.legs, media_timeout=60.0)
        self.edge.attach_calls(self.calls)
        self.trunks = self._trunk_carrier(clock)
        self.messages = MessageHandler(
            name=config.name,
            registrar=registrar,
            control=self.control,
            config=self.calls.config,
            clock=clock,
            wall_clock=time.time,
            retry_after=self.edge.retry_after,
        )
        self.edge.attach_messages(self.messages)
        self.calls.start()
        self.subscriptions = SubscribeHandler(
            name=config.name,
            registrar=registrar,
            control=self.control,
            edge=self.edge,
            config=self.calls.config,
            clock=clock,
            wall_clock=time.time,
        )
        self.edge.attach_subscriptions(self.subscriptions)
        self.subscriptions.start()
        await self.control.start()
        for kind, (host, port) in self.listen_addresses.items():
            _log.info("sidecar %s: SIP %s on %s:%d", config.name, kind.via_name, host, port)
        if config.phonebook_listen is not None or config.phonebook_tls_listen is not None:
            await self._start_phonebook(secret, clock)
        _log.info("sidecar %s: dialling control plane at %s", config.name, config.control)

    async def _start_phonebook(self, secret: bytes, clock: Callable[[], float]) -> None:
        """Serve the shared address book (`phonebook/`) from the snapshots the control plane
        sends; the digest nonces get their own key, so a SIP nonce is no HTTP nonce."""
        config, edge, control = self.config, self.edge, self.control
        assert edge is not None and control is not None
        token = ""
        if config.phonebook_token_file is not None:
            token = config.phonebook_token_file.read_text(encoding="utf-8").strip()
            if not token:
                raise ValueError(f"{config.phonebook_token_file} holds no token")
        key = hmac.digest(secret, b"sip2uc phonebook digest", "sha256")
        # Nonces carry wall-clock time like SIP's: ones issued before a restart are stale.
        self._phonebook_digest = digest = HttpDigest(
            NonceIssuer(key, NONCE_LIFETIME),
            NonceCountTracker(50_000, max_idle=NONCE_LIFETIME, started=time.time()),
            realm=edge.registrar.policy.realm,
            algorithms=edge.registrar.policy.algorithms,
        )
        server = self.phonebook_server = PhonebookServer(
            ServerHooks(
                book=lambda: self.phonebook,
                digest=digest,
                verify=self._verify_http_digest,
                clock=time.time,
                token=token,
                admits=lambda host: edge.admits(host, clock()),
                user_banned=lambda host, user: edge.guard.user_banned(host, lambda: user),
                failed=edge.guard.failed,
                succeeded=edge.guard.succeeded,
                refused=lambda host, reason: edge.guard.refused(
                    host, reason, f"phonebook request from {host} refused: {reason}"
                ),
                retry_after=config.retry_after,
                served=PhonebookMetrics(self._phonebook_size).served,
            )
        )
        if config.phonebook_listen is not None:
            host, port = parse_hostport(config.phonebook_listen)
            bound = await server.start(host, port)
            _log.info("sidecar %s: phonebook on http://%s", config.name, format_hostport(*bound))
        if config.phonebook_tls_listen is not None:
            host, port = parse_hostport(config.phonebook_tls_listen)
            if config.tls_cert is not None and config.tls_key is not None:
                cert, key_file = config.tls_cert, config.tls_key
            else:
                cert, key_file = ensure_self_signed(config.data_dir, [host, "localhost"])
            bound = await server.start(host, port, server_context(cert, key_file))
            _log.info("sidecar %s: phonebook on https://%s", config.name, format_hostport(*bound))
        self._phonebook_task = asyncio.create_task(
            control.follow_phonebook(config.name, self._set_phonebook), name="phonebook-watch"
        )

    def _set_phonebook(self, book: Phonebook) -> None:
        self.phonebook = book

    def _phonebook_size(self) -> tuple[int, int] | None:
        book = self.phonebook
        return None if book is None else (len(book.entries), book.version)

    async def _verify_http_digest(self, credentials: Credentials, method: str, source: str) -> bool:
        control = self.control
        if control is None:
            raise ControlUnreachable("sidecar starting")
        try:
            return await control.verify_digest(
                self.config.name, credentials, method, Endpoint(Transport.TCP, source, 0), ""
            )
        except ControlUnavailableError as exc:
            raise ControlUnreachable(str(exc)) from None

    def _trunk_carrier(self, clock: Callable[[], float]) -> TrunkCarrier:
        """Registration and keep-alive of the trunks this sidecar carries, over the edge's
        transaction layer; their state goes to the control plane."""
        edge, control, calls = self.edge, self.control, self.calls
        assert edge is not None and control is not None and calls is not None

        def send(outgoing: Outgoing, dest: Endpoint) -> TransactionId | None:
            txn = edge.send_request(outgoing.request, dest)
            edge.flush()
            return txn

        def local(transport: Transport) -> tuple[str, int]:
            host, port = self.listen_addresses.get(transport, self.listen_addresses[Transport.UDP])
            return host, port

        def connection_error(dest: Endpoint) -> str | None:
            dialer = self.dialer
            key = (dest.transport, dest.host, dest.port)
            return dialer.last_error.get(key) if dialer is not None else None

        carrier = TrunkCarrier(
            send=send,
            local=local,
            clock=clock,
            random_bytes=os.urandom,
            report=control.report_trunks,
            connection_error=connection_error,
        )
        self.dialer = Dialer(self._streams.get, carrier.dial_target)
        edge.trunks = carrier
        calls.trunks = carrier
        return carrier

    def _intake(self, clock: Callable[[], float]) -> Intake:
        """Every received message passes the intake before the edge (`overload.py`)."""
        edge, control = self.edge, self.control
        assert edge is not None and control is not None
        metrics = IntakeMetrics()
        queue: IntakeQueue[Source] = IntakeQueue(self.config.overload, edge.known)
        intake = Intake(
            serve=edge.receive,
            queue=queue,
            absorb=edge.absorb,
            screen=edge.admits,
            clock=clock,
            retry_after=self.config.retry_after,
            backlog=lambda: control.backlog(clock()),
            metrics=metrics,
        )
        metrics.observe(
            refused=lambda: queue.refused.items(),
            answered=lambda: intake.answered,
            waiting=lambda: len(queue),
            oldest=lambda: queue.oldest_age(clock()),
            transactions=lambda: len(edge.transactions),
            control=lambda: control.backlog(clock()),
        )
        return intake

    async def _bind(self, clock: asyncio.AbstractEventLoop | object) -> None:
        config = self.config
        edge = self.edge
        intake = self.intake
        assert edge is not None and intake is not None
        loop = asyncio.get_running_loop()
        host, port = parse_hostport(config.sip_listen, 5060)
        # UDP and TCP share one port number (RFC 3263 clients try both on the same port); with
        # port 0 the UDP choice is taken for TCP, retrying if that number is busy for TCP.
        for _attempt in range(20):
            udp = await open_udp(host, port, intake.receive)
            try:
                tcp = await open_stream_server(
                    Transport.TCP,
                    host,
                    udp.local_port,
                    intake.receive,
                    max_message_size=config.max_message_size,
                    max_connections=config.max_connections,
                    idle_timeout=config.tcp_idle_timeout,
                    message_timeout=config.tcp_message_timeout,
                    clock=loop.time,
                    on_framing_error=lambda _e: edge.metrics.dropped.add(1, {"reason": "framing"}),
                )
            except OSError:
                udp.close()
                if port != 0:
                    raise
                continue
            break
        else:
            raise OSError(f"no port free for both UDP and TCP on {host}")
        self._udp = udp
        self._streams[Transport.TCP] = tcp
        self.listen_addresses[Transport.UDP] = (udp.local_host, udp.local_port)
        self.listen_addresses[Transport.TCP] = (tcp.local_host, tcp.local_port)
        if config.tls_listen is not None:
            tls_host, tls_port = parse_hostport(config.tls_listen, 5061)
            if config.tls_cert is not None and config.tls_key is not None:
                cert, key = config.tls_cert, config.tls_key
            else:
                cert, key = ensure_self_signed(config.data_dir, [tls_host, "localhost"])
            tls = await open_stream_server(
                Transport.TLS,
                tls_host,
                tls_port,
                intake.receive,
                ssl_context=server_context(cert, key),
                max_message_size=config.max_message_size,
                max_connections=config.max_connections,
                idle_timeout=config.tcp_idle_timeout,
                message_timeout=config.tcp_message_timeout,
                clock=loop.time,
            )
            self._streams[Transport.TLS] = tls
            self.listen_addresses[Transport.TLS] = (tls.local_host, tls.local_port)
        else:
            # No TLS listener: TLS connections to trunks are still opened and served.
            outbound = StreamServer(
                Transport.TLS,
                intake.receive,
                max_message_size=config.max_message_size,
                max_connections=config.max_connections,
                idle_timeout=config.tcp_idle_timeout,
                clock=loop.time,
                message_timeout=config.tcp_message_timeout,
            )
            outbound.start_outbound_only()
            self._streams[Transport.TLS] = outbound

    def _control_credentials(self) -> grpc.ChannelCredentials | None:
        if not self.config.control_tls:
            return None
        root = self.config.control_ca.read_bytes() if self.config.control_ca else None
        return grpc.ssl_channel_credentials(root_certificates=root)

    def _hello(self) -> HelloInfo:
        config = self.config
        sip_host = self.listen_addresses.get(Transport.UDP, ("", 0))[0]
        return HelloInfo(
            name=config.name,
            site=config.site,
            listeners=tuple(Endpoint(k, h, p) for k, (h, p) in self.listen_addresses.items()),
            rtp_host=config.rtp_host or sip_host,
            rtp_ports=config.rtp_ports,
            capacity=self.capacity.legs,
            instance_id=self.instance_id,
            live_legs=self.calls.live_legs() if self.calls is not None else (),
        )

    def _apply_settings(self, settings: EdgeSettings) -> None:
        edge = self.edge
        if edge is None:
            return
        edge.registrar.policy = RegistrarPolicy(
            realm=settings.realm,
            algorithms=edge.registrar.policy.algorithms,
            device_algorithms=settings.device_algorithms,
        )
        if self._phonebook_digest is not None:
            self._phonebook_digest.realm = settings.realm
        edge.bans.configure(settings.ban)
        edge.allow = NetworkAllowList(settings.allowed_networks)
        edge.known.set_trunks(network for network, _port in settings.trunk_sources)
        if self.trunks is not None:
            self.trunks.configure(settings.trunks)
        if self.calls is not None:
            self.calls.configure(
                trunk_sources=settings.trunk_sources,
                channel_limit=min(settings.channel_limit or self.capacity.legs, self.capacity.legs),
                media_timeout=settings.media_timeout,
            )

    async def _command(self, command: Command) -> str:
        if isinstance(command, LiftBan):
            if self.edge is not None:
                self.edge.guard.lift(command.source)
            return ""
        if isinstance(command, DeliverMessage):
            if self.messages is None:
                return "sidecar starting"
            return self.messages.deliver(command)
        if self.calls is None:
            return "sidecar starting"
        return await self.calls.command(command)

    def _load(self) -> tuple[int, int]:
        legs = self.calls.active_legs if self.calls is not None else 0
        ports = self.relay.ports.in_use * 2 if self.relay is not None else 0
        return legs, ports

    def _send(self, data: bytes, dest: Endpoint) -> bool:
        if dest.transport is Transport.UDP:
            return self._udp is not None and self._udp.send_to(data, dest.host, dest.port)
        server = self._streams.get(dest.transport)
        if server is None:
            return False
        connection = None
        if dest.connection_id is not None:
            connection = server.connections.get(dest.connection_id)
        if connection is None:
            connection = server.find(dest.host, dest.port)
        if connection is None and self.dialer is not None:
            # Only a trunk's address is dialled; a handset must connect to us.
            return self.dialer.send(dest, data)
        return connection is not None and connection.write(data)

    async def stop(self, grace: float | None = None) -> None:
        if self._phonebook_task is not None:
            self._phonebook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._phonebook_task
        if self.phonebook_server is not None:
            await self.phonebook_server.stop()
        if self.trunks is not None:
            await self.trunks.close()
        if self.dialer is not None:
            await self.dialer.close()
        for server in self._streams.values():
            await server.stop()
        if self._udp is not None:
            self._udp.close()
        if self.intake is not None:
            self.intake.close()
        if self.edge is not None:
            await self.edge.close()
        if self.subscriptions is not None:
            await self.subscriptions.close()
        if self.messages is not None:
            await self.messages.close()
        if self.calls is not None:
            await self.calls.close()
        if self.relay is not None:
            await self.relay.close()
        if self.control is not None:
            await self.control.stop()
