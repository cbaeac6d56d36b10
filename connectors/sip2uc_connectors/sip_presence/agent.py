"""The bridge's SIP user agent towards one presence server, sans-IO.

`PresenceAgent` keeps many `Publication`\\ s (one per user and event package) and
`Subscription`\\ s (one per watched user) in step with the server over the RFC 3261 transaction
layer of `sip2uc_core`. It is driven like the rest of the SIP core: `receive` (bytes from the
server), `handle_timer` (at `next_deadline`), and the owner's calls (`publish`, `subscribe`,
`unsubscribe`, `connected`, `disconnected`); it hands back bytes (`datagrams_to_send`) and
events (`events`). No sockets, no clocks, no randomness of its own (``random_bytes``).

Work is bounded: at most ``max_in_flight`` client transactions are open; whatever else is due
waits in a ready queue (first come, first served) and goes out as answers come back. Timed work
(refreshes, retries) waits in a heap keyed by deadline. Every request is sent to the configured
server (it acts as outbound proxy); the Request-URI names the user (PUBLISH, initial SUBSCRIBE)
or the dialog's remote target (refresh).

Digest authentication is the core's `ClientAuth`: challenged requests are resent with
credentials (a new CSeq and branch), and later requests carry credentials for the remembered
challenge from the start.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from sip2uc_core.events import pidf
from sip2uc_core.sip import Headers, SipParseError, SipRequest, SipResponse, parse_uri
from sip2uc_core.sip.client_auth import ClientAuth
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.headers import parse_params
from sip2uc_core.sip.message import make_response, parse_message, validate_response
from sip2uc_core.sip.transaction import (
    BranchGenerator,
    Overloaded,
    RequestReceived,
    ResponseReceived,
    TransactionError,
    TransactionId,
    TransactionLayer,
    TransactionTimeout,
    TransportFailed,
)

from .publication import Outcome, Publication, PublishRequest, RequestKind, classify
from .subscription import (
    SubscribeKind,
    SubscribeOutcome,
    SubscribeRequest,
    Subscription,
    classify_subscribe,
)

__all__ = [
    "AgentEvent",
    "Endpoint",
    "MessageAnswered",
    "MessageReceived",
    "Notified",
    "PresenceAgent",
    "PublishFailed",
    "Published",
    "hostport",
]

#: Resends of one request after 401/407 (a remembered nonce gone, then stale nonces).
MAX_AUTH_RESENDS = 3


def hostport(endpoint: Endpoint) -> str:
    """``host:port`` with an IPv6 host in brackets (RFC 3261 §25.1 hostport)."""
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"{host}:{endpoint.port}"


def uri_params(endpoint: Endpoint) -> str:
    """The ``;transport=`` parameter a Contact needs (none for UDP, the default)."""
    return "" if endpoint.transport is Transport.UDP else f";transport={endpoint.transport.value}"


@dataclass(frozen=True, slots=True)
class Published:
    """``generation`` of the publication's document is on the server (or gone, if None)."""

    entity: str
    event: str
    generation: int


@dataclass(frozen=True, slots=True)
class PublishFailed:
    entity: str
    event: str
    reason: str
    #: The server will never take it (489): the agent stops trying.
    permanent: bool


@dataclass(frozen=True, slots=True)
class Notified:
    """A NOTIFY for a watched user: the server's current document (empty: no publications)."""

    entity: str
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A short message (RFC 3428) the server sent for `entity` (its To identity), answered 202."""

    entity: str
    sender_uri: str
    sender_display_name: str
    text: str


@dataclass(frozen=True, slots=True)
class MessageAnswered:
    """The server's final answer to `send_message` number `token` (status 0: no answer)."""

    token: int
    status: int
    reason: str


AgentEvent: TypeAlias = Published | PublishFailed | Notified | MessageReceived | MessageAnswered
#: The one type of text the bridge takes and sends (RFC 3428 §9 makes it the one to support).
TEXT_PLAIN = "text/plain"
#: The largest text accepted from the server, in bytes.
MAX_TEXT_BYTES = 60_000
_PubKey: TypeAlias = tuple[str, str]  # (entity, event)
_Key: TypeAlias = tuple[str, str, str]  # ("pub", entity, event) | ("sub", entity, "")


