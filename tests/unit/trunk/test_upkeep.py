"""A trunk's registration and keep-alive as a specification: fixed clock, exact requests."""

from __future__ import annotations

import itertools

from sip2uc_core.sip.digest import compute_ha1, parse_credentials, verify_response
from sip2uc_core.sip.message import SipRequest, SipResponse, make_response
from sip2uc_media.trunk.upkeep import (
    RESPONSE_TIMEOUT,
    Outgoing,
    Purpose,
    TrunkConfig,
    TrunkUpkeep,
)

REALM = "uc.example.com"
PASSWORD = "gw-secret"


def counter_bytes() -> object:
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


def upkeep(**fields: object) -> TrunkUpkeep:
    config = TrunkConfig(
        id="uc",
        address="192.0.2.10",
        port=5080,
        username="gw",
        password=PASSWORD,
        **{"options_interval": 30.0, **fields},  # type: ignore[arg-type]
    )
    return TrunkUpkeep(
        config,
        local_host="198.51.100.2",
        local_port=5060,
        random_bytes=counter_bytes(),  # type: ignore[arg-type]
    )


def only(out: list[Outgoing], purpose: Purpose) -> SipRequest:
    found = [o.request for o in out if o.purpose is purpose]
    assert len(found) == 1, out
    return found[0]


def answer(request: SipRequest, status: int, headers: list[tuple[str, str]] = ()) -> SipResponse:  # type: ignore[assignment]
    return make_response(request, status, to_tag="t1", headers=headers)


def challenge(request: SipRequest, *, stale: bool = False) -> SipResponse:
    value = f'Digest realm="{REALM}", nonce="n1", qop="auth"'
    return answer(request, 401, [("WWW-Authenticate", value + (", stale=true" if stale else ""))])


def test_first_poll_sends_options_and_register_to_the_trunk() -> None:
    trunk = upkeep(register=True)

    out = trunk.poll(0.0)

    options, register = only(out, Purpose.OPTIONS), only(out, Purpose.REGISTER)
    assert str(options.uri) == "sip:192.0.2.10:5080"
    assert str(register.uri) == "sip:192.0.2.10:5080"
    assert register.headers.get("To") == "<sip:gw@192.0.2.10>"
    assert register.headers.get("Contact") == "<sip:sip2uc@198.51.100.2:5060>"
    assert register.headers.get("Expires") == "600"
    assert register.headers.get("Authorization") is None


def test_a_challenge_is_answered_with_digest_once_and_a_200_registers() -> None:
    trunk = upkeep(register=True, options_interval=600.0)
    first = only(trunk.poll(0.0), Purpose.REGISTER)

    (again,) = trunk.response(Purpose.REGISTER, challenge(first), 0.1)
    granted = answer(
        again.request, 200, [("Contact", "<sip:sip2uc@198.51.100.2:5060>;expires=300")]
    )
    trunk.response(Purpose.REGISTER, granted, 0.2)

    credentials = parse_credentials(again.request.headers.get("Authorization") or "")
    ha1 = compute_ha1("MD5", "gw", REALM, PASSWORD)
    assert verify_response(ha1, credentials, "REGISTER")
    assert (credentials.username, credentials.realm, credentials.nc) == ("gw", REALM, "00000001")
    assert again.request.cseq.seq == first.cseq.seq + 1
    assert again.request.call_id == first.call_id
    assert trunk.state(0.2) == (True, True, "")
    # Refreshed when 80% of the granted 300 s have passed, not before; with the nonce known.
    assert trunk.poll(240.1) == []
    refresh = only(trunk.poll(240.3), Purpose.REGISTER)
    assert parse_credentials(refresh.headers.get("Authorization") or "").nc == "00000002"


def test_wrong_credentials_are_not_retried_at_once_and_back_off() -> None:
    trunk = upkeep(register=True)
    first = only(trunk.poll(0.0), Purpose.REGISTER)
    (again,) = trunk.response(Purpose.REGISTER, challenge(first), 0.1)

    retried = trunk.response(Purpose.REGISTER, challenge(again.request), 0.2)

    assert retried == []
    assert trunk.state(0.2)[1:] == (False, "the server refused the credentials of 'gw'")
    # The first retry 5 s later (the OPTIONS still in flight is not resent).
    assert [o.purpose for o in trunk.poll(5.1)] == []
    assert [o.purpose for o in trunk.poll(5.3)] == [Purpose.REGISTER]


def test_a_stale_nonce_is_answered_again() -> None:
    trunk = upkeep(register=True)
    first = only(trunk.poll(0.0), Purpose.REGISTER)
    (again,) = trunk.response(Purpose.REGISTER, challenge(first), 0.1)

    out = trunk.response(Purpose.REGISTER, challenge(again.request, stale=True), 0.2)

    assert [o.purpose for o in out] == [Purpose.REGISTER]


def test_423_is_answered_with_the_registrars_minimum() -> None:
    trunk = upkeep(register=True)
    first = only(trunk.poll(0.0), Purpose.REGISTER)

    (again,) = trunk.response(Purpose.REGISTER, answer(first, 423, [("Min-Expires", "1800")]), 0.1)

    assert again.request.headers.get("Expires") == "1800"


def test_options_answered_is_up_and_silence_is_down_then_up_again() -> None:
    trunk = upkeep()
    options = only(trunk.poll(0.0), Purpose.OPTIONS)
    trunk.response(Purpose.OPTIONS, answer(options, 200), 0.05)
    assert trunk.state(0.05) == (True, False, "")

    later = only(trunk.poll(30.05), Purpose.OPTIONS)
    assert trunk.poll(30.05 + RESPONSE_TIMEOUT) == []
    assert trunk.state(34.1) == (False, False, "no response to OPTIONS")

    trunk.timeout(Purpose.OPTIONS, 62.0)
    again = only(trunk.poll(92.0), Purpose.OPTIONS)
    assert again.cseq.seq == later.cseq.seq + 1
    trunk.response(Purpose.OPTIONS, answer(again, 404), 92.1)
    assert trunk.state(92.1) == (True, False, "")


def test_503_to_options_is_down() -> None:
    trunk = upkeep()
    options = only(trunk.poll(0.0), Purpose.OPTIONS)

    trunk.response(Purpose.OPTIONS, answer(options, 503), 0.1)

    assert trunk.state(0.1) == (False, False, "503 to OPTIONS")


def test_a_registration_not_refreshed_lapses() -> None:
    trunk = upkeep(register=True)
    first = only(trunk.poll(0.0), Purpose.REGISTER)
    trunk.response(Purpose.REGISTER, answer(first, 200, [("Expires", "100")]), 0.1)

    refresh = only(trunk.poll(80.2), Purpose.REGISTER)
    trunk.timeout(Purpose.REGISTER, 112.0)

    assert refresh.headers.get("Expires") == "600"
    assert trunk.registered(100.0) and not trunk.registered(100.2)


def test_unregister_sends_expires_zero_only_when_registered() -> None:
    trunk = upkeep(register=True)
    first = only(trunk.poll(0.0), Purpose.REGISTER)
    assert trunk.unregister(0.05) == []
    trunk.response(Purpose.REGISTER, answer(first, 200), 0.1)

    (bye,) = trunk.unregister(1.0)

    assert bye.request.headers.get("Expires") == "0"


def test_the_password_is_not_in_the_repr() -> None:
    trunk = upkeep(register=True)

    assert PASSWORD not in repr(trunk.config) and PASSWORD not in repr(trunk.auth)
