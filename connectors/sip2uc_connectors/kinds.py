"""Which bridge runs which connector kind."""

from __future__ import annotations

from .bridge import Bridge, BridgeFactory, ConnectorConfig

__all__ = ["BRIDGES"]


def _sip_presence(config: ConnectorConfig) -> Bridge:
    from .sip_presence.bridge import SipPresenceBridge

    return SipPresenceBridge(config)


def _teams(config: ConnectorConfig) -> Bridge:
    from .teams_adapter import TeamsBridge

    return TeamsBridge(config)


#: Connector kind (the API's config field name) -> bridge factory.
BRIDGES: dict[str, BridgeFactory] = {
    "sip_presence": _sip_presence,
    "teams": _teams,
}
