"""Where a trunk's requests go: RFC 3263 server location, as a thin asyncio adapter.

An IP address is used as it is. A name with a port (or a transport given) skips NAPTR; a name
without a port is looked up with SRV (`_sip._udp`, `_sip._tcp`, `_sips._tcp`) first and its
targets in priority order, then plain A/AAAA on the transport's default port (RFC 3263 §4.2).
NAPTR selection of the transport is not done: the trunk's transport is configured.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket

import dns.asyncresolver
import dns.exception
import dns.resolver
from sip2uc_core.sip.endpoint import Endpoint, Transport

from .upkeep import TrunkConfig

__all__ = ["resolve"]

log = logging.getLogger(__name__)

_SRV_PREFIX = {
    Transport.UDP: "_sip._udp.",
    Transport.TCP: "_sip._tcp.",
    Transport.TLS: "_sips._tcp.",
}
_DEFAULT_PORT = {Transport.UDP: 5060, Transport.TCP: 5060, Transport.TLS: 5061}
MAX_ADDRESSES = 8
#: Each DNS lookup gives up after this long.
LOOKUP_SECONDS = 3.0


async def resolve(config: TrunkConfig) -> list[Endpoint]:
    """The trunk's addresses, preferred first; empty when the name does not resolve."""
    transport = config.transport
    try:
        ipaddress.ip_address(config.address)
    except ValueError:
        pass
    else:
        return [Endpoint(transport, config.address, config.port or _DEFAULT_PORT[transport])]
    targets: list[tuple[str, int]] = []
    if not config.port:
        targets = await _srv(config.address, transport)
    if not targets:
        targets = [(config.address, config.port or _DEFAULT_PORT[transport])]
    out: list[Endpoint] = []
    for host, port in targets:
        for address in await _addresses(host, port):
            endpoint = Endpoint(transport, address, port)
            if endpoint not in out:
                out.append(endpoint)
    return out[:MAX_ADDRESSES]


async def _srv(name: str, transport: Transport) -> list[tuple[str, int]]:
    resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = LOOKUP_SECONDS
    try:
        answer = await resolver.resolve(_SRV_PREFIX[transport] + name, "SRV")
    except (dns.exception.DNSException, OSError):
        return []
    records = sorted(answer, key=lambda r: (r.priority, -r.weight))
    return [(str(r.target).rstrip("."), int(r.port)) for r in records if str(r.target) != "."]


async def _addresses(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM), LOOKUP_SECONDS
        )
    except (OSError, TimeoutError) as exc:
        log.info("trunk address %s does not resolve: %s", host, exc)
        return []
    out: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in out:
            out.append(address)
    return out
