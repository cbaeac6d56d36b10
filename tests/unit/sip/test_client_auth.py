"""Digest authentication as a client (RFC 3261 §22.2-§22.3): answering 401/407 and reusing the
remembered challenge."""

from __future__ import annotations

from sip2uc_core.sip import SipRequest, SipResponse, parse_message
from sip2uc_core.sip.client_auth import ClientAuth
from sip2uc_core.sip.digest import compute_ha1, parse_credentials, verify_response

REQUEST = (
    b"PUBLISH sip:1001@uc.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKabc\r\n"
    b"From: <sip:1001@uc.example.com>;tag=1\r\nTo: <sip:1001@uc.example.com>\r\n"
    b"Call-ID: c1\r\nCSeq: 1 PUBLISH\r\nContent-Length: 0\r\n\r\n"
)


def request() -> SipRequest:
    message = parse_message(REQUEST)
    assert isinstance(message, SipRequest)
    return message


def challenge(status: int, value: str) -> SipResponse:
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    message = parse_message(
        f"SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKabc\r\n"
        f"From: <sip:1001@uc.example.com>;tag=1\r\nTo: <sip:1001@uc.example.com>;tag=2\r\n"
        f"Call-ID: c1\r\nCSeq: 1 PUBLISH\r\n{name}: {value}\r\nContent-Length: 0\r\n\r\n".encode()
    )
    assert isinstance(message, SipResponse)
    return message


def fixed(n: int) -> bytes:
    return b"\x01" * n


def test_nothing_is_added_before_a_challenge() -> None:
    auth = ClientAuth("gw", "pw", fixed)
    req = request()
    auth.authorize(req)
    assert "Authorization" not in req.headers and "Proxy-Authorization" not in req.headers


def test_a_407_is_answered_in_proxy_authorization_with_qop_auth() -> None:
    auth = ClientAuth("gw", "pw", fixed)
    assert auth.challenged(
        challenge(407, 'Digest realm="r", nonce="n", qop="auth,auth-int"'), retried=False
    )
    req = request()
    auth.authorize(req)
    creds = parse_credentials(req.headers.get("Proxy-Authorization") or "")
    assert (creds.qop, creds.nc, creds.cnonce, creds.uri) == (
        "auth",
        "00000001",
        "0101010101010101",
        "sip:1001@uc.example.com",
    )
    assert verify_response(compute_ha1("MD5", "gw", "r", "pw"), creds, "PUBLISH")


def test_sha256_challenges_are_answered_with_sha256() -> None:
    auth = ClientAuth("gw", "pw", fixed)
    auth.challenged(
        challenge(401, 'Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth"'), retried=False
    )
    req = request()
    auth.authorize(req)
    creds = parse_credentials(req.headers.get("Authorization") or "")
    assert creds.algorithm.value == "SHA-256"
    assert verify_response(compute_ha1("SHA-256", "gw", "r", "pw"), creds, "PUBLISH")


def test_the_nonce_count_grows_with_each_request() -> None:
    auth = ClientAuth("gw", "pw", fixed)
    auth.challenged(challenge(401, 'Digest realm="r", nonce="n", qop="auth"'), retried=False)
    counts = []
    for _ in range(3):
        req = request()
        auth.authorize(req)
        counts.append(parse_credentials(req.headers.get("Authorization") or "").nc)
    assert counts == ["00000001", "00000002", "00000003"]


def test_a_second_challenge_to_a_resent_request_means_wrong_credentials() -> None:
    auth = ClientAuth("gw", "pw", fixed)
    assert auth.challenged(challenge(401, 'Digest realm="r", nonce="n1"'), retried=False)
    assert not auth.challenged(challenge(401, 'Digest realm="r", nonce="n2"'), retried=True)
    assert auth.error == "the server refused the credentials of 'gw'"


def test_a_stale_nonce_is_worth_another_try() -> None:
    auth = ClientAuth("gw", "pw", fixed)
    auth.challenged(challenge(401, 'Digest realm="r", nonce="n1"'), retried=False)
    assert auth.challenged(challenge(401, 'Digest realm="r", nonce="n2", stale=true'), retried=True)


def test_without_credentials_or_a_usable_challenge_it_says_why() -> None:
    none = ClientAuth("", "", fixed)
    assert not none.challenged(challenge(401, 'Digest realm="r", nonce="n"'), retried=False)
    assert "no credentials" in none.error
    auth = ClientAuth("gw", "pw", fixed)
    assert not auth.challenged(challenge(401, 'Basic realm="r"'), retried=False)
    assert auth.error == "no usable digest challenge in the 401"


def test_the_password_never_shows_in_repr() -> None:
    assert "pw-secret" not in repr(ClientAuth("gw", "pw-secret", fixed))
