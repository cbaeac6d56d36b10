"""A SIP presence connector's configuration, typed (from the API's field names)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sip2uc_core.sip import SipParseError, SipUri, parse_uri
from sip2uc_core.sip.endpoint import Endpoint, Transport

from ..bridge import Availability, BridgeError, ConnectorConfig
from .mapping import (
    DEFAULT_DND_NOTE,
    InboundRule,
    PidfState,
    inbound_rules,
    publish_table,
)

__all__ = ["SipPresenceSettings", "parse_server"]

DEFAULT_EXPIRES = 600
DEFAULT_MAX_IN_FLIGHT = 200
_DEFAULT_PORTS = {Transport.UDP: 5060, Transport.TCP: 5060, Transport.TLS: 5061}
_AVAILABILITY_NAMES = {f"AVAILABILITY_{a.name}": a for a in Availability}


def parse_server(text: str) -> Endpoint:
    """`sip:HOST[:PORT][;transport=udp|tcp|tls]` -> where to send."""
    try:
        uri = parse_uri(text.strip())
    except SipParseError as exc:
        raise BridgeError(f"server {text!r} is not a SIP URI: {exc}") from None
    if not isinstance(uri, SipUri):
        raise BridgeError(f"server {text!r} is not a sip: URI")
    transport = Transport.parse(uri.transport or "udp")
    if transport is None:
        raise BridgeError(f"server {text!r}: transport must be udp, tcp or tls")
    host = uri.host[1:-1] if uri.host.startswith("[") else uri.host
    return Endpoint(transport, host, uri.port or _DEFAULT_PORTS[transport])


def _availability(value: object) -> Availability | None:
    return _AVAILABILITY_NAMES.get(str(value)) if value else None


def _rules(items: object) -> Sequence[Mapping[str, object]]:
    return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []


@dataclass(frozen=True, slots=True, kw_only=True)
class SipPresenceSettings:
    connector_id: str
    server: Endpoint
    username: str = ""
    password: str = field(default="", repr=False)
    expires: int = DEFAULT_EXPIRES
    publish_dialog: bool = True
    subscribe: bool = True
    publish: Mapping[Availability, PidfState] = field(default_factory=publish_table)
    inbound: tuple[InboundRule, ...] = field(default_factory=inbound_rules)
    dnd_note: str = DEFAULT_DND_NOTE
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    tls_ca_pem: str = ""

    @classmethod
    def from_config(cls, config: ConnectorConfig) -> SipPresenceSettings:
        s = config.settings
        dnd_note = str(s.get("dnd_note") or DEFAULT_DND_NOTE)
        overrides: list[tuple[Availability, PidfState]] = []
        for rule in _rules(s.get("publish_mapping")):
            availability = _availability(rule.get("availability"))
            if availability is not None:
                overrides.append(
                    (
                        availability,
                        PidfState(
                            open=bool(rule.get("open", False)),
                            activity=str(rule.get("activity", "")),
                            note=str(rule.get("note", "")),
                            remove=bool(rule.get("remove", False)),
                        ),
                    )
                )
        inbound = [
            InboundRule(
                activity=str(rule.get("activity", "")),
                note_contains=str(rule.get("note_contains", "")).lower(),
                availability=_availability(rule.get("availability")),
            )
            for rule in _rules(s.get("inbound_mapping"))
        ]
        expires = s.get("expires")
        max_in_flight = s.get("max_in_flight")
        return cls(
            connector_id=config.name.removeprefix("connectors/"),
            server=parse_server(str(s.get("server", ""))),
            username=str(s.get("username", "")),
            password=config.secrets.get("password", ""),
            expires=expires if isinstance(expires, int) and expires > 0 else DEFAULT_EXPIRES,
            publish_dialog=s.get("publish_dialog", True) is not False,
            subscribe=s.get("subscribe", True) is not False,
            publish=publish_table(overrides, dnd_note),
            inbound=inbound_rules(inbound, dnd_note),
            dnd_note=dnd_note,
            max_in_flight=(
                max_in_flight
                if isinstance(max_in_flight, int) and max_in_flight > 0
                else DEFAULT_MAX_IN_FLIGHT
            ),
            tls_ca_pem=str(s.get("tls_ca_pem", "")),
        )