@dataclass(slots=True)
class _PubSlot:
    entity: str
    event: str
    content_type: str
    publication: Publication
    call_id: str
    from_tag: str
    cseq: int = 0
    reported: int = 0


@dataclass(slots=True)
class _OutMessage:
    token: int
    to: str
    sender_uri: str
    sender_display_name: str
    body: bytes
    call_id: str
    from_tag: str
    cseq: int = 1


@dataclass(slots=True)
class _Sent:
    key: _Key
    request: SipRequest
    publish: PublishRequest | None = None
    subscribe: SubscribeRequest | None = None
    auth_resends: int = 0
    message: _OutMessage | None = None


def spread_of(text: str) -> float:
    """A stable fraction 0-1 for ``text`` (where in the expiry window it refreshes)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 0xFFFFFFFF


class PresenceAgent:
    def __init__(
        self,
        *,
        server: Endpoint,
        random_bytes: Callable[[int], bytes],
        username: str = "",
        password: str = "",
        expires: int = 600,
        max_in_flight: int = 200,
        user_agent: str = "sip2uc",
        watcher_user: str = "sip2uc",
        knows: Callable[[str], bool] = lambda _entity: False,
    ) -> None:
        self.server = server
        self.local: Endpoint | None = None
        self.expires = expires
        self.max_in_flight = max(1, max_in_flight)
        self.user_agent = user_agent
        self.watcher_user = username or watcher_user
        #: Whether a MESSAGE from the server for this identity has somewhere to go.
        self.knows = knows
        self._message_tokens = itertools.count(1)
        self.auth = ClientAuth(username, password, random_bytes)
        self._random = random_bytes
        self._branch = BranchGenerator(random_bytes)
        self._dest = server
        # Completed client transactions linger for timer K (5 s over UDP) only to absorb
        # retransmitted answers: thousands at a few hundred PUBLISH/s. What is in flight is
        # bounded by max_in_flight; this only bounds memory.
        self.layer = TransactionLayer(max_transactions=100_000)
        self._pubs: dict[_PubKey, _PubSlot] = {}
        self._subs: dict[str, Subscription] = {}
        self._sub_call_ids: dict[str, str] = {}  # Call-ID -> entity
        self._call_id_of: dict[str, str] = {}  # entity -> its subscription's current Call-ID
        self._ready: OrderedDict[_Key, None] = OrderedDict()
        self._heap: list[tuple[float, int, _Key]] = []
        self._scheduled: dict[_Key, float] = {}
        self._order = itertools.count()
        self._sent: dict[TransactionId, _Sent] = {}
        self._events: list[AgentEvent] = []
        self._dirty: set[_PubKey] = set()
        #: What a status report needs to know.
        self.last_error = ""
        self.last_success_at = 0.0
        self.consecutive_failures = 0
        self.dropped = 0

    # --- the owner's calls ---------------------------------------------------------------------

    def publish(
        self, entity: str, event: str, body: bytes | None, content_type: str, now: float
    ) -> int:
        """Want ``body`` published for ``entity`` (None: no publication); its generation."""
        slot = self._pubs.get((entity, event))
        if slot is None:
            if body is None:
                self._events.append(Published(entity, event, 0))
                return 0
            slot = self._new_slot(entity, event, content_type)
        generation = slot.publication.set_body(body)
        self._wake(("pub", entity, event))
        self._pump(now)
        return generation

    def restore(
        self, entity: str, event: str, content_type: str, etag: str, expires_at: float, now: float
    ) -> None:
        """Adopt a publication an earlier run made (its saved entity-tag and expiry)."""
        slot = self._pubs.get((entity, event)) or self._new_slot(entity, event, content_type)
        slot.publication.restore(etag, expires_at, now)
        self._wake(("pub", entity, event))

    def settled(self, entity: str, event: str) -> int:
        slot = self._pubs.get((entity, event))
        return slot.publication.settled if slot is not None else 0

    def send_message(
        self, to: str, sender_uri: str, sender_display_name: str, text: str, now: float
    ) -> int:
        """Send a short message to `to` through the server; a `MessageAnswered` with the token
        returned here follows. Messages do not wait in the ready queue: they are rare."""
        token = next(self._message_tokens)
        if self.local is None:
            self._events.append(MessageAnswered(token, 503, "not connected"))
            return token
        call_id, from_tag = self._new_dialog_ids()
        out = _OutMessage(
            token, to, sender_uri, sender_display_name, text.encode("utf-8"), call_id, from_tag
        )
        try:
            message = self._build_message(out)
        except SipParseError as exc:
            self._events.append(MessageAnswered(token, 400, f"bad URI: {exc}"))
            return token
        self._send(("msg", str(token), ""), message, now, message_out=out)
        return token

    def subscribe(self, entity: str, now: float) -> None:
        sub = self._subs.get(entity)
        if sub is None:
            sub = Subscription(self.expires, spread_of(entity), self._new_dialog_ids)
            self._subs[entity] = sub
        sub.wanted = True
        self._wake(("sub", entity, ""))
        self._pump(now)

    def unsubscribe(self, entity: str, now: float) -> None:
        sub = self._subs.get(entity)
        if sub is not None:
            sub.cancel()
            self._wake(("sub", entity, ""))
            self._pump(now)

    def subscribed(self) -> set[str]:
        return {entity for entity, sub in self._subs.items() if sub.wanted}

    def publications(self) -> list[_PubKey]:
        return list(self._pubs)

    def connected(self, local: Endpoint, now: float) -> None:
        """The transport is up; ``local`` is the address the server sees (Via, Contact)."""
        moved = self.local is not None and self.local != local
        self.local = local
        for entity, sub in self._subs.items():
            if moved:
                sub.refresh_now()  # the Contact changed
            self._wake(("sub", entity, ""))
        for entity, event in self._pubs:
            self._wake(("pub", entity, event))
        self._pump(now)

    def disconnected(self, now: float) -> None:
        """The transport is down: what is in flight failed; nothing is sent until `connected`."""
        self.local = None
        for txn_id in list(self._sent):
            self.layer.terminate(txn_id)
            self._final(txn_id, None, now)

    # --- I/O -----------------------------------------------------------------------------------

    def receive(self, data: bytes, source_host: str, source_port: int, now: float) -> None:
        try:
            message = parse_message(data)
        except SipParseError:
            self.dropped += 1
            return
        if isinstance(message, SipResponse) and validate_response(message) is not None:
            self.dropped += 1
            return
        source = Endpoint(self.server.transport, source_host, source_port)
        for event in self.layer.receive(message, source, now):
            if isinstance(event, ResponseReceived):
                if event.response.status >= 200:
                    self._final(event.txn_id, event.response, now)
            elif isinstance(event, RequestReceived):
                if event.txn_id is not None:
                    self._request(event.txn_id, event.request, source_host, now)
            elif isinstance(event, Overloaded):
                self.layer.send_stateless(
                    make_response(event.request, 503, headers=[("Retry-After", "5")]),
                    event.reply_to,
                )
        self._pump(now)

    def handle_timer(self, now: float) -> None:
        for event in self.layer.handle_timer(now):
            if isinstance(event, TransactionTimeout | TransportFailed):
                self._final(event.txn_id, None, now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, key = heapq.heappop(heap)
            if self._scheduled.get(key) == at:
                del self._scheduled[key]
                self._ready[key] = None
        self._pump(now)

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.layer.next_deadline(),) if d is not None]
        if self._heap:
            deadlines.append(self._heap[0][0])
        return min(deadlines) if deadlines else None

    def datagrams_to_send(self) -> list[tuple[bytes, Endpoint]]:
        return self.layer.datagrams_to_send()

    def events(self) -> list[AgentEvent]:
        out, self._events = self._events, []
        return out

    def take_saved(self) -> dict[_PubKey, tuple[str, float] | None]:
        """Publications whose entity-tag changed since the last call: (etag, expires at), or
        None when there is no publication any more."""
        out: dict[_PubKey, tuple[str, float] | None] = {}
        for key in self._dirty:
            slot = self._pubs.get(key)
            pub = slot.publication if slot is not None else None
            if pub is not None and pub.etag is not None and pub.expires_at is not None:
                out[key] = (pub.etag, pub.expires_at)
            else:
                out[key] = None
            if pub is not None:
                pub.dirty = False
        self._dirty.clear()
        return out

    @property
    def in_flight(self) -> int:
        return len(self._sent)

    @property
    def backlog(self) -> int:
        return len(self._ready)

    # --- scheduling ----------------------------------------------------------------------------

    def _new_slot(self, entity: str, event: str, content_type: str) -> _PubSlot:
        slot = _PubSlot(
            entity=entity,
            event=event,
            content_type=content_type,
            publication=Publication(self.expires, spread_of(f"{event} {entity}")),
            call_id=self._token(12) + "@sip2uc",
            from_tag=self._token(6),
        )
        self._pubs[(entity, event)] = slot
        return slot

    def _token(self, size: int) -> str:
        return self._random(size).hex()

    def _new_dialog_ids(self) -> tuple[str, str]:
        return self._token(12) + "@sip2uc", self._token(6)

    def _wake(self, key: _Key) -> None:
        self._ready[key] = None

    def _schedule(self, key: _Key, at: float | None) -> None:
        if at is None:
            return
        current = self._scheduled.get(key)
        if current is not None and current <= at:
            return
        self._scheduled[key] = at
        heapq.heappush(self._heap, (at, next(self._order), key))

    def _pump(self, now: float) -> None:
        if self.local is None:
            return
        ready = self._ready
        while ready and len(self._sent) < self.max_in_flight:
            key, _ = ready.popitem(last=False)
            if key[0] == "pub":
                self._pump_publication((key[1], key[2]), now)
            else:
                self._pump_subscription(key[1], now)

    def _pump_publication(self, pub_key: _PubKey, now: float) -> None:
        slot = self._pubs.get(pub_key)
        if slot is None:
            return
        pub = slot.publication
        request = pub.next_request(now)
        self._report_settled(slot)
        if request is not None:
            slot.cseq += 1
            self._send(("pub", *pub_key), self._build_publish(slot, request), now, publish=request)
        elif pub.idle:
            del self._pubs[pub_key]
        else:
            self._schedule(("pub", *pub_key), pub.deadline())

    def _pump_subscription(self, entity: str, now: float) -> None:
        sub = self._subs.get(entity)
        if sub is None:
            return
        request = sub.next_request(now)
        if request is not None:
            previous = self._call_id_of.get(entity)
            if previous is not None and previous != request.call_id:
                self._sub_call_ids.pop(previous, None)
            self._call_id_of[entity] = request.call_id
            self._sub_call_ids[request.call_id] = entity
            self._send(
                ("sub", entity, ""), self._build_subscribe(entity, request), now, subscribe=request
            )
        elif sub.finished:
            del self._subs[entity]
            self._sub_call_ids.pop(self._call_id_of.pop(entity, ""), None)
        else:
            self._schedule(("sub", entity, ""), sub.deadline())

    def _report_settled(self, slot: _PubSlot) -> None:
        pub = slot.publication
        if pub.settled > slot.reported and pub.settled == pub.generation:
            slot.reported = pub.settled
            self._events.append(Published(slot.entity, slot.event, pub.settled))
        if pub.dirty:
            self._dirty.add((slot.entity, slot.event))

    # --- building requests ---------------------------------------------------------------------

    def _headers(self, branch: str) -> Headers:
        local = self.local
        assert local is not None
        headers = Headers()
        headers.add(
            "Via", f"SIP/2.0/{local.transport.via_name} {hostport(local)};branch={branch};rport"
        )
        headers.add("Max-Forwards", "70")
        return headers

    def _build_publish(self, slot: _PubSlot, request: PublishRequest) -> SipRequest:
        headers = self._headers(self._branch())
        headers.add("From", f"<{slot.entity}>;tag={slot.from_tag}")
        headers.add("To", f"<{slot.entity}>")
        headers.add("Call-ID", slot.call_id)
        headers.add("CSeq", f"{slot.cseq} PUBLISH")
        headers.add("Event", slot.event)
        headers.add("Expires", str(request.expires))
        if request.etag is not None:
            headers.add("SIP-If-Match", request.etag)
        headers.add("User-Agent", self.user_agent)
        body = request.body or b""
        if body:
            headers.add("Content-Type", slot.content_type)
        message = SipRequest("PUBLISH", parse_uri(slot.entity), headers, body)
        self.auth.authorize(message, body)
        return message

    def _build_message(self, out: _OutMessage) -> SipRequest:
        headers = self._headers(self._branch())
        name = out.sender_display_name
        quotable = name.isprintable() and not any(c in name for c in '"\\')
        sender = f'"{name}" ' if name and quotable else ""
        headers.add("From", f"{sender}<{out.sender_uri}>;tag={out.from_tag}")
        headers.add("To", f"<{out.to}>")
        headers.add("Call-ID", out.call_id)
        headers.add("CSeq", f"{out.cseq} MESSAGE")
        headers.add("Content-Type", f"{TEXT_PLAIN};charset=UTF-8")
        headers.add("User-Agent", self.user_agent)
        message = SipRequest("MESSAGE", parse_uri(out.to), headers, out.body)
        parse_uri(out.sender_uri)  # refuse a sender that is no URI before anything is sent
        self.auth.authorize(message, out.body)
        return message

    def _build_subscribe(self, entity: str, request: SubscribeRequest) -> SipRequest:
        local = self.local
        assert local is not None
        headers = self._headers(self._branch())
        for route in request.route_set:
            headers.add("Route", route)
        host = entity.partition("@")[2] or self.server.host
        headers.add("From", f"<sip:{self.watcher_user}@{host}>;tag={request.local_tag}")
        to = f"<{entity}>" + (f";tag={request.remote_tag}" if request.remote_tag else "")
        headers.add("To", to)
        headers.add("Call-ID", request.call_id)
        headers.add("CSeq", f"{request.cseq} SUBSCRIBE")
        headers.add("Contact", f"<sip:{self.watcher_user}@{hostport(local)}{uri_params(local)}>")
        headers.add("Event", "presence")
        headers.add("Accept", pidf.CONTENT_TYPE)
        headers.add("Expires", str(request.expires))
        headers.add("User-Agent", self.user_agent)
        target = request.remote_target or entity
        message = SipRequest("SUBSCRIBE", parse_uri(target), headers)
        self.auth.authorize(message)
        return message

    def _send(
        self,
        key: _Key,
        message: SipRequest,
        now: float,
        *,
        publish: PublishRequest | None = None,
        subscribe: SubscribeRequest | None = None,
        auth_resends: int = 0,
        message_out: _OutMessage | None = None,
    ) -> None:
        try:
            txn_id = self.layer.send_request(message, self._dest, now)
        except TransactionError as exc:
            # The layer is full: try again once answers have made room.
            self.last_error = f"transaction layer: {exc}"
            if message_out is not None:
                self._events.append(MessageAnswered(message_out.token, 503, "too busy"))
            self._fail_unsent(key, publish, subscribe, now)
            return
        self._sent[txn_id] = _Sent(key, message, publish, subscribe, auth_resends, message_out)

    def _fail_unsent(
        self,
        key: _Key,
        publish: PublishRequest | None,
        subscribe: SubscribeRequest | None,
        now: float,
    ) -> None:
        if publish is not None:
            slot = self._pubs.get((key[1], key[2]))
            if slot is not None:
                slot.publication.on_outcome(Outcome.FAILURE, now)
                self._schedule(key, slot.publication.deadline())
        elif subscribe is not None:
            sub = self._subs.get(key[1])
            if sub is not None:
                sub.on_outcome(SubscribeOutcome.FAILURE, now)
                self._schedule(key, sub.deadline())

    # --- answers -------------------------------------------------------------------------------

    def _final(self, txn_id: TransactionId, response: SipResponse | None, now: float) -> None:
        sent = self._sent.pop(txn_id, None)
        if sent is None:
            return
        if (
            response is not None
            and response.status in (401, 407)
            and sent.auth_resends < MAX_AUTH_RESENDS
            and self.auth.challenged(response, retried=sent.auth_resends > 0)
        ):
            self._resend_authorized(sent, now)
            return
        if sent.message is not None:
            status, reason = (
                (0, "no answer") if response is None else (response.status, response.reason)
            )
            self._events.append(MessageAnswered(sent.message.token, status, reason))
            return
        if sent.publish is not None:
            self._publish_answered(sent, response, now)
        elif sent.subscribe is not None:
            self._subscribe_answered(sent, response, now)
        self._wake(sent.key)

    def _resend_authorized(self, sent: _Sent, now: float) -> None:
        key = sent.key
        if sent.message is not None:
            sent.message.cseq += 1
            self._send(
                key,
                self._build_message(sent.message),
                now,
                auth_resends=sent.auth_resends + 1,
                message_out=sent.message,
            )
            return
        if sent.publish is not None:
            slot = self._pubs.get((key[1], key[2]))
            if slot is None:
                return
            slot.cseq += 1
            message = self._build_publish(slot, sent.publish)
        else:
            sub = self._subs.get(key[1])
            if sub is None or sent.subscribe is None:
                return
            request = sent.subscribe
            message = self._build_subscribe(
                key[1],
                SubscribeRequest(
                    kind=request.kind,
                    call_id=request.call_id,
                    local_tag=request.local_tag,
                    remote_tag=request.remote_tag,
                    remote_target=request.remote_target,
                    route_set=request.route_set,
                    cseq=sub.next_cseq(),
                    expires=request.expires,
                ),
            )
        self._send(
            key,
            message,
            now,
            publish=sent.publish,
            subscribe=sent.subscribe,
            auth_resends=sent.auth_resends + 1,
        )

    def _note(self, response: SipResponse | None, now: float) -> str:
        if response is not None and response.status < 300:
            self.last_success_at = now
            self.consecutive_failures = 0
            return ""
        self.consecutive_failures += 1
        if response is None:
            return "no answer"
        reason = f"{response.status} {response.reason}"
        if response.status in (401, 407) and self.auth.error:
            reason = f"{reason}: {self.auth.error}"
        return reason

    def _publish_answered(self, sent: _Sent, response: SipResponse | None, now: float) -> None:
        key = sent.key
        slot = self._pubs.get((key[1], key[2]))
        request = sent.publish
        if slot is None or request is None:
            return
        reason = self._note(response, now)
        if response is None:
            outcome = Outcome.FAILURE
            etag, expires, min_expires = None, None, None
        else:
            outcome = classify(response.status, request.etag is not None)
            etag = response.headers.get("SIP-ETag")
            expires = _int(response.headers.get("Expires"))
            min_expires = _int(response.headers.get("Min-Expires"))
        pub = slot.publication
        pub.on_outcome(outcome, now, etag=etag, expires=expires, min_expires=min_expires)
        self._report_settled(slot)
        if outcome is Outcome.SUCCESS:
            return
        if reason and outcome is not Outcome.CONDITIONAL_FAILED:
            self.last_error = f"PUBLISH {slot.event} for {slot.entity}: {reason}"
        if outcome not in (Outcome.CONDITIONAL_FAILED, Outcome.INTERVAL_TOO_BRIEF) or (
            request.kind is RequestKind.REMOVE
        ):
            self._events.append(
                PublishFailed(slot.entity, slot.event, reason or "refused", pub.given_up)
            )

    def _subscribe_answered(self, sent: _Sent, response: SipResponse | None, now: float) -> None:
        entity = sent.key[1]
        sub = self._subs.get(entity)
        if sub is None or sent.subscribe is None or sub.in_flight is not sent.subscribe:
            return
        reason = self._note(response, now)
        if response is None:
            sub.on_outcome(SubscribeOutcome.FAILURE, now)
        else:
            contacts = _contact(response)
            sub.on_outcome(
                classify_subscribe(response.status),
                now,
                remote_tag=response.to.tag,
                contact=contacts,
                record_route=tuple(response.headers.get_all("Record-Route")),
                expires=_int(response.headers.get("Expires")),
                min_expires=_int(response.headers.get("Min-Expires")),
            )
        if reason and sent.subscribe.kind is not SubscribeKind.UNSUBSCRIBE:
            self.last_error = f"SUBSCRIBE to {entity}: {reason}"

    # --- requests from the server --------------------------------------------------------------

    def _request(
        self, txn_id: TransactionId, request: SipRequest, source_host: str, now: float
    ) -> None:
        if request.method == "MESSAGE":
            status, headers = self._message_in(request, source_host)
            self.layer.send_response(txn_id, make_response(request, status, headers=headers), now)
            return
        if request.method == "NOTIFY":
            status = self._notify(request, now)
            self.layer.send_response(txn_id, make_response(request, status), now)
            return
        if request.method == "OPTIONS":
            self.layer.send_response(txn_id, make_response(request, 200), now)
            return
        self.layer.send_response(
            txn_id,
            make_response(request, 405, headers=[("Allow", "NOTIFY, OPTIONS, MESSAGE")]),
            now,
        )

    def _message_in(
        self, request: SipRequest, source_host: str
    ) -> tuple[int, list[tuple[str, str]]]:
        """The answer to a MESSAGE from the server (a 202 queues a `MessageReceived`).

        Only the server is heard: a MESSAGE from any other address is refused 403, since the
        bridge does not authenticate its peers and would otherwise relay anybody's texts to
        the handsets. RFC 3428 §7: 202, as the text goes on to handsets that have not taken it
        yet.
        """
        if source_host != self.server.host:
            return 403, []
        if request.to.tag is not None:
            return 481, []
        kind, _, params = (request.headers.get("Content-Type") or "").partition(";")
        charset = params.replace(" ", "").lower().partition("charset=")[2].strip('"')
        if kind.strip().lower() != TEXT_PLAIN or charset not in ("", "utf-8", "us-ascii"):
            return 415, [("Accept", TEXT_PLAIN)]
        if len(request.body) > MAX_TEXT_BYTES:
            return 413, []
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            return 400, []
        entity = str(request.to.uri)
        if not self.knows(entity):
            return 404, []
        sender = request.from_
        self._events.append(
            MessageReceived(entity, str(sender.uri), sender.display_name or "", text)
        )
        return 202, []

    def _notify(self, request: SipRequest, now: float) -> int:
        try:
            entity = self._sub_call_ids.get(request.call_id)
            sub = self._subs.get(entity) if entity is not None else None
            if sub is None or entity is None or request.to.tag != sub.local_tag:
                return 481
            event = (request.headers.get("Event") or "").split(";", 1)[0].strip().lower()
            if event != "presence":
                return 489
            state_text = request.headers.get("Subscription-State") or ""
            state, _, params_text = state_text.partition(";")
            params = {
                name.lower(): (value or "").strip('"')
                for name, value in parse_params(";" + params_text if params_text else "")
            }
            remote_tag = request.from_.tag
            if not state.strip() or not remote_tag:
                return 400
            accepted = sub.on_notify(
                now,
                remote_tag=remote_tag,
                contact=_contact(request),
                record_route=tuple(request.headers.get_all("Record-Route")),
                state=state.strip(),
                expires=_int(params.get("expires")),
                reason=params.get("reason"),
                retry_after=_int(params.get("retry-after")),
            )
        except (SipParseError, ValueError):
            return 400
        if not accepted:
            return 481
        content_type = request.content_type or ""
        if not request.body or content_type == pidf.CONTENT_TYPE:
            self._events.append(Notified(entity, request.body, content_type))
        self._wake(("sub", entity, ""))
        return 200


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isdigit() and len(text) <= 9 else None


def _contact(message: SipRequest | SipResponse) -> str | None:
    try:
        contacts = message.contact
    except SipParseError:
        return None
    return str(contacts[0].uri) if contacts else None
