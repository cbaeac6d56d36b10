"""RFC 3261 §12 dialogs as the B2BUA holds them, and the requests built from them.

A :class:`Dialog` is created from the INVITE a handset sent us (UAS, §12.1.1) or from the
2xx/1xx-with-tag a handset answered our INVITE with (UAC, §12.1.2).  It builds the requests sent
within it (§12.2.1.1: BYE, re-INVITE, and the ACK for a 2xx, §13.2.2.4) and recognises the
requests that belong to it (§12.2.2).  :func:`build_cancel` follows §9.1: a CANCEL is not an
in-dialog request and copies the INVITE's Via, hence its branch.

:class:`SuccessRetransmission` is the UAS's duty of §13.3.1.4: a 2xx to an INVITE is resent
starting at T1 and doubling up to T2 until the ACK arrives, and after 64*T1 without one the
dialog is given up with a BYE.  Everything here is sans-IO: time comes in as ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sip2uc_core.sip.headers import CSeq, Headers, NameAddr
from sip2uc_core.sip.message import SipRequest, SipResponse
from sip2uc_core.sip.uri import SipUri, Uri

__all__ = [
    "Dialog",
    "DialogError",
    "SuccessRetransmission",
    "build_cancel",
    "dialog_id_of",
]

MAX_FORWARDS = "70"


class DialogError(Exception):
    """A message that cannot create or continue a dialog (e.g. a 2xx without Contact)."""


def dialog_id_of(message: SipRequest | SipResponse, *, local_is_from: bool) -> tuple[str, str, str]:
    """(Call-ID, local tag, remote tag) of a message as seen by one side (§12)."""
    from_tag = message.from_.tag or ""
    to_tag = message.to.tag or ""
    if local_is_from:
        return (message.call_id, from_tag, to_tag)
    return (message.call_id, to_tag, from_tag)


@dataclass(slots=True, kw_only=True)
class Dialog:
    """The state §12.1 lists: ids, sequence numbers, target, route set and the two URIs."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr  # without tag
    remote_uri: NameAddr  # without tag
    local_contact: NameAddr
    remote_target: Uri
    route_set: list[NameAddr] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    secure: bool = False

    # --- creation -------------------------------------------------------------------------------

    @classmethod
    def as_uas(cls, invite: SipRequest, *, local_tag: str, local_contact: NameAddr) -> Dialog:
        """§12.1.1: the dialog the INVITE we answer with a to-tagged response creates."""
        contacts = invite.contact
        if not contacts:
            raise DialogError("INVITE without Contact cannot establish a dialog (§8.1.1.8)")
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=invite.from_.tag or "",
            local_uri=_untagged(invite.to),
            remote_uri=_untagged(invite.from_),
            local_contact=local_contact,
            remote_target=contacts[0].uri,
            route_set=list(invite.record_routes),
            # §12.1.1 leaves the local sequence number empty; we start ours at 1 when needed.
            local_seq=0,
            remote_seq=invite.cseq.seq,
            secure=invite.uri.scheme == "sips",
        )

    @classmethod
    def as_uac(cls, invite: SipRequest, response: SipResponse) -> Dialog:
        """§12.1.2: the dialog a 2xx (or 1xx with a To tag) to our INVITE creates."""
        contacts = response.contact
        if not contacts:
            raise DialogError("response without Contact cannot establish a dialog")
        local_contact = invite.contact[0] if invite.contact else NameAddr(uri=invite.uri)
        return cls(
            call_id=invite.call_id,
            local_tag=invite.from_.tag or "",
            remote_tag=response.to.tag or "",
            local_uri=_untagged(invite.from_),
            remote_uri=_untagged(invite.to),
            local_contact=local_contact,
            remote_target=contacts[0].uri,
            route_set=list(reversed(response.record_routes)),
            local_seq=invite.cseq.seq,
            remote_seq=None,
            secure=invite.uri.scheme == "sips",
        )

    # --- incoming ---------------------------------------------------------------------------------

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def matches(self, request: SipRequest) -> bool:
        """Whether a request belongs to this dialog (§12.2.2: Call-ID, To tag, From tag)."""
        return (
            request.call_id == self.call_id
            and request.to.tag == self.local_tag
            and (request.from_.tag or "") == self.remote_tag
        )

    def accept_remote_cseq(self, request: SipRequest) -> bool:
        """§12.2.2: a request with a CSeq lower than the last one is out of order (500); ACK and
        CANCEL carry the INVITE's number and are not checked."""
        if request.method in ("ACK", "CANCEL"):
            return True
        seq = request.cseq.seq
        if self.remote_seq is not None and seq <= self.remote_seq:
            return False
        self.remote_seq = seq
        return True

    def refresh_target(self, message: SipRequest | SipResponse) -> None:
        """A target refresh request or its 2xx may change the remote target (§12.2)."""
        contacts = message.contact
        if contacts:
            self.remote_target = contacts[0].uri

    # --- outgoing ---------------------------------------------------------------------------------

    def next_seq(self) -> int:
        self.local_seq += 1
        return self.local_seq

    def build_request(
        self,
        method: str,
        *,
        via: str,
        cseq: int | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Iterable[tuple[str, str]] = (),
    ) -> SipRequest:
        """A request within the dialog (§12.2.1.1).

        ``via`` is the complete Via value (with a fresh branch).  ``cseq`` defaults to the next
        local number; the ACK for a 2xx passes the INVITE's (§13.2.2.4).  With a loose-routing
        (``lr``) first route, the Request-URI is the remote target and the Route headers are the
        route set; with a strict router the first route becomes the Request-URI and the remote
        target is appended as the last Route (§12.2.1.1).
        """
        seq = self.next_seq() if cseq is None else cseq
        uri: Uri = self.remote_target
        routes = [str(r) for r in self.route_set]
        if self.route_set:
            first = self.route_set[0].uri
            if isinstance(first, SipUri) and not first.lr:
                uri = first.without_param("method")
                routes = [str(r) for r in self.route_set[1:]] + [f"<{self.remote_target}>"]
        headers = Headers()
        headers.add("Via", via)
        headers.add("Max-Forwards", MAX_FORWARDS)
        for route in routes:
            headers.add("Route", route)
        headers.add("From", str(self.local_uri.with_param("tag", self.local_tag)))
        headers.add("To", str(self.remote_uri.with_param("tag", self.remote_tag)))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", str(CSeq(seq, method)))
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "REFER"):
            headers.add("Contact", str(self.local_contact))
        for name, value in extra:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", content_type or "application/sdp")
        return SipRequest(method, uri, headers, body)

    def build_ack(self, invite_cseq: int, *, via: str, body: bytes = b"") -> SipRequest:
        """The ACK for a 2xx (§13.2.2.4): the INVITE's CSeq number, a new branch, the route
        set; it is sent end to end, outside any transaction."""
        return self.build_request("ACK", via=via, cseq=invite_cseq, body=body)


