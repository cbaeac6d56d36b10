"""The sidecar's subscriptions, sans-IO (RFC 6665, RFC 4235, RFC 4662): what a SUBSCRIBE is
answered, which NOTIFYs go out with which bytes, and when a subscription ends."""

from __future__ import annotations

from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.headers import NameAddr
from sip2uc_core.sip.message import SipRequest, parse_message
from sip2uc_core.sip.uri import SipUri
from sip2uc_media.sidecar.subscriptions import (
    DialogState,
    Grant,
    Subscription,
    SubscriptionTable,
    UserState,
    Watched,
)

NOW = 1000.0
HANDSET = Endpoint(Transport.UDP, "192.0.2.10", 5062)
VIA = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnotify1;rport"
CONTACT = NameAddr(uri=SipUri(host="192.0.2.1", port=5060))
BOB = Watched(user="users/b", uri="sip:bob@example.net", display_name="Bob")
CAROL = Watched(user="users/c", uri="sip:carol@example.net", display_name="Carol")


def subscribe(*extra: str, to_tag: str = "", cseq: int = 1, user: str = "bob") -> SipRequest:
    to = f"<sip:{user}@example.net>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"SUBSCRIBE sip:{user}@example.net SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKsub1",
        "From: <sip:alice@example.net>;tag=a1",
        f"To: {to}",
        "Call-ID: sub-1@192.0.2.10",
        f"CSeq: {cseq} SUBSCRIBE",
        "Contact: <sip:alice@192.0.2.10:5062>",
        "Max-Forwards: 70",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, SipRequest)
    return message


def created(
    table: SubscriptionTable,
    event: str = "presence",
    resources: tuple[Watched, ...] = (BOB,),
    list_uri: str = "",
) -> Subscription:
    request = subscribe(f"Event: {event}", "Expires: 600")
    grant = Grant(watcher="users/a", expires=600, resources=resources, list_uri=list_uri)
    return table.create(
        request, HANDSET, grant, NOW, sub_id="s1", local_tag="n1", local_contact=CONTACT
    )


def notify(table: SubscriptionTable, sub: Subscription, now: float = NOW) -> SipRequest:
    request = table.next_notify(sub, now, VIA)
    assert request is not None
    return request


def body(request: SipRequest) -> str:
    return request.body.decode()


# --- the SUBSCRIBE ------------------------------------------------------------------------------


def test_an_unknown_event_is_answered_489_with_the_events_served() -> None:
    response = SubscriptionTable.precheck(subscribe("Event: message-summary"), "t1")
    assert response is not None
    assert (response.status, response.headers.get("Allow-Events")) == (489, "presence, dialog")


def test_a_subscribe_without_event_is_answered_489() -> None:
    response = SubscriptionTable.precheck(subscribe(), "t1")
    assert response is not None and response.status == 489


def test_an_expiry_below_the_minimum_is_answered_423_with_min_expires() -> None:
    response = SubscriptionTable.precheck(subscribe("Event: dialog", "Expires: 10"), "t1")
    assert response is not None
    assert (response.status, response.headers.get("Min-Expires")) == (423, "60")


def test_expires_zero_and_a_valid_expiry_pass_the_checks() -> None:
    assert SubscriptionTable.precheck(subscribe("Event: dialog", "Expires: 0"), "t") is None
    assert SubscriptionTable.precheck(subscribe("Event: presence;id=7"), "t") is None


def test_the_200_grants_the_expiry_and_names_our_contact() -> None:
    table = SubscriptionTable()
    sub = created(table)
    response = table.accepted(subscribe("Event: presence"), sub, 600)
    assert (response.status, response.headers.get("Expires")) == (200, "600")
    assert response.to.tag == "n1"
    assert response.headers.get("Contact") == "<sip:192.0.2.1:5060>"


def test_an_in_dialog_subscribe_finds_its_subscription_and_another_tag_does_not() -> None:
    table = SubscriptionTable()
    sub = created(table)
    assert table.find(subscribe("Event: presence", to_tag="n1", cseq=2)) is sub
    assert table.find(subscribe("Event: presence", to_tag="other", cseq=2)) is None


