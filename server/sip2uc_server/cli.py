"""`sip2uc up`, `sip2uc sidecar` and `sip2uc connector run`: run sip2uc in the foreground.

`up` is the all-in-one: the control plane and one sidecar named "default" in
one process and one event loop, for a single site or a first try, plus the
bridges of the configured connectors (as API clients of the control plane).
`sidecar` runs one more sidecar (another VLAN or site) against a control plane
elsewhere; `connector run` runs one connector's bridge against a control plane
elsewhere. All stop cleanly on SIGINT/SIGTERM and then exit with code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from sip2uc.cli.parsing import normalise_listen, parse_listen, parse_port_range
from sip2uc.cli.state import get_state
from sip2uc.client import discover_token, is_loopback, is_loopback_host, join_target

if TYPE_CHECKING:
    from sip2uc_media.sidecar import Sidecar
    from sip2uc_web.connection import ControlTarget
    from sip2uc_web.server import StateViewServer

log = logging.getLogger("sip2uc")

# Seconds in-flight RPCs and SIP transactions get to finish on shutdown.
STOP_GRACE = 3.0
_WILDCARDS = ("0.0.0.0", "::", "")


def _listen(value: str) -> str:
    try:
        return normalise_listen(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _ports(value: str) -> str:
    try:
        parse_port_range(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _metrics(value: str) -> str:
    if value.lower() in ("", "off", "none"):
        return ""
    return _listen(value)


def _optional_listen(value: str | None) -> str | None:
    return None if value is None else _listen(value)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiosqlite logs every statement with its parameters at DEBUG: connector secrets and digest
    # HA1s would reach the log with --log-level debug.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger().level))


def run_until_signalled(body: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Runs `body(stop)` on uvloop when available; SIGINT/SIGTERM set `stop`."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await body(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a locked dependency on Linux
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())


def _dial_address(bound: str) -> str:
    """Where a local client reaches a server bound to `bound` (a wildcard
    bind is reached over loopback)."""
    host, port = parse_listen(bound)
    if host in _WILDCARDS:
        host = "127.0.0.1" if host != "::" else "::1"
    return join_target(host, port)


@dataclass
class _Stoppable:
    name: str
    stop: Callable[[float], Awaitable[None]]


async def _stop_all(started: list[_Stoppable]) -> None:
    for item in reversed(started):
        try:
            await item.stop(STOP_GRACE)
        except Exception:
            log.exception("stopping the %s failed", item.name)


# Options both `up` and `sidecar` take, declared once.
RtpPortsOption = Annotated[
    str,
    typer.Option(
        "--rtp-ports", metavar="A-B", help="UDP port range for RTP relays.", callback=_ports
    ),
]
AllowNetworkOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-network",
        metavar="CIDR",
        help="Accept SIP only from this network (repeatable). Default: any.",
    ),
]
DigestAlgorithmOption = Annotated[
    list[str] | None,
    typer.Option(
        "--digest-algorithm",
        metavar="ALG",
        help=(
            "Digest algorithm to challenge handsets with, most preferred first (repeatable: "
            "MD5, SHA-256). Default: MD5 alone, which every handset answers (many read only "
            "the first challenge). Devices can have their own: sip2uc user update EXT "
            "--digest-algorithm SHA-256."
        ),
    ),
]
SipTlsListenOption = Annotated[
    str | None,
    typer.Option(
        "--sip-tls-listen",
        metavar="HOST:PORT",
        help=(
            "Also accept SIP over TLS here (e.g. 0.0.0.0:5061), with --sip-tls-cert/"
            "--sip-tls-key or a self-signed certificate generated in the data directory."
        ),
        callback=_optional_listen,
        show_default=False,
    ),
]
SipTlsCertOption = Annotated[
    Path | None,
    typer.Option("--sip-tls-cert", help="PEM certificate chain for SIP over TLS."),
]
SipTlsKeyOption = Annotated[
    Path | None, typer.Option("--sip-tls-key", help="PEM private key for SIP over TLS.")
]
OverloadOption = Annotated[
    list[str] | None,
    typer.Option(
        "--overload",
        metavar="KEY=VALUE",
        help=(
            "Overload control of the sidecar (repeatable), e.g. max_queue_delay=0.5 or "
            "retry_after=10; see docs/configuration.md for every key and its default."
        ),
    ),
]
PhonebookListenOption = Annotated[
    str | None,
    typer.Option(
        "--phonebook-listen",
        metavar="HOST:PORT",
        help=(
            "Serve the shared address book to handsets over HTTP here (Yealink, Snom, "
            "Cisco, Grandstream, Gigaset, vCard, CSV; see docs/handset-features.md). Off by "
            "default. Readers authenticate with their SIP digest credentials or the site token."
        ),
        callback=_optional_listen,
        show_default=False,
    ),
]
PhonebookTlsListenOption = Annotated[
    str | None,
    typer.Option(
        "--phonebook-tls-listen",
        metavar="HOST:PORT",
        help=(
            "Serve the address book over HTTPS here, with the SIP TLS certificate "
            "(--sip-tls-cert/--sip-tls-key) or the self-signed one in the data directory."
        ),
        callback=_optional_listen,
        show_default=False,
    ),
]
PhonebookTokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--phonebook-token-file",
        help=(
            "File (mode 0600) holding a per-site token: handsets that cannot do HTTP digest "
            "read the address book with ?token=TOKEN."
        ),
        show_default=False,
    ),
]
LogLevelOption = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]
# Options of the commands that dial a control plane (`sidecar`, `web`).
ControlOption = Annotated[
    str | None,
    typer.Option(
        "--control",
        metavar="HOST:PORT",
        help="Control plane to dial (default: the global --control).",
        show_default=False,
    ),
]
ControlTlsOption = Annotated[
    bool | None,
    typer.Option(
        "--control-tls/--no-control-tls",
        help="TLS to the control plane. Default: TLS unless it is on loopback.",
        show_default=False,
    ),
]
ControlCaOption = Annotated[
    Path | None,
    typer.Option(
        "--control-ca",
        help="PEM CA certificates to verify the control plane with (default: the global --ca-file).",
    ),
]


def up(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Where the database, admin token and keys live (default: global --data-dir).",
            show_default=False,
        ),
    ] = None,
    grpc_listen: Annotated[
        str,
        typer.Option(
            "--grpc-listen",
            metavar="HOST:PORT",
            help="Admin and sidecar API address. Not loopback: TLS is required.",
            callback=_listen,
        ),
    ] = "127.0.0.1:50051",
    sip_listen: Annotated[
        str,
        typer.Option(
            "--sip-listen",
            metavar="HOST:PORT",
            help="SIP (UDP and TCP) address of the default sidecar: the handsets' registrar.",
            callback=_listen,
        ),
    ] = "127.0.0.1:5060",
    rtp_ports: RtpPortsOption = "20000-29999",
    tls: Annotated[
        bool | None,
        typer.Option(
            "--tls/--no-tls",
            help=(
                "Serve the admin API over TLS (with --tls-cert/--tls-key, or a self-signed "
                "certificate generated in the data directory). Default: TLS unless loopback."
            ),
            show_default=False,
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate chain for the admin API.")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="PEM private key for the admin API.")
    ] = None,
    metrics_listen: Annotated[
        str,
        typer.Option(
            "--metrics-listen",
            metavar="HOST:PORT",
            help="Prometheus scrape endpoint ('off' to disable).",
            callback=_metrics,
        ),
    ] = "127.0.0.1:9464",
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="SIP2UC_DATABASE_URL",
            help=(
                "SQLAlchemy URL of a PostgreSQL database (one control plane per database). "
                "Default: SQLite in the data directory."
            ),
            show_default=False,
        ),
    ] = None,
    sip_tls_listen: SipTlsListenOption = None,
    sip_tls_cert: SipTlsCertOption = None,
    sip_tls_key: SipTlsKeyOption = None,
    allow_network: AllowNetworkOption = None,
    digest_algorithm: DigestAlgorithmOption = None,
    overload: OverloadOption = None,
    phonebook_listen: PhonebookListenOption = None,
    phonebook_tls_listen: PhonebookTlsListenOption = None,
    phonebook_token_file: PhonebookTokenFileOption = None,
    web_listen: Annotated[
        str | None,
        typer.Option(
            "--web-listen",
            metavar="HOST:PORT",
            help=(
                "Also serve the state view here: a read-only web page that shows sidecars, "
                "registrations, presence, calls and recent warnings live. Off by default. "
                "Not loopback: HTTPS (--tls-cert/--tls-key, or a self-signed certificate in "
                "the data directory) and the admin token are required."
            ),
            callback=_optional_listen,
            show_default=False,
        ),
    ] = None,
    no_connectors: Annotated[
        bool,
        typer.Option(
            "--no-connectors",
            help=(
                "Do not run the connectors' bridges (by default `up` runs every configured "
                "connector not marked external, which `sip2uc connector run` runs elsewhere)."
            ),
        ),
    ] = False,
    log_level: LogLevelOption = "info",
) -> None:
    """Run the control plane, one SIP/RTP sidecar ("default") and the
    connectors' presence bridges in the foreground, in one process, and the
    state view with --web-listen. Logs where each listens; Ctrl-C or SIGTERM
    stops everything cleanly."""
    from sip2uc_control.app import ControlConfig, ControlPlane
    from sip2uc_media.gc_policy import tune_for_serving
    from sip2uc_media.sidecar import Sidecar, SidecarConfig

    state = get_state(ctx)
    directory = data_dir if data_dir is not None else state.data_dir
    low, high = parse_port_range(rtp_ports)
    grpc_host, _ = parse_listen(grpc_listen)
    use_tls = tls if tls is not None else not is_loopback_host(parse_listen(grpc_listen)[0])
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("give both --tls-cert and --tls-key, or neither")
    _check_sip_tls(sip_tls_listen, sip_tls_cert, sip_tls_key)
    overload_settings = _overload(overload)
    configure_logging(log_level)

    async def body(stop: asyncio.Event) -> None:
        cert, key = tls_cert, tls_key
        if use_tls and cert is None:
            cert, key = _self_signed(directory / "admin-tls", grpc_host)
            log.info("admin API certificate: %s (give it to clients with --ca-file)", cert)
        plane = ControlPlane(
            ControlConfig(
                data_dir=directory,
                grpc_listen=grpc_listen,
                metrics_listen=metrics_listen or None,
                database_url=database_url,
                tls_cert=cert if use_tls else None,
                tls_key=key if use_tls else None,
            )
        )
        started: list[_Stoppable] = []
        try:
            await plane.start()
            started.append(_Stoppable("control plane", plane.stop))
            sidecar = Sidecar(
                SidecarConfig(
                    control=_dial_address(plane.address),
                    # In the same process: a credential only this process knows, good for this
                    # sidecar's name and the sidecar API only (never the admin token).
                    token=plane.sidecar_credential("default"),
                    name="default",
                    sip_listen=sip_listen,
                    tls_listen=sip_tls_listen,
                    tls_cert=sip_tls_cert,
                    tls_key=sip_tls_key,
                    data_dir=directory,
                    rtp_ports=(low, high),
                    allowed_networks=list(allow_network or []),
                    control_tls=use_tls,
                    control_ca=cert if use_tls else None,
                    digest_algorithms=_digest(digest_algorithm) or SidecarConfig.digest_algorithms,
                    phonebook_listen=phonebook_listen,
                    phonebook_tls_listen=phonebook_tls_listen,
                    phonebook_token_file=phonebook_token_file,
                    **overload_settings,  # type: ignore[arg-type]
                )
            )
            await sidecar.start()
            tune_for_serving()
            started.append(_Stoppable("sidecar", sidecar.stop))
            await _welcomed(sidecar)
            if web_listen:
                from sip2uc_web.connection import ControlTarget

                view = _state_view(
                    web_listen,
                    ControlTarget(
                        _dial_address(plane.address),
                        token=plane.token,
                        tls=use_tls,
                        ca_file=cert if use_tls else None,
                    ),
                    directory,
                    tls_cert,
                    tls_key,
                )
                await view.start()
                started.append(_Stoppable("state view", view.stop))
            if not no_connectors:
                started.append(
                    _start_connectors(
                        _dial_address(plane.address), plane.token, cert if use_tls else None
                    )
                )
            log.info(
                "sip2uc up: admin API %s, SIP %s, RTP %d-%d, data in %s",
                plane.address,
                ", ".join(
                    f"{kind.via_name} {join_target(host, port)}"
                    for kind, (host, port) in sidecar.listen_addresses.items()
                ),
                low,
                high,
                directory,
            )
            await stop.wait()
            log.info("stopping")
            plane.begin_stop()
        finally:
            await _stop_all(started)

    _run(body)


async def _welcomed(sidecar: Sidecar, within: float = 10.0) -> None:
    """Wait until the control plane in this process welcomed its sidecar, so that "ready" means
    handsets are served (it takes milliseconds; a slow machine is told, not hidden)."""
    assert sidecar.control is not None
    try:
        await asyncio.wait_for(sidecar.control.wait_up(), within)
    except TimeoutError:
        log.warning("the default sidecar is not connected yet; handsets get 503 until it is")


def _state_view(
    listen: str,
    control: ControlTarget,
    directory: Path,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> StateViewServer:
    """The state view for `listen`; off loopback with the given certificate or a self-signed
    one kept in `<data-dir>/web-tls`."""
    from sip2uc_web.server import StateViewServer, WebConfig

    host, port = parse_listen(listen)
    if not is_loopback_host(host) and tls_cert is None:
        tls_cert, tls_key = _self_signed(directory / "web-tls", host)
        log.info("state view certificate: %s", tls_cert)
    return StateViewServer(
        WebConfig(
            host=host,
            port=port,
            control=control,
            tls_cert=None if is_loopback_host(host) else tls_cert,
            tls_key=None if is_loopback_host(host) else tls_key,
        )
    )


def _start_connectors(target: str, token: str, ca_file: Path | None) -> _Stoppable:
    """The connectors' bridges, as API clients of this very control plane."""
    from sip2uc_connectors.control_api import ControlApi
    from sip2uc_connectors.kinds import BRIDGES
    from sip2uc_connectors.supervisor import ConnectorSupervisor

    api = ControlApi(target, token, tls=ca_file is not None, ca_file=ca_file)
    stop = asyncio.Event()
    task = asyncio.create_task(ConnectorSupervisor(api, BRIDGES).run(stop), name="connectors")

    async def stop_connectors(grace: float) -> None:
        stop.set()
        try:
            await asyncio.wait_for(task, grace + 5.0)
        finally:
            await api.close()

    return _Stoppable("connectors", stop_connectors)


