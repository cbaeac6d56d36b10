"""Running the state view: the HTTP server, the connection to the admin API and the feeds."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiohttp import web
from sip2uc.client import is_loopback_host, join_target

from .app import create_app
from .auth import Gate
from .connection import ControlTarget, open_channel
from .feeds import Feeds
from .hub import UpdateHub
from .render import Renderer
from .state import StateView

log = logging.getLogger(__name__)

STOP_SECONDS = 3.0


class WebConfigError(ValueError):
    """The state view cannot run as configured (e.g. a public address without TLS)."""


@dataclass(frozen=True, slots=True)
class WebConfig:
    host: str
    port: int  # 0: a free port
    control: ControlTarget
    tls_cert: Path | None = None
    tls_key: Path | None = None


class StateViewServer:
    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.url = ""
        self.state = StateView()
        self._runner: web.AppRunner | None = None
        self._feeds: Feeds | None = None
        self._hub: UpdateHub | None = None
        self._channel: grpc.aio.Channel | None = None

    async def start(self) -> None:
        cfg = self.config
        loopback = is_loopback_host(cfg.host)
        tls = cfg.tls_cert is not None and cfg.tls_key is not None
        where = join_target(cfg.host, cfg.port)
        if not loopback and not tls:
            raise WebConfigError(
                f"the state view on {where} (not loopback) requires TLS: give a certificate and key"
            )
        if not loopback and not cfg.control.token:
            raise WebConfigError(
                f"the state view on {where} (not loopback) requires the admin token "
                "(--token or SIP2UC_TOKEN)"
            )
        context: ssl.SSLContext | None = None
        if tls:
            assert cfg.tls_cert is not None and cfg.tls_key is not None
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        channel = open_channel(cfg.control)  # first: a CA file that cannot be read stops here
        renderer = Renderer(control=cfg.control.normalised)
        hub = UpdateHub(self.state, renderer)
        app = create_app(
            self.state, renderer, hub, Gate(cfg.control.token, loopback=loopback), tls=tls
        )
        # Open requests get this long on stop; the event streams end at once (the hub closes).
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=STOP_SECONDS
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, cfg.host, cfg.port, ssl_context=context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await channel.close(None)
            raise
        self._runner = runner
        self._hub = hub
        self._channel = channel
        port = runner.addresses[0][1]
        self.url = f"{'https' if tls else 'http'}://{join_target(cfg.host, port)}/"
        self._feeds = Feeds(channel, cfg.control, self.state, hub.changed)
        self._feeds.start()
        log.info(
            "state view on %s (%s), following %s",
            self.url,
            "loopback, no token needed" if loopback else "TLS, admin token required",
            cfg.control.normalised,
        )

    async def stop(self, grace: float = 3.0) -> None:
        if self._feeds is not None:
            await self._feeds.stop()
        if self._hub is not None:
            self._hub.close()  # the browsers' streams end, so the server can stop at once
        if self._runner is not None:
            await self._runner.cleanup()
        if self._channel is not None:
            await self._channel.close(grace)
        log.info("state view stopped")