# --- NOTIFY -------------------------------------------------------------------------------------


def test_the_first_presence_notify_is_exactly_this() -> None:
    table = SubscriptionTable()
    table.replace_states([UserState(user="users/b", availability="in-a-call")])
    sub = created(table)
    request = notify(table, sub, NOW + 10)
    assert request.serialize().decode() == (
        "NOTIFY sip:alice@192.0.2.10:5062 SIP/2.0\r\n"
        f"Via: {VIA}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:bob@example.net>;tag=n1\r\n"
        "To: <sip:alice@example.net>;tag=a1\r\n"
        "Call-ID: sub-1@192.0.2.10\r\n"
        "CSeq: 1 NOTIFY\r\n"
        "Event: presence\r\n"
        "Subscription-State: active;expires=590\r\n"
        "Content-Type: application/pidf+xml\r\n"
        "Contact: <sip:192.0.2.1:5060>\r\n"
        f"Content-Length: {len(request.body)}\r\n"
        "\r\n"
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" '
        'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
        'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:bob@example.net">\n'
        '<tuple id="sip2uc"><status><basic>open</basic></status></tuple>\n'
        '<dm:person id="sip2uc-p"><rpid:activities><rpid:on-the-phone/></rpid:activities>'
        "</dm:person>\n"
        "</presence>\n"
    )


def test_an_unknown_user_state_shows_closed() -> None:
    table = SubscriptionTable()
    sub = created(table)
    assert "<basic>closed</basic>" in body(notify(table, sub))


def test_a_change_while_a_notify_is_in_flight_makes_one_more_notify_when_it_is_answered() -> None:
    table = SubscriptionTable()
    sub = created(table)
    notify(table, sub)
    assert table.update(UserState(user="users/b", availability="available")) == [sub]
    assert table.next_notify(sub, NOW, VIA) is None  # one in flight
    assert table.update(UserState(user="users/b", availability="away")) == [sub]
    assert table.next_notify(sub, NOW, VIA) is None
    assert table.answered(sub, 200) is True
    latest = notify(table, sub)
    assert "<rpid:away/>" in body(latest)  # the latest state, not every step
    assert latest.cseq.seq == 2


def test_a_state_that_shows_the_same_makes_no_notify() -> None:
    table = SubscriptionTable()
    table.replace_states([UserState(user="users/b", availability="available")])
    sub = created(table)
    notify(table, sub)
    table.answered(sub, 200)
    assert table.update(UserState(user="users/b", availability="available")) == []
    assert table.update(UserState(user="users/x", availability="away")) == []
    assert table.next_notify(sub, NOW, VIA) is None


def test_a_481_ends_the_subscription() -> None:
    table = SubscriptionTable()
    sub = created(table)
    notify(table, sub)
    assert table.answered(sub, 481) is False
    assert sub.terminated and len(table) == 0
    assert table.update(UserState(user="users/b", availability="away")) == []


def test_the_final_notify_says_terminated_with_the_reason() -> None:
    table = SubscriptionTable()
    sub = created(table)
    request = table.next_notify(sub, NOW, VIA, reason="timeout")
    assert request is not None
    assert request.headers.get("Subscription-State") == "terminated;reason=timeout"


def test_expiry_is_the_next_deadline_and_refresh_moves_it() -> None:
    table = SubscriptionTable()
    sub = created(table)
    assert table.next_deadline() == NOW + 600
    assert table.expired(NOW + 599) == []
    table.refresh(sub, subscribe("Event: presence", to_tag="n1", cseq=2), 120, NOW + 500)
    assert table.next_deadline() == NOW + 620
    assert table.expired(NOW + 620) == [sub]


# --- dialog-info (BLF) --------------------------------------------------------------------------


RINGING = DialogState(
    id="c1",
    phase="early",
    initiator=False,
    remote_uri="sip:carol@example.net",
    remote_display="Carol",
)


