"""Handsets' subscriptions (RFC 6665) as the sidecar holds them: the SUBSCRIBE's checks, the
subscription dialogs, and the NOTIFYs built from the users' states.

Sans-IO: requests, states and ``now`` in; responses, NOTIFY requests and deadlines out. The asyncio
side (`subscribe.py`) asks the control plane whether a watcher may watch and what a URI names,
sends what this module builds and feeds back the answers.

- Events: ``presence`` (PIDF with RPID, RFC 3863/4480) and ``dialog`` (RFC 4235); anything else
  is answered 489 with ``Allow-Events`` (§8.2.2). A list URI (RFC 4662) gets a
  ``multipart/related`` body of RLMI and one document per member.
- Expires (§4.2.1.1): absent means `DEFAULT_EXPIRES`; below `MIN_EXPIRES` is 423 with
  Min-Expires; above `MAX_EXPIRES` is granted `MAX_EXPIRES`; 0 ends the subscription with a final
  NOTIFY (``terminated;reason=timeout``).
- A NOTIFY goes out at once on every SUBSCRIBE (§4.2.1.2) with the full state, and after that on
  every change of a watched user: presence documents whole, dialog-info and RLMI as partial
  state (only what changed) with a version one higher each time (RFC 4235 §4.1.2, RFC 4662 §5.2).
  One NOTIFY per subscription is in flight at a time; changes meanwhile make one more NOTIFY when
  it is answered, so a watcher that is slow to answer gets the latest state, not every step.
- A 481 or a NOTIFY that got no answer (the watcher went away, §4.1.3) ends the subscription.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sip2uc_core.events import dialog_info, pidf, rlmi
from sip2uc_core.events.dialog_info import Dialog
from sip2uc_core.events.pidf import AVAILABILITY_STATES, PidfState
from sip2uc_core.sip.endpoint import Endpoint
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.headers import NameAddr, parse_params
from sip2uc_core.sip.message import SipRequest, SipResponse, make_response

from ..b2bua.dialog import Dialog as SipDialog

__all__ = [
    "ALLOW_EVENTS",
    "DEFAULT_EXPIRES",
    "EVENTS",
    "MAX_EXPIRES",
    "MIN_EXPIRES",
    "DialogState",
    "Grant",
    "Subscription",
    "SubscriptionTable",
    "UserState",
    "Watched",
    "event_of",
    "requested_expires",
]

EVENTS = ("presence", "dialog")
ALLOW_EVENTS = ", ".join(EVENTS)
MIN_EXPIRES = 60
MAX_EXPIRES = 3600
DEFAULT_EXPIRES = 3600
_CONTENT_TYPES = {"presence": pidf.CONTENT_TYPE, "dialog": dialog_info.CONTENT_TYPE}
_OFFLINE = PidfState(open=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogState:
    """One call of a watched user, as the control plane describes it."""

    id: str
    #: "trying", "early", "confirmed" or "terminated".
    phase: str
    initiator: bool
    remote_uri: str = ""
    remote_display: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserState:
    user: str
    #: An availability name ("available", "in-a-call", "offline", ...).
    availability: str = "offline"
    note: str = ""
    dialogs: tuple[DialogState, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Watched:
    user: str
    uri: str
    display_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """The control plane's yes: who watches, what, for how long."""

    watcher: str
    expires: int
    resources: tuple[Watched, ...]
    list_uri: str = ""


def event_of(request: SipRequest) -> tuple[str, str]:
    """The event package and its ``id`` parameter (RFC 6665 §8.2.1); ("", "") without Event."""
    value = request.headers.get("Event") or request.headers.get("o") or ""
    package, _, params = value.partition(";")
    event_id = ""
    if params:
        try:
            event_id = dict(parse_params(";" + params)).get("id") or ""
        except SipParseError:
            event_id = ""
    return package.strip().lower(), event_id


def requested_expires(request: SipRequest) -> int:
    expires = request.expires
    return DEFAULT_EXPIRES if expires is None else expires


