"""The client side of SIP over TCP and TLS (RFC 3261 §18.1.1): connections the sidecar opens
itself, to the trunks it carries (the listeners only accept).

A connection is opened on the first message for its address, the messages written meanwhile
wait for it (a few, bounded), and it is reused for every later message to that address until it
closes: an opened connection joins its kind's `StreamServer`, which frames what arrives on it,
ages it and finds it again by peer address like an accepted one. Over TLS the peer must present
a certificate that chains to the trunk's CA certificates (or the system store) and names the
trunk (`server_hostname`, RFC 5922 §7); a connection that fails that is refused and counted.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from sip2uc_core.sip.endpoint import Endpoint, Transport

from .tcp import StreamServer

__all__ = ["DialTarget", "Dialer", "client_context"]

_log = logging.getLogger(__name__)

#: Messages held per address while its connection is being opened.
MAX_WAITING = 32
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class DialTarget:
    """How to reach one address: the TLS context and the name its certificate must carry."""

    context: ssl.SSLContext | None
    server_hostname: str | None


def client_context(ca_pem: str) -> ssl.SSLContext:
    """TLS 1.2 or later, the peer's certificate verified against `ca_pem` (PEM text; empty:
    the system's CA store) and checked to name the host we dialled."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Dialer:
    def __init__(
        self,
        servers: Callable[[Transport], StreamServer | None],
        target: Callable[[Endpoint], DialTarget | None],
    ) -> None:
        self._servers = servers
        self._target = target
        self._waiting: dict[tuple[Transport, str, int], list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Connections that could not be opened, by reason ("refused", "tls", "timeout").
        self.failures: dict[str, int] = {}
        #: The last reason a connection to an address failed, for status reports.
        self.last_error: dict[tuple[Transport, str, int], str] = {}

    def send(self, dest: Endpoint, data: bytes) -> bool:
        """Write `data` to `dest` over a connection of ours, opening it if need be; False when
        `dest` is no address this sidecar dials (a handset: it must connect to us)."""
        server = self._servers(dest.transport)
        if server is None:
            return False
        live = server.find(dest.host, dest.port)
        if live is not None:
            return live.write(data)
        key = (dest.transport, dest.host, dest.port)
        waiting = self._waiting.get(key)
        if waiting is not None:
            if len(waiting) >= MAX_WAITING:
                return False
            waiting.append(data)
            return True
        target = self._target(dest)
        if target is None:
            return False
        self._waiting[key] = [data]
        task = asyncio.get_running_loop().create_task(self._open(server, dest, target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _open(self, server: StreamServer, dest: Endpoint, target: DialTarget) -> None:
        key = (dest.transport, dest.host, dest.port)
        try:
            connection = await asyncio.wait_for(
                server.connect(dest.host, dest.port, target.context, target.server_hostname),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            reason = _reason(exc)
            self.failures[reason] = self.failures.get(reason, 0) + 1
            self.last_error[key] = f"{dest.transport.value} connection failed: {_text(exc)}"
            _log.warning(
                "sip %s connection to %s:%d failed: %s",
                dest.transport.value,
                dest.host,
                dest.port,
                _text(exc),
            )
            self._waiting.pop(key, None)
            return
        self.last_error.pop(key, None)
        for data in self._waiting.pop(key, []):
            connection.write(data)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._waiting.clear()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "refused"


def _text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate refused ({exc.verify_message})"
    if isinstance(exc, TimeoutError):
        return "no answer"
    return str(exc) or type(exc).__name__
