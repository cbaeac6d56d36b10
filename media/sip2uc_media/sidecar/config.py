"""Static configuration of one media sidecar process."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sip2uc_core.sip.digest import Algorithm

from .overload import OverloadSettings

__all__ = [
    "OVERLOAD_KEYS",
    "SidecarConfig",
    "format_hostport",
    "overload_options",
    "parse_hostport",
]


def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int]:
    """Split ``host:port``, ``[v6]:port`` or ``host`` (with `default_port`); ValueError if bad."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unterminated IPv6 literal in {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"garbage after IPv6 literal in {text!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        ipaddress.IPv6Address(text)
        host, port_text = text, ""
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"no host in {text!r}")
    if not port_text:
        if default_port is None:
            raise ValueError(f"no port in {text!r}")
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port_text)


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(kw_only=True)
class SidecarConfig:
    """Everything a sidecar needs before it has talked to the control plane.

    `sip_listen` binds both UDP and TCP; `tls_listen` (e.g. ``0.0.0.0:5061``) enables TLS with
    `tls_cert`/`tls_key`, or with a self-signed certificate generated into `data_dir`.
    Settings that change at run time (realm, ban policy, allowed networks...) come from the
    control plane; `allowed_networks` here is a local floor applied in addition.
    """

    control: str
    #: The sidecar's credential (`sip2uc sidecar enroll NAME`), or where to read it: the file is
    #: read again before each session, so a rotated credential needs no restart.
    token: str | None = None
    token_file: Path | None = None
    name: str
    site: str = ""
    sip_listen: str = "127.0.0.1:5060"
    tls_listen: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    data_dir: Path = field(default_factory=lambda: Path("sip2uc-data"))
    rtp_host: str | None = None
    rtp_ports: tuple[int, int] = (20000, 29999)
    allowed_networks: list[str] = field(default_factory=list)
    max_message_size: int = 65535
    control_tls: bool = False
    control_ca: Path | None = None
    # Challenge algorithms, most preferred first (RFC 8760 §2.4), for every device the control
    # plane gives no algorithms of its own. MD5 alone by default: SIPp and many handsets read only
    # the first WWW-Authenticate and cannot answer SHA-256 (sip2uc_core.sip.digest.DEFAULT_CHALLENGE).
    digest_algorithms: tuple[str, ...] = ("MD5",)
    # Beyond the public knobs: limits an operator rarely needs to touch.
    max_connections: int = 4096
    tcp_idle_timeout: float = 3600.0
    #: A TCP/TLS message (headers and body) must arrive whole within this many seconds of its
    #: first byte, and a new connection must deliver its first one as soon: a peer that
    #: trickles a header (slowloris) is cut off.
    tcp_message_timeout: float = 20.0
    #: The intake's bounds: what waits, and when new work is answered 503 (`overload.py`).
    overload: OverloadSettings = field(default_factory=OverloadSettings)
    rpc_timeout: float = 2.0
    heartbeat_interval: float = 5.0
    retry_after: int = 5
    #: The shared address book for handsets over HTTP and/or HTTPS (HOST:PORT each); off when
    #: neither is given. HTTPS uses the SIP TLS certificate (or the self-signed one).
    phonebook_listen: str | None = None
    phonebook_tls_listen: str | None = None
    #: A file holding the per-site token that reads the book without digest credentials.
    phonebook_token_file: Path | None = None

    def __post_init__(self) -> None:
        parse_hostport(self.sip_listen, 5060)
        if self.tls_listen is not None:
            parse_hostport(self.tls_listen, 5061)
        for listen in (self.phonebook_listen, self.phonebook_tls_listen):
            if listen is not None:
                parse_hostport(listen)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.token is not None and self.token_file is not None:
            raise ValueError("give the credential or the file that holds it, not both")
        low, high = self.rtp_ports
        if not 0 < low <= high <= 65535:
            raise ValueError(f"bad RTP port range {low}-{high}")
        if not 1.0 <= self.tcp_message_timeout <= self.tcp_idle_timeout:
            raise ValueError("tcp_message_timeout must be between 1 s and tcp_idle_timeout")
        if not 1 <= self.retry_after <= 3600:
            raise ValueError("retry_after must be 1-3600 s")
        if self.max_message_size < 1024:
            raise ValueError("max_message_size below 1024 bytes cannot carry a REGISTER")
        if not self.digest_algorithms:
            raise ValueError("digest_algorithms must name at least one algorithm")
        for name in self.digest_algorithms:
            Algorithm.parse(name)
        for network in self.allowed_networks:
            ipaddress.ip_network(network, strict=False)


#: What `overload_options` accepts: the intake's bounds, the Retry-After of a 503 and the
#: TCP/TLS message timeout (docs/configuration.md describes each).
OVERLOAD_KEYS: tuple[str, ...] = (
    *(f.name for f in dataclasses.fields(OverloadSettings)),
    "retry_after",
    "tcp_message_timeout",
)


def overload_options(items: Sequence[str]) -> dict[str, object]:
    """`SidecarConfig` keyword arguments from ``KEY=VALUE`` strings (``sip2uc sidecar
    --overload max_queue_delay=0.5``); ValueError naming the key for anything else."""
    overload: dict[str, float | int] = {}
    extra: dict[str, object] = {}
    defaults = {f.name: f.default for f in dataclasses.fields(OverloadSettings)}
    for item in items:
        key, equals, text = item.partition("=")
        key = key.strip()
        if not equals or key not in OVERLOAD_KEYS:
            raise ValueError(
                f"{item!r}: expected KEY=VALUE with KEY one of {', '.join(OVERLOAD_KEYS)}"
            )
        integral = key == "retry_after" or isinstance(defaults.get(key), int)
        try:
            value: float | int = int(text) if integral else float(text)
        except ValueError:
            kind = "a whole number" if integral else "a number"
            raise ValueError(f"{key}: {text!r} is not {kind}") from None
        if key in defaults:
            overload[key] = value
        elif not 1 <= value <= 3600:
            raise ValueError(f"{key} must be 1-3600 s")
        else:
            extra[key] = value
    if overload:
        extra["overload"] = OverloadSettings(**overload)  # type: ignore[arg-type]
    return extra
