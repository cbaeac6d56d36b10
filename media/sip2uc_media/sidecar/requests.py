"""What the sidecar tells and asks the control plane, in the sidecar's own terms.

`wire.py` turns these into `sidecar.proto` messages; nothing else in the sidecar needs to know
those exist. The REGISTER's own records (`RegisterAttempt`, `RegisterResult`) live with the
registrar that makes and reads them, the call leg's (`InviteRpc`, `ReportLeg`, ...) with the
B2BUA's actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sip2uc_core.sip.digest import Credentials
from sip2uc_core.sip.endpoint import Endpoint

from ..b2bua.offer_answer import MediaSpec
from ..rtp.relay import Direction
from .registrar import RegisterResult

__all__ = [
    "ControlUnavailableError",
    "HelloInfo",
    "InviteCall",
    "Origin",
    "RegisterDone",
]


class ControlUnavailableError(Exception):
    """The control plane cannot be asked right now; the handset gets 503 + Retry-After."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from (or, for a leg the sidecar created, where it went)."""

    sidecar: str
    source: Endpoint
    user_agent: str
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteCall:
    """Everything an ``Invite`` carries besides the leg's offer (``b2bua.actions.InviteRpc``)."""

    origin: Origin
    #: None for trunk sources (authorised by address).
    credentials: Credentials | None
    request_uri: str
    from_uri: str
    from_display_name: str
    to_uri: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveLeg:
    """A call leg this sidecar carries, reported in the hello (docs/calls.md,
    "Reconciliation")."""

    call_id: str
    leg_id: str
    #: The handset placed the call (our INVITE server side).
    caller: bool
    #: Answered with the handset; a leg still being set up is ended by a control plane that
    #: no longer knows it.
    established: bool
    #: The digest username of a caller's leg, the To URI of a leg the control plane asked for.
    party: str
    #: The leg's peer endpoint (where another sidecar's relay sends its media).
    media: MediaSpec
    direction: Direction


@dataclass(frozen=True, slots=True, kw_only=True)
class HelloInfo:
    """How the sidecar announces itself when its session starts."""

    name: str
    site: str
    #: One SIP listening address per transport.
    listeners: tuple[Endpoint, ...]
    rtp_host: str
    rtp_ports: tuple[int, int]
    capacity: int
    instance_id: str
    live_legs: tuple[LiveLeg, ...] = ()


#: How a REGISTER's answer comes back: ``done(result, None)`` or ``done(None, error)``, once.
RegisterDone = Callable[[RegisterResult | None, ControlUnavailableError | None], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeCall:
    """A SUBSCRIBE for the control plane: a new subscription (with credentials), a refresh or
    an end (with the watcher the creation was granted to)."""

    origin: Origin
    subscription_id: str
    #: "create", "refresh" or "end".
    action: str
    event: str
    request_uri: str = ""
    from_uri: str = ""
    expires: int = 0
    eventlist: bool = False
    credentials: Credentials | None = None
    watcher: str = ""
