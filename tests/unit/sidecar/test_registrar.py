from __future__ import annotations

from sip2uc_core.sip.contact import Contact
from sip2uc_core.sip.digest import (
    NonceCountTracker,
    NonceIssuer,
    build_credentials,
    compute_ha1,
    parse_challenge,
)
from sip2uc_core.sip.message import SipRequest, parse_message
from sip2uc_media.sidecar.registrar import (
    RegisterAttempt,
    RegisterOutcome,
    RegisterResult,
    Registrar,
    RegistrarPolicy,
    Rejection,
)

SECRET = b"k" * 32
SOURCE = "192.0.2.10"
NOW = 1_000_000.0


def registrar() -> Registrar:
    return Registrar(
        NonceIssuer(SECRET, 300.0),
        NonceCountTracker(1000),
        tag_secret=SECRET,
        policy=RegistrarPolicy(realm="example.net"),
    )


def register(
    *extra: str, contact: str = "<sip:alice@192.0.2.10:5062>", cseq: int = 1
) -> SipRequest:
    lines = [
        "REGISTER sip:example.net SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK776asdhds",
        "From: <sip:alice@example.net>;tag=1928301774",
        "To: <sip:alice@example.net>",
        "Call-ID: a84b4c76e66710@pc33",
        f"CSeq: {cseq} REGISTER",
        "Max-Forwards: 70",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    lines += [*extra, "Content-Length: 0", "", ""]
    request = parse_message("\r\n".join(lines).encode())
    assert isinstance(request, SipRequest)
    return request


def authorization(reg: Registrar, password: str = "pw", *, user: str = "alice", nc: int = 1) -> str:
    challenge_response = reg.receive(register(), SOURCE, NOW)
    assert isinstance(challenge_response, Rejection)
    md5 = parse_challenge(challenge_response.response.headers.get_all("WWW-Authenticate")[1])
    creds = build_credentials(
        md5,
        username=user,
        ha1=compute_ha1(md5.algorithm, user, md5.realm, password),
        method="REGISTER",
        uri="sip:example.net",
        cnonce="c0ffee",
        nc=nc,
    )
    return f"Authorization: {creds.serialize()}"


def test_register_without_credentials_is_challenged_sha256_first_then_md5() -> None:
    verdict = registrar().receive(register(), SOURCE, NOW)

    assert isinstance(verdict, Rejection)
    assert verdict.auth_failure is False
    response = verdict.response
    assert (response.status, response.reason) == (401, "Unauthorized")
    challenges = [parse_challenge(v) for v in response.headers.get_all("WWW-Authenticate")]
    assert [c.algorithm.value for c in challenges] == ["SHA-256", "MD5"]
    assert {c.realm for c in challenges} == {"example.net"}
    assert challenges[0].nonce == challenges[1].nonce
    assert challenges[0].qop == ("auth",)
    assert response.to.tag is not None


def test_credentials_become_an_attempt_with_every_register_field() -> None:
    reg = registrar()
    request = register(
        authorization(reg),
        "Expires: 1800",
        contact='<sip:alice@192.0.2.10:5062>;q=0.5;+sip.instance="<urn:uuid:0001>", '
        "<sip:alice@192.0.2.10:5063>;expires=60",
        cseq=2,
    )

    attempt = reg.receive(request, SOURCE, NOW)

    assert isinstance(attempt, RegisterAttempt)
    assert attempt.aor == "sip:alice@example.net"
    assert attempt.cseq == 2
    assert attempt.method == "REGISTER"
    assert attempt.remove_all is False
    assert attempt.contacts == (
        Contact("sip:alice@192.0.2.10:5062", 1800, 500, "urn:uuid:0001"),
        Contact("sip:alice@192.0.2.10:5063", 60, 1000, ""),
    )
    assert attempt.credentials.username == "alice"
    assert attempt.credentials.nc == "00000001"


def test_contact_star_with_expires_zero_removes_all_bindings() -> None:
    reg = registrar()

    attempt = reg.receive(register(authorization(reg), "Expires: 0", contact="*"), SOURCE, NOW)

    assert isinstance(attempt, RegisterAttempt)
    assert attempt.remove_all is True
    assert attempt.contacts == ()


def test_contact_star_with_nonzero_expires_is_a_bad_request() -> None:
    verdict = registrar().receive(register("Expires: 60", contact="*"), SOURCE, NOW)

    assert isinstance(verdict, Rejection)
    assert verdict.response.status == 400


def test_contact_star_mixed_with_other_contacts_is_a_bad_request() -> None:
    verdict = registrar().receive(
        register("Expires: 0", contact="*, <sip:alice@192.0.2.10>"), SOURCE, NOW
    )

    assert isinstance(verdict, Rejection)
    assert verdict.response.status == 400


def test_a_forged_nonce_is_challenged_again_and_counts_as_a_failure() -> None:
    reg = registrar()
    header = authorization(reg)
    forged = header.replace('nonce="', 'nonce="X', 1)

    verdict = reg.receive(register(forged), SOURCE, NOW)

    assert isinstance(verdict, Rejection)
    assert verdict.response.status == 401
    assert verdict.auth_failure is True
    assert all("stale" not in v for v in verdict.response.headers.get_all("WWW-Authenticate"))


def test_an_expired_nonce_is_challenged_with_stale_true_without_a_failure() -> None:
    reg = registrar()

    verdict = reg.receive(register(authorization(reg)), SOURCE, NOW + 301)

    assert isinstance(verdict, Rejection)
    assert verdict.auth_failure is False
    assert all(
        parse_challenge(v).stale for v in verdict.response.headers.get_all("WWW-Authenticate")
    )


def test_a_replayed_nonce_count_is_refused() -> None:
    reg = registrar()
    header = authorization(reg)
    assert isinstance(reg.receive(register(header), SOURCE, NOW), RegisterAttempt)

    replay = reg.receive(register(header), SOURCE, NOW + 1)

    assert isinstance(replay, Rejection)
    assert replay.response.status == 401
    assert replay.label == "nonce_replay"


def test_a_replayed_nonce_count_is_answered_stale_and_is_no_failure() -> None:
    reg = registrar()
    header = authorization(reg)
    reg.receive(register(header), SOURCE, NOW)

    replay = reg.receive(register(header), SOURCE, NOW + 1)

    assert isinstance(replay, Rejection)
    assert replay.auth_failure is False
    assert [
        parse_challenge(v).stale for v in replay.response.headers.get_all("WWW-Authenticate")
    ] == [
        True,
        True,
    ]


def test_a_second_count_overtaking_the_first_is_accepted() -> None:
    reg = registrar()
    first = authorization(reg)
    second = first.replace("nc=00000001", "nc=00000002")

    overtaking = reg.receive(register(second), SOURCE, NOW)
    late_first = reg.receive(register(first), SOURCE, NOW)

    assert isinstance(overtaking, RegisterAttempt)
    assert overtaking.credentials.nc == "00000002"
    assert isinstance(late_first, Rejection)
    assert late_first.auth_failure is False


def test_a_nonce_issued_to_another_source_is_invalid() -> None:
    reg = registrar()

    verdict = reg.receive(register(authorization(reg)), "198.51.100.1", NOW)

    assert isinstance(verdict, Rejection)
    assert verdict.auth_failure is True


def test_ok_outcome_answers_200_with_each_binding_and_a_date() -> None:
    reg = registrar()
    result = RegisterResult(
        outcome=RegisterOutcome.OK,
        bindings=(
            Contact("sip:alice@192.0.2.10:5062", 1795),
            Contact("sip:alice@192.0.2.11", 60, 500),
        ),
    )

    response = reg.complete(register(), result, SOURCE, NOW, 0.0)

    assert response.status == 200
    assert response.headers.get_all("Contact") == [
        "<sip:alice@192.0.2.10:5062>;expires=1795",
        "<sip:alice@192.0.2.11>;expires=60;q=0.5",
    ]
    assert response.headers.get("Date") == "Thu, 01 Jan 1970 00:00:00 GMT"


def test_the_date_header_follows_the_wall_clock_second_by_second() -> None:
    reg = registrar()
    result = RegisterResult(outcome=RegisterOutcome.OK)

    dates = [
        reg.complete(register(), result, SOURCE, NOW, wall).headers.get("Date")
        for wall in (1_700_000_000.2, 1_700_000_000.9, 1_700_000_001.0, 1_700_000_000.5)
    ]

    assert dates == [
        "Tue, 14 Nov 2023 22:13:20 GMT",
        "Tue, 14 Nov 2023 22:13:20 GMT",
        "Tue, 14 Nov 2023 22:13:21 GMT",
        "Tue, 14 Nov 2023 22:13:20 GMT",
    ]


def test_interval_too_brief_answers_423_with_min_expires() -> None:
    result = RegisterResult(outcome=RegisterOutcome.INTERVAL_TOO_BRIEF, min_expires=60)

    response = registrar().complete(register(), result, SOURCE, NOW, NOW)

    assert (response.status, response.reason) == (423, "Interval Too Brief")
    assert response.headers.get("Min-Expires") == "60"


def test_too_many_bindings_answers_403_with_the_reason() -> None:
    result = RegisterResult(outcome=RegisterOutcome.TOO_MANY_BINDINGS)

    response = registrar().complete(register(), result, SOURCE, NOW, NOW)

    assert (response.status, response.reason) == (403, "Too Many Bindings")


def test_out_of_order_cseq_answers_400_with_that_reason() -> None:
    result = RegisterResult(outcome=RegisterOutcome.OUT_OF_ORDER)

    response = registrar().complete(register(), result, SOURCE, NOW, NOW)

    assert (response.status, response.reason) == (400, "Out-of-order CSeq")


def test_forbidden_answers_403() -> None:
    result = RegisterResult(outcome=RegisterOutcome.FORBIDDEN, reason="User disabled")

    response = registrar().complete(register(), result, SOURCE, NOW, NOW)

    assert (response.status, response.reason) == (403, "User disabled")


def test_unknown_user_and_wrong_password_answers_differ_only_in_the_nonce() -> None:
    reg = registrar()
    unauthorized = RegisterResult(outcome=RegisterOutcome.UNAUTHORIZED)
    wrong_password = reg.complete(
        register(authorization(reg, "bad")), unauthorized, SOURCE, NOW, NOW
    )
    unknown_user = reg.complete(
        register(authorization(reg, "bad", user="nobody")), unauthorized, SOURCE, NOW, NOW
    )

    def masked(values: list[str]) -> list[str]:
        return [v.replace(parse_challenge(v).nonce, "N") for v in values]

    assert (wrong_password.status, wrong_password.reason) == (401, "Unauthorized")
    assert (unknown_user.status, unknown_user.reason) == (401, "Unauthorized")
    assert [n for n, _ in wrong_password.headers] == [n for n, _ in unknown_user.headers]
    assert masked(wrong_password.headers.get_all("WWW-Authenticate")) == masked(
        unknown_user.headers.get_all("WWW-Authenticate")
    )


def test_an_answer_without_qop_is_refused_and_counts_as_a_failure() -> None:
    # RFC 2069 style (no qop, nc, cnonce) would escape the nonce-count replay check.
    reg = registrar()
    challenge_response = reg.receive(register(), SOURCE, NOW)
    assert isinstance(challenge_response, Rejection)
    md5 = parse_challenge(challenge_response.response.headers.get_all("WWW-Authenticate")[1])
    from dataclasses import replace

    legacy = build_credentials(
        replace(md5, qop=()),
        username="alice",
        ha1=compute_ha1(md5.algorithm, "alice", md5.realm, "pw"),
        method="REGISTER",
        uri="sip:example.net",
        cnonce="c0ffee",
    )
    assert legacy.qop is None

    verdict = reg.receive(register(f"Authorization: {legacy.serialize()}"), SOURCE, NOW)

    assert isinstance(verdict, Rejection)
    assert (verdict.response.status, verdict.auth_failure, verdict.label) == (401, True, "no_qop")


def test_credentials_for_another_uri_are_a_bad_request_and_a_failure() -> None:
    reg = registrar()
    header = authorization(reg).replace('uri="sip:example.net"', 'uri="sip:elsewhere.example"')

    verdict = reg.receive(register(header), SOURCE, NOW)

    assert isinstance(verdict, Rejection)
    assert (verdict.response.status, verdict.auth_failure, verdict.label) == (
        400,
        True,
        "uri_mismatch",
    )


def test_digest_uri_equal_by_rfc3261_rules_is_accepted() -> None:
    reg = registrar()
    header = authorization(reg).replace('uri="sip:example.net"', 'uri="sip:EXAMPLE.net"')

    verdict = reg.receive(register(header), SOURCE, NOW)

    assert isinstance(verdict, RegisterAttempt)


def test_a_digest_uri_with_only_the_servers_address_is_accepted() -> None:
    # SIPp and some handsets put sip:host[:port] in the digest-uri instead of the Request-URI.
    reg = registrar()
    header = authorization(reg).replace('uri="sip:example.net"', 'uri="sip:example.net:5060"')

    verdict = reg.receive(register(header), SOURCE, NOW)

    assert isinstance(verdict, RegisterAttempt)


def test_a_digest_uri_naming_another_user_is_refused() -> None:
    reg = registrar()
    header = authorization(reg).replace('uri="sip:example.net"', 'uri="sip:900@example.net"')

    verdict = reg.receive(register(header), SOURCE, NOW)

    assert isinstance(verdict, Rejection)
    assert verdict.label == "uri_mismatch"