def _self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    from sip2uc_media.transport.tls import ensure_self_signed

    names = [name for name in (host, "localhost", "127.0.0.1") if name not in _WILDCARDS]
    return ensure_self_signed(directory, names)


def _run(body: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Runs `body`; start-up failures (a port in use, a bad configuration)
    become one line and exit code 1."""
    try:
        run_until_signalled(body)
    except (OSError, ValueError, RuntimeError) as exc:
        # grpc reports a port it cannot bind as RuntimeError.
        sys.stderr.write(f"error: {exc}\n")
        raise typer.Exit(1) from None


def sidecar(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Sidecar name, unique per control plane.", show_default=False),
    ] = None,
    control: ControlOption = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help=(
                "File holding this sidecar's credential (`sip2uc sidecar enroll NAME "
                "--output FILE`); read again before each connection, so a rotated credential "
                "needs no restart."
            ),
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            "--credential",
            envvar="SIP2UC_SIDECAR_TOKEN",
            help=(
                "This sidecar's credential itself (visible to other users in the process "
                "list: prefer --token-file). Without either, only a control plane on loopback "
                "accepts the sidecar, and only under a name that is not enrolled."
            ),
            show_default=False,
        ),
    ] = None,
    sip_listen: Annotated[
        str,
        typer.Option(
            "--sip-listen",
            metavar="HOST:PORT",
            help="SIP (UDP and TCP) address the handsets register with.",
            callback=_listen,
        ),
    ] = "127.0.0.1:5060",
    tls_listen: SipTlsListenOption = None,
    sip_tls_cert: SipTlsCertOption = None,
    sip_tls_key: SipTlsKeyOption = None,
    rtp_ports: RtpPortsOption = "20000-29999",
    rtp_host: Annotated[
        str | None,
        typer.Option("--rtp-host", help="Address RTP relays bind and announce (default: SIP's)."),
    ] = None,
    site: Annotated[str, typer.Option("--site", help="VLAN or site label.")] = "",
    allow_network: AllowNetworkOption = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Where the sidecar keeps its nonce secret and TLS keys.",
            show_default=False,
        ),
    ] = None,
    control_tls: ControlTlsOption = None,
    control_ca: ControlCaOption = None,
    digest_algorithm: DigestAlgorithmOption = None,
    metrics_listen: Annotated[
        str,
        typer.Option(
            "--metrics-listen",
            metavar="HOST:PORT",
            help=(
                "Prometheus scrape endpoint for this sidecar's metrics ('off', the default, "
                "keeps only OTLP export when OTEL_* variables ask for it)."
            ),
            callback=_metrics,
        ),
    ] = "off",
    overload: OverloadOption = None,
    phonebook_listen: PhonebookListenOption = None,
    phonebook_tls_listen: PhonebookTlsListenOption = None,
    phonebook_token_file: PhonebookTokenFileOption = None,
    log_level: LogLevelOption = "info",
) -> None:
    """Run one SIP/RTP sidecar in the foreground (`sip2uc sidecar --name NAME
    --token-file FILE ...`): it dials the control plane with its own credential,
    serves the handsets of its VLAN or site, and stops cleanly on Ctrl-C/SIGTERM.
    While the control plane is unreachable it answers new requests with 503 and
    keeps retrying. The subcommands manage sidecars' credentials."""
    if ctx.invoked_subcommand is not None:
        return
    if name is None:
        raise typer.BadParameter("name the sidecar", param_hint="--name")
    if token is not None and token_file is not None:
        raise typer.BadParameter("give --token-file or --token, not both")
    _check_sip_tls(tls_listen, sip_tls_cert, sip_tls_key)
    from sip2uc_media.gc_policy import tune_for_serving
    from sip2uc_media.sidecar import Sidecar, SidecarConfig

    state = get_state(ctx)
    target = _dial_address(_listen(control)) if control else state.control
    directory = data_dir if data_dir is not None else state.data_dir
    low, high = parse_port_range(rtp_ports)
    use_tls = control_tls if control_tls is not None else not is_loopback(target)
    if token_file is not None:
        try:
            token_file.read_text()
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {token_file}: {exc.strerror}", param_hint="--token-file"
            ) from None
    try:
        config = SidecarConfig(
            control=target,
            token=token or None,
            token_file=token_file,
            name=name,
            site=site,
            sip_listen=sip_listen,
            tls_listen=tls_listen,
            tls_cert=sip_tls_cert,
            tls_key=sip_tls_key,
            data_dir=directory,
            rtp_host=rtp_host,
            rtp_ports=(low, high),
            allowed_networks=list(allow_network or []),
            control_tls=use_tls,
            control_ca=control_ca or state.ca_file,
            digest_algorithms=_digest(digest_algorithm) or SidecarConfig.digest_algorithms,
            phonebook_listen=phonebook_listen,
            phonebook_tls_listen=phonebook_tls_listen,
            phonebook_token_file=phonebook_token_file,
            **_overload(overload),  # type: ignore[arg-type]
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    configure_logging(log_level)
    from sip2uc_control.telemetry import setup_telemetry

    setup_telemetry("sip2uc-sidecar", metrics_listen or None)

    async def body(stop: asyncio.Event) -> None:
        node = Sidecar(config)
        try:
            await node.start()
            tune_for_serving()
            await stop.wait()
            log.info("stopping")
        finally:
            with contextlib.suppress(Exception):
                await node.stop(STOP_GRACE)

    _run(body)


def _check_sip_tls(listen: str | None, cert: Path | None, key: Path | None) -> None:
    if (cert is None) != (key is None):
        raise typer.BadParameter("give both --sip-tls-cert and --sip-tls-key, or neither")
    if cert is not None and listen is None:
        raise typer.BadParameter("--sip-tls-cert needs --sip-tls-listen")


def web(
    ctx: typer.Context,
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            help=(
                "Where to serve the page. Not loopback: HTTPS (--tls-cert/--tls-key, or a "
                "self-signed certificate in the data directory) and the admin token are required."
            ),
            callback=_listen,
        ),
    ] = "127.0.0.1:8080",
    control: ControlOption = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help=(
                "Admin token: the view uses it towards the control plane and asks it of "
                "browsers off loopback (default: the global --token / SIP2UC_TOKEN, or for a "
                "control plane on loopback its data directory's admin-token)."
            ),
            show_default=False,
        ),
    ] = None,
    control_tls: ControlTlsOption = None,
    control_ca: ControlCaOption = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate chain for HTTPS.")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="PEM private key for HTTPS.")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Where a self-signed HTTPS certificate is kept (default: global --data-dir).",
            show_default=False,
        ),
    ] = None,
    log_level: LogLevelOption = "info",
) -> None:
    """Serve the state view of a control plane (possibly on another host) in
    the foreground: a read-only web page that follows the admin API's watch
    streams and shows sidecars, registrations, presence, calls, recent calls
    and warnings live. Ctrl-C or SIGTERM stops it."""
    from sip2uc_web.connection import ControlTarget

    state = get_state(ctx)
    target = _dial_address(_listen(control)) if control else state.control
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("give both --tls-cert and --tls-key, or neither")
    secret = discover_token(token or state.token, target, state.data_dir)
    view = _state_view(
        listen,
        ControlTarget(target, token=secret, tls=control_tls, ca_file=control_ca or state.ca_file),
        data_dir if data_dir is not None else state.data_dir,
        tls_cert,
        tls_key,
    )
    configure_logging(log_level)

    async def body(stop: asyncio.Event) -> None:
        try:
            await view.start()
            await stop.wait()
            log.info("stopping")
        finally:
            with contextlib.suppress(Exception):
                await view.stop(STOP_GRACE)

    _run(body)