def supports_eventlist(request: SipRequest) -> bool:
    values = request.headers.get_all("Supported") + request.headers.get_all("k")
    return any(
        token.strip().lower() == "eventlist" for value in values for token in value.split(",")
    )


@dataclass(slots=True, kw_only=True)
class Subscription:
    id: str
    event: str
    event_id: str
    watcher: str
    dialog: SipDialog
    dest: Endpoint
    expires_at: float
    resources: tuple[Watched, ...]
    list_uri: str = ""
    #: The next RLMI version of a list subscription (RFC 4662 §5.2).
    version: int = 0
    #: What each watched user was last shown as (per user: the state's comparable part).
    shown: dict[str, object] = field(default_factory=dict)
    #: The next dialog-info version per watched user (RFC 4235 §4.1.2).
    doc_versions: dict[str, int] = field(default_factory=dict)
    #: Dialog ids shown as not terminated, per user (partial dialog-info sends their end).
    open_dialogs: dict[str, set[str]] = field(default_factory=dict)
    in_flight: bool = False
    #: A change arrived while a NOTIFY was in flight.
    dirty: bool = False
    terminated: bool = False

    @property
    def resource_uri(self) -> str:
        return self.list_uri or (self.resources[0].uri if self.resources else "")

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(r.user for r in self.resources)


