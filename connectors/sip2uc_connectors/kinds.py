"""Which bridge runs which connector kind."""

from __future__ import annotations

from .bridge import Bridge, BridgeFactory, ConnectorConfig

__all__ = ["BRIDGES"]


def _sip_presence(config: ConnectorConfig) -> Bridge:
    from .sip_presence.bridge import SipPresenceBridge

    return SipPresenceBridge(config)


#: Connector kind (the API's config field name) -> bridge factory.
BRIDGES: dict[str, BridgeFactory] = {
    "sip_presence": _sip_presence,
}
