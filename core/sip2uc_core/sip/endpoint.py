"""Where a SIP message comes from or goes to: a transport (RFC 3261 §18) and an address on it.

One type for both directions, used by the transaction layer, the sidecar's transports, calls and
registrar, and the control plane's registrar (a binding remembers the endpoint its REGISTER came
from: handsets sit behind NAT and can only be reached there).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Endpoint", "Transport"]


class Transport(enum.StrEnum):
    """A SIP transport this project speaks. The values are the lower-case names the URI
    ``transport`` parameter uses (RFC 3261 §19.1.1) and the control plane stores."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"

    @property
    def reliable(self) -> bool:
        return self is not Transport.UDP

    @property
    def via_name(self) -> str:
        """The name in a Via's sent-protocol (``SIP/2.0/UDP``)."""
        return _VIA_NAMES[self]

    @classmethod
    def parse(cls, name: str) -> Transport | None:
        """The transport a Via or URI names, in any case; None for one we do not speak (SCTP, WS)."""
        return _BY_NAME.get(name.lower())


_VIA_NAMES = {t: t.value.upper() for t in Transport}
_BY_NAME = {t.value: t for t in Transport}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A transport address: where a message came from or where one goes.

    `host` is a bare IP address or name (IPv6 without brackets). On reliable transports
    `connection_id` names the adapter's connection to reuse (RFC 3261 §18.2.2); if that connection
    is gone, the adapter connects to `host`:`port` instead.
    """

    transport: Transport
    host: str
    port: int
    connection_id: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport is not Transport.UDP