class SubscriptionTable:
    """The sidecar's subscriptions and the users' states they show."""

    def __init__(self, *, boundary: str = "sip2uc-boundary") -> None:
        self.subscriptions: dict[str, Subscription] = {}
        self._by_dialog: dict[tuple[str, str, str], str] = {}
        self._by_user: dict[str, set[str]] = {}
        self.states: dict[str, UserState] = {}
        self._boundary = boundary
        #: (expiry, id) of every subscription, stale entries included (checked when popped): a
        #: sweep costs what expired, not what is held.
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self.subscriptions)

    # -- the SUBSCRIBE ------------------------------------------------------------------------

    @staticmethod
    def precheck(request: SipRequest, tag: str) -> SipResponse | None:
        """What a SUBSCRIBE is answered without asking anybody (489, 423, 400), or None."""
        event, _ = event_of(request)
        if event not in EVENTS:
            # RFC 6665 §8.2.2, §4.2.1.1: unknown or missing Event.
            return make_response(request, 489, to_tag=tag, headers=[("Allow-Events", ALLOW_EVENTS)])
        expires = requested_expires(request)
        if 0 < expires < MIN_EXPIRES:
            return make_response(
                request, 423, to_tag=tag, headers=[("Min-Expires", str(MIN_EXPIRES))]
            )
        if request.to.tag is None and not request.contact:
            return make_response(request, 400, "Missing Contact", to_tag=tag)
        return None

    def find(self, request: SipRequest) -> Subscription | None:
        """The subscription an in-dialog SUBSCRIBE refreshes or ends."""
        key = (request.call_id, request.to.tag or "", request.from_.tag or "")
        sub_id = self._by_dialog.get(key)
        return self.subscriptions.get(sub_id) if sub_id is not None else None

    def create(
        self,
        request: SipRequest,
        dest: Endpoint,
        grant: Grant,
        now: float,
        *,
        sub_id: str,
        local_tag: str,
        local_contact: NameAddr,
    ) -> Subscription:
        event, event_id = event_of(request)
        dialog = SipDialog.as_uas(request, local_tag=local_tag, local_contact=local_contact)
        sub = Subscription(
            id=sub_id,
            event=event,
            event_id=event_id,
            watcher=grant.watcher,
            dialog=dialog,
            dest=dest,
            expires_at=now + grant.expires,
            resources=grant.resources,
            list_uri=grant.list_uri,
        )
        self.subscriptions[sub_id] = sub
        heapq.heappush(self._expiries, (sub.expires_at, sub_id))
        self._by_dialog[dialog.key] = sub_id
        for user in sub.users:
            self._by_user.setdefault(user, set()).add(sub_id)
        return sub

    def accepted(self, request: SipRequest, sub: Subscription, expires: int) -> SipResponse:
        """The 200 to a SUBSCRIBE (RFC 6665 §4.2.1.1: Expires says what was granted)."""
        return make_response(
            request,
            200,
            to_tag=sub.dialog.local_tag,
            headers=[("Expires", str(expires)), ("Contact", str(sub.dialog.local_contact))],
        )

    def refresh(self, sub: Subscription, request: SipRequest, expires: int, now: float) -> None:
        sub.expires_at = now + expires
        heapq.heappush(self._expiries, (sub.expires_at, sub.id))
        sub.dialog.refresh_target(request)
        sub.shown.clear()  # §4.2.1.2: the NOTIFY after a refresh carries the full state

    def set_resources(self, sub: Subscription, resources: tuple[Watched, ...]) -> None:
        """A list whose members changed (found at a refresh): the next NOTIFY has the full
        state of the new members."""
        for user in sub.users:
            ids = self._by_user.get(user)
            if ids is not None:
                ids.discard(sub.id)
                if not ids:
                    del self._by_user[user]
        sub.resources = resources
        for user in sub.users:
            self._by_user.setdefault(user, set()).add(sub.id)
        sub.shown.clear()

    def remove(self, sub: Subscription) -> None:
        sub.terminated = True
        self.subscriptions.pop(sub.id, None)
        self._by_dialog.pop(sub.dialog.key, None)
        for user in sub.users:
            ids = self._by_user.get(user)
            if ids is not None:
                ids.discard(sub.id)
                if not ids:
                    del self._by_user[user]

    # -- states -------------------------------------------------------------------------------

    def replace_states(self, states: Iterable[UserState]) -> list[Subscription]:
        """A snapshot: every subscription whose users' states differ from what it showed."""
        self.states = {s.user: s for s in states}
        return [s for s in self.subscriptions.values() if self._changed(s)]

    def update(self, state: UserState) -> list[Subscription]:
        """One user's new state: the subscriptions that must be told."""
        self.states[state.user] = state
        ids = self._by_user.get(state.user, ())
        return [
            sub
            for sid in ids
            if (sub := self.subscriptions.get(sid)) is not None and self._changed(sub, state.user)
        ]

    def _state(self, user: str) -> UserState:
        return self.states.get(user) or UserState(user=user)

    def _shown_value(self, sub: Subscription, user: str) -> object:
        state = self._state(user)
        if sub.event == "presence":
            return (state.availability, state.note)
        return tuple((d.id, d.phase, d.remote_uri) for d in state.dialogs)

    def _changed(self, sub: Subscription, user: str | None = None) -> bool:
        users = (user,) if user is not None else sub.users
        return any(sub.shown.get(u) != self._shown_value(sub, u) for u in users)

    # -- NOTIFY -------------------------------------------------------------------------------

    def next_notify(
        self, sub: Subscription, now: float, via: str, *, reason: str | None = None
    ) -> SipRequest | None:
        """The NOTIFY to send now, or None (one in flight, or nothing new). With `reason` the
        subscription ends (``Subscription-State: terminated;reason=...``)."""
        if sub.in_flight:
            sub.dirty = True
            return None
        full = not sub.shown
        changed = [u for u in sub.users if sub.shown.get(u) != self._shown_value(sub, u)]
        if not changed and not full and reason is None:
            return None
        content_type, body = self._body(sub, changed, full)
        if reason is not None:
            state = f"terminated;reason={reason}"
        else:
            state = f"active;expires={max(0, int(sub.expires_at - now))}"
        event = sub.event + (f";id={sub.event_id}" if sub.event_id else "")
        extra = [("Event", event), ("Subscription-State", state)]
        if sub.list_uri:
            extra.append(("Require", "eventlist"))
        request = sub.dialog.build_request(
            "NOTIFY", via=via, body=body, content_type=content_type, extra=extra
        )
        # NOTIFY is a target refresh request (RFC 6665 §4.1.3): it carries our Contact.
        request.headers.add("Contact", str(sub.dialog.local_contact))
        sub.in_flight = True
        sub.dirty = False
        return request

    def _body(self, sub: Subscription, changed: Sequence[str], full: bool) -> tuple[str, bytes]:
        users = list(sub.users) if full else list(changed)
        if not sub.list_uri:
            user = sub.resources[0] if sub.resources else None
            if user is None:
                return _CONTENT_TYPES[sub.event], b""
            return _CONTENT_TYPES[sub.event], self._document(sub, user, full)
        parts: list[rlmi.Part] = []
        entries: list[rlmi.ResourceEntry] = []
        shown_now = set(users)
        for index, resource in enumerate(sub.resources):
            cid = ""
            if resource.user in shown_now:
                cid = f"{sub.id}.{index}.{sub.version}@sip2uc"
                parts.append(
                    rlmi.Part(
                        cid, _CONTENT_TYPES[sub.event], self._document(sub, resource, full=True)
                    )
                )
            entries.append(
                rlmi.ResourceEntry(
                    uri=resource.uri,
                    name=resource.display_name,
                    instance_id=f"{sub.id}.{index}",
                    cid=cid,
                )
            )
        root = rlmi.Part(
            f"{sub.id}.rlmi.{sub.version}@sip2uc",
            rlmi.CONTENT_TYPE,
            rlmi.rlmi_document(sub.list_uri, sub.version, entries, full=full),
        )
        sub.version += 1
        return rlmi.list_notification(root, parts, self._boundary)

    def _document(self, sub: Subscription, resource: Watched, full: bool) -> bytes:
        state = self._state(resource.user)
        sub.shown[resource.user] = self._shown_value(sub, resource.user)
        if sub.event == "presence":
            shown = AVAILABILITY_STATES.get(state.availability, _OFFLINE)
            if shown.remove:
                shown = _OFFLINE
            if state.note and shown.open:
                shown = PidfState(activity=shown.activity, note=state.note)
            return pidf.presence_document(resource.uri, "sip2uc", shown)
        was_open = sub.open_dialogs.get(resource.user, set())
        live = [d for d in state.dialogs if d.phase != "terminated"]
        dialogs = [_dialog(d, resource.uri) for d in live]
        if not full:
            # Partial state (RFC 4235 §4.1): the dialogs that may have changed, and the end of
            # those shown before that are over now.
            listed = {d.id for d in state.dialogs}
            dialogs.extend(
                _dialog(d, resource.uri)
                for d in state.dialogs
                if d.phase == "terminated" and d.id in was_open
            )
            dialogs.extend(
                Dialog(id=gone, state="terminated") for gone in sorted(was_open - listed)
            )
        sub.open_dialogs[resource.user] = {d.id for d in live}
        version = sub.doc_versions.get(resource.user, 0)
        sub.doc_versions[resource.user] = version + 1
        return dialog_info.dialog_info(resource.uri, version, dialogs, full=full)

    def answered(self, sub: Subscription, status: int) -> bool:
        """A NOTIFY's final response; True when another NOTIFY is due now (a change arrived
        meanwhile). A 481, 408 or other failure ends the subscription (RFC 6665 §4.1.3,
        §4.2.2)."""
        sub.in_flight = False
        if 200 <= status < 300:
            return sub.dirty and not sub.terminated
        self.remove(sub)
        return False

    # -- time ---------------------------------------------------------------------------------

    def expired(self, now: float) -> list[Subscription]:
        """The subscriptions whose expiry has come (each once, until refreshed)."""
        found: list[Subscription] = []
        heap = self._expiries
        while heap and heap[0][0] <= now:
            at, sub_id = heapq.heappop(heap)
            sub = self.subscriptions.get(sub_id)
            if sub is not None and sub.expires_at == at:
                found.append(sub)
        return found

    def next_deadline(self) -> float | None:
        heap = self._expiries
        while heap:
            at, sub_id = heap[0]
            sub = self.subscriptions.get(sub_id)
            if sub is not None and sub.expires_at == at:
                return at
            heapq.heappop(heap)
        return None


def _dialog(state: DialogState, local_uri: str) -> Dialog:
    return Dialog(
        id=state.id,
        state=state.phase,
        direction="initiator" if state.initiator else "recipient",
        remote_uri=state.remote_uri,
        remote_display=state.remote_display,
        local_uri=local_uri,
    )