def _untagged(value: NameAddr) -> NameAddr:
    params = tuple((n, v) for n, v in value.params if n.lower() != "tag")
    return NameAddr(display_name=value.display_name, uri=value.uri, params=params)


def build_cancel(invite: SipRequest) -> SipRequest:
    """The CANCEL for a pending INVITE (RFC 3261 §9.1).

    Request-URI, Call-ID, From, To (without the tag a provisional response may have added),
    CSeq number and the single top Via (so the same branch) are the INVITE's; so is the Route
    set.  The method in CSeq is CANCEL.
    """
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", MAX_FORWARDS)
    for name, value in invite.headers.get_lines_with_names("Route"):
        headers.add(name, value)
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", invite.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", str(CSeq(invite.cseq.seq, "CANCEL")))
    return SipRequest("CANCEL", invite.uri, headers)


@dataclass(slots=True, kw_only=True)
class SuccessRetransmission:
    """Resending a 2xx to an INVITE until the ACK comes (RFC 3261 §13.3.1.4).

    Start at ``now``: the first resend is due at ``now + T1``, each interval doubles up to T2,
    and at ``now + 64*T1`` without an ACK the UAS gives up (and must BYE).  On reliable
    transports the transport delivers the 2xx, so there are no resends, but the give-up still
    applies.
    """

    t1: float = 0.5
    t2: float = 4.0
    reliable: bool = False
    started: float = 0.0
    interval: float = 0.0
    next_resend: float | None = None
    give_up_at: float = 0.0
    acked: bool = False

    def start(self, now: float) -> None:
        self.started = now
        self.interval = self.t1
        self.next_resend = None if self.reliable else now + self.t1
        self.give_up_at = now + 64 * self.t1
        self.acked = False

    def ack(self) -> None:
        self.acked = True
        self.next_resend = None

    def next_deadline(self) -> float | None:
        if self.acked:
            return None
        if self.next_resend is not None and self.next_resend < self.give_up_at:
            return self.next_resend
        return self.give_up_at

    def poll(self, now: float) -> str | None:
        """What is due at ``now``: ``"resend"``, ``"give up"`` or nothing."""
        if self.acked:
            return None
        if now >= self.give_up_at:
            self.next_resend = None
            self.acked = True  # nothing more to do: the caller ends the dialog
            return "give up"
        if self.next_resend is not None and now >= self.next_resend:
            self.interval = min(2 * self.interval, self.t2)
            self.next_resend = now + self.interval
            return "resend"
        return None