def connector_run(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="ID", help="The connector to run (connectors/ID or ID).")
    ],
    log_level: LogLevelOption = "info",
) -> None:
    """Run one connector's presence bridge in the foreground, as a client of the
    control plane given by the global --control (token and TLS as for every
    command: --token or SIP2UC_TOKEN, TLS unless loopback, --ca-file). It keeps
    no local state: the cursor and the bridge's state live in the control
    plane. Ctrl-C or SIGTERM stops it cleanly (state saved; what it published
    stays until it expires or the bridge runs again)."""
    from sip2uc_connectors.control_api import ControlApi
    from sip2uc_connectors.kinds import BRIDGES
    from sip2uc_connectors.runner import BridgeRunner

    state = get_state(ctx)
    configure_logging(log_level)

    async def body(stop: asyncio.Event) -> None:
        api = ControlApi(
            state.control,
            state.token,
            tls=state.tls,
            ca_file=state.ca_file,
            data_dir=state.data_dir,
        )
        try:
            await BridgeRunner(api, name, BRIDGES).run(stop)
        finally:
            await api.close()

    _run(body)


def register(app: typer.Typer) -> None:
    from sip2uc.cli import connectors, sidecars

    app.command("up")(up)
    # `sip2uc sidecar --name ...` runs one; its subcommands (enroll, revoke...) come with the
    # client.
    sidecars.app.callback(invoke_without_command=True)(sidecar)
    app.command("web")(web)
    connectors.app.command("run")(connector_run)


def _overload(items: list[str] | None) -> dict[str, object]:
    """The sidecar settings --overload gives (none when it is not given)."""
    from sip2uc_media.sidecar.config import overload_options

    try:
        return overload_options(items or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--overload") from None


def _digest(algorithms: list[str] | None) -> tuple[str, ...]:
    """The algorithms --digest-algorithm names, in order; empty when not given."""
    if not algorithms:
        return ()
    known = {"sha-256": "SHA-256", "md5": "MD5"}
    chosen = []
    for name in algorithms:
        if name.lower() not in known:
            raise typer.BadParameter(
                f"{name!r}: choose SHA-256 or MD5", param_hint="--digest-algorithm"
            )
        chosen.append(known[name.lower()])
    return tuple(dict.fromkeys(chosen))