def test_blf_goes_from_full_idle_to_partial_ringing_confirmed_and_terminated() -> None:
    table = SubscriptionTable()
    sub = created(table, "dialog")
    first = body(notify(table, sub))
    assert first == (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" '
        'entity="sip:bob@example.net">\n'
        "</dialog-info>\n"
    )
    table.answered(sub, 200)
    table.update(UserState(user="users/b", availability="available", dialogs=(RINGING,)))
    ringing = body(notify(table, sub))
    assert ringing == (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="partial" '
        'entity="sip:bob@example.net">\n'
        '<dialog id="c1" direction="recipient"><state>early</state>'
        "<local><identity>sip:bob@example.net</identity></local>"
        '<remote><identity display="Carol">sip:carol@example.net</identity>'
        '<target uri="sip:carol@example.net"/></remote></dialog>\n'
        "</dialog-info>\n"
    )
    table.answered(sub, 200)
    answered = DialogState(id="c1", phase="confirmed", initiator=False)
    table.update(UserState(user="users/b", availability="in-a-call", dialogs=(answered,)))
    assert "<state>confirmed</state>" in body(notify(table, sub))
    table.answered(sub, 200)
    # The call is gone from the state altogether: its end is still told (partial state).
    table.update(UserState(user="users/b", availability="available"))
    ended = body(notify(table, sub))
    assert 'version="3" state="partial"' in ended
    assert '<dialog id="c1"><state>terminated</state></dialog>' in ended


def test_a_refresh_notifies_the_full_state_again() -> None:
    table = SubscriptionTable()
    table.replace_states([UserState(user="users/b", dialogs=(RINGING,))])
    sub = created(table, "dialog")
    notify(table, sub)
    table.answered(sub, 200)
    table.refresh(sub, subscribe("Event: dialog", to_tag="n1", cseq=2), 600, NOW)
    again = body(notify(table, sub))
    assert 'version="1" state="full"' in again and "<state>early</state>" in again


# --- resource lists (RFC 4662) ------------------------------------------------------------------


def test_a_list_notify_is_multipart_with_rlmi_first_and_only_changed_parts_later() -> None:
    table = SubscriptionTable(boundary="b0")
    table.replace_states([UserState(user="users/b", availability="available")])
    sub = created(table, "presence", (BOB, CAROL), "sip:buddies@example.net")
    first = notify(table, sub)
    assert first.headers.get("Content-Type") == (
        'multipart/related;type="application/rlmi+xml";start="<s1.rlmi.0@sip2uc>";boundary="b0"'
    )
    assert first.headers.get("Require") == "eventlist"
    text = body(first)
    assert text.startswith(
        "--b0\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "Content-ID: <s1.rlmi.0@sip2uc>\r\n"
        "Content-Type: application/rlmi+xml\r\n\r\n"
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:buddies@example.net" version="0" '
        'fullState="true">\n'
        '<resource uri="sip:bob@example.net"><name>Bob</name>'
        '<instance id="s1.0" state="active" cid="s1.0.0@sip2uc"/></resource>\n'
        '<resource uri="sip:carol@example.net"><name>Carol</name>'
        '<instance id="s1.1" state="active" cid="s1.1.0@sip2uc"/></resource>\n'
        "</list>\n\r\n"
    )
    assert text.count("Content-Type: application/pidf+xml") == 2
    assert text.endswith("--b0--\r\n")
    table.answered(sub, 200)
    table.update(UserState(user="users/c", availability="away"))
    change = body(notify(table, sub))
    assert 'version="1" fullState="false"' in change
    assert '<instance id="s1.0" state="active"/>' in change  # bob: listed, no part
    assert '<instance id="s1.1" state="active" cid="s1.1.1@sip2uc"/>' in change
    assert change.count("Content-Type: application/pidf+xml") == 1


def test_a_list_whose_members_changed_notifies_the_new_member_in_full() -> None:
    table = SubscriptionTable(boundary="b0")
    sub = created(table, "presence", (BOB,), "sip:buddies@example.net")
    notify(table, sub)
    table.answered(sub, 200)
    table.set_resources(sub, (BOB, CAROL))
    again = body(notify(table, sub))
    assert 'fullState="true"' in again and again.count("application/pidf+xml") == 2
    table.answered(sub, 200)
    assert table.update(UserState(user="users/c", availability="away")) == [sub]
