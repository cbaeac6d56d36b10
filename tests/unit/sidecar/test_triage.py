"""Sorting raw messages before the parse: kinds from the first line and a few headers."""

from __future__ import annotations

import pytest
from sip2uc_media.sidecar.triage import Kind, Triage, triage


def message(start: str, *headers: str) -> bytes:
    lines = [
        start,
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1",
        "From: <sip:alice@example.net>;tag=77",
        *headers,
        "Call-ID: c1",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def test_a_first_register_is_new_work() -> None:
    data = message("REGISTER sip:example.net SIP/2.0", "To: <sip:alice@example.net>")

    assert triage(data) is Kind.NEW


@pytest.mark.parametrize(
    "header",
    [
        'Authorization: Digest username="alice"',
        'authorization: Digest username="alice"',
        'Proxy-Authorization: Digest username="alice"',
    ],
)
def test_a_request_with_credentials_follows_up(header: str) -> None:
    data = message("INVITE sip:bob@example.net SIP/2.0", "To: <sip:bob@example.net>", header)

    assert triage(data) is Kind.FOLLOW_UP


@pytest.mark.parametrize(
    "to", ["To: <sip:bob@example.net>;tag=9a", "t: <sip:bob@example.net> ; tag=9a", "TO: b;tag=x"]
)
def test_a_request_inside_a_dialog_is_dialog_work(to: str) -> None:
    assert triage(message("BYE sip:bob@192.0.2.20 SIP/2.0", to)) is Kind.DIALOG


def test_responses_and_acks_are_dialog_work() -> None:
    assert triage(message("SIP/2.0 180 Ringing", "To: <sip:b@x>;tag=1")) is Kind.DIALOG
    assert triage(message("ACK sip:bob@example.net SIP/2.0", "To: <sip:b@x>")) is Kind.DIALOG


def test_a_cancel_queues_with_the_authenticated_invite_it_cancels() -> None:
    assert triage(message("CANCEL sip:bob@example.net SIP/2.0", "To: <sip:b@x>")) is (
        Kind.FOLLOW_UP
    )


def test_leading_crlfs_are_skipped_as_rfc_3261_allows() -> None:
    data = b"\r\n\r\n" + message("OPTIONS sip:example.net SIP/2.0", "To: <sip:a@x>")

    assert triage(data) is Kind.NEW


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x01 not sip at all\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        bytes(range(256)) * 4,
        b"",
    ],
)
def test_what_names_no_sip_version_is_not_sip(data: bytes) -> None:
    assert triage(data) is Triage.NOT_SIP


def test_an_unknown_version_still_goes_to_the_parser_for_its_505() -> None:
    data = message("OPTIONS sip:example.net SIP/7.0", "To: <sip:a@x>")

    assert triage(data) is Kind.NEW


def test_the_ack_of_a_shed_503_is_recognised_by_its_to_tag() -> None:
    ack = message("ACK sip:bob@example.net SIP/2.0", "To: <sip:b@x>;tag=ShedTag1")

    assert triage(ack, b"shedtag1") is Triage.SHED_ACK
    assert triage(ack, b"othertag") is Kind.DIALOG
