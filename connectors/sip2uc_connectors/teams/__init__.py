"""The Microsoft Teams presence bridge: sip2uc presence to Teams through Microsoft Graph, and
states set in Teams back.

The framework feeds `TeamsPresenceBridge.publish` with each user's latest state
(`OutboundPresence`), takes `InboundPresence` from `poll`, and shows `status`. See docs/teams.md.
"""

from .auth import TokenError, TokenSource
from .bridge import TeamsPresenceBridge
from .config import ClientCertificate, ClientSecret, ConfigError, TeamsConfig
from .mapping import GraphPair, MappingError, TeamsMapping
from .model import Availability, BridgeStatus, ConnectionState, InboundPresence, OutboundPresence
from .sync import SyncTiming

__all__ = [
    "Availability",
    "BridgeStatus",
    "ClientCertificate",
    "ClientSecret",
    "ConfigError",
    "ConnectionState",
    "GraphPair",
    "InboundPresence",
    "MappingError",
    "OutboundPresence",
    "SyncTiming",
    "TeamsConfig",
    "TeamsMapping",
    "TeamsPresenceBridge",
    "TokenError",
    "TokenSource",
]
