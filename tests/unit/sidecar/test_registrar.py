from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from sip2uc_core.sip.contact import Contact
from sip2uc_core.sip.digest import (
    Algorithm,
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


def registrar(
    default: tuple[Algorithm, ...] = (Algorithm.SHA_256, Algorithm.MD5),
    devices: dict[str, tuple[Algorithm, ...]] | None = None,
) -> Registrar:
    return Registrar(
        NonceIssuer(SECRET, 300.0),
        NonceCountTracker(1000),
        tag_secret=SECRET,
        policy=RegistrarPolicy(
            realm="example.net",
            algorithms=default,
            device_algorithms=MappingProxyType(devices or {}),
        ),
    )


def register(
    *extra: str, contact: str = "<sip:alice@192.0.2.10:5062>", cseq: int = 1, to: str = "alice"
) -> SipRequest:
    lines = [
        "REGISTER sip:example.net SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK776asdhds",
        f"From: <sip:{to}@example.net>;tag=1928301774",
        f"To: <sip:{to}@example.net>",
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


def authorization(
    reg: Registrar,
    password: str = "pw",
    *,
    user: str = "alice",
    nc: int = 1,
    algorithm: Algorithm = Algorithm.MD5,
) -> str:
    challenge_response = reg.receive(register(to=user), SOURCE, NOW)
    assert isinstance(challenge_response, Rejection)
    offered = [
        parse_challenge(v) for v in challenge_response.response.headers.get_all("WWW-Authenticate")
    ]
    # Answer the asked-for algorithm even where it was not offered (what a confused client does).
    md5 = replace(offered[0], algorithm=algorithm)
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


def test_register_without_credentials_is_challenged_in_the_configured_order() -> None:
    verdict = registrar().receive(register(), SOURCE, NOW)

    assert isinstance(verdict, Rejection)
    assert (verdict.label, verdict.why) == ("challenge", "")
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


def test_a_forged_nonce_is_challenged_again_and_said_why() -> None:
    reg = registrar()
    header = authorization(reg)
    forged = header.replace('nonce="', 'nonce="X', 1)

    verdict = reg.receive(register(forged), SOURCE, NOW)

    assert isinstance(verdict, Rejection)
    assert verdict.response.status == 401
    assert verdict.label == "invalid_nonce"
    assert verdict.why == (
        "alice from 192.0.2.10 answered a nonce this sidecar did not issue to that address; "
        "challenged again"
    )
    assert all("stale" not in v for v in verdict.response.headers.get_all("WWW-Authenticate"))


def test_an_expired_nonce_is_challenged_with_stale_true_without_a_failure() -> None:
    reg = registrar()

    verdict = reg.receive(register(authorization(reg)), SOURCE, NOW + 301)

    assert isinstance(verdict, Rejection)
    assert (verdict.label, verdict.why) == ("stale_nonce", "")
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
    assert replay.why == ""
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
    assert (late_first.label, late_first.why) == ("nonce_replay", "")


def test_a_nonce_forgotten_by_the_count_tracker_is_answered_stale_whatever_its_count() -> None:
    reg = Registrar(
        NonceIssuer(SECRET, 300.0),
        NonceCountTracker(1),
        tag_secret=SECRET,
        policy=RegistrarPolicy(realm="example.net"),
    )
    first = authorization(reg)
    assert isinstance(reg.receive(register(first), SOURCE, NOW), RegisterAttempt)
    other = authorization(reg, user="bob")
    assert isinstance(reg.receive(register(other, to="bob"), SOURCE, NOW + 1), RegisterAttempt)

    # The first nonce was forgotten to make room: neither a replay nor a higher count is trusted.
    replay = reg.receive(register(first), SOURCE, NOW + 2)
    higher = reg.receive(register(first.replace("nc=00000001", "nc=00000007")), SOURCE, NOW + 2)

    for verdict in (replay, higher):
        assert isinstance(verdict, Rejection)
        assert (verdict.response.status, verdict.label, verdict.why) == (
            401,
            "nonce_forgotten",
            "",
        )
        assert all(
            parse_challenge(v).stale for v in verdict.response.headers.get_all("WWW-Authenticate")
        )


def test_a_nonce_issued_to_another_source_is_invalid() -> None:
    reg = registrar()

    verdict = reg.receive(register(authorization(reg)), "198.51.100.1", NOW)

    assert isinstance(verdict, Rejection)
    assert verdict.label == "invalid_nonce"


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


def test_an_answer_without_qop_is_refused_and_said_why() -> None:
    # RFC 2069 style (no qop, nc, cnonce) would escape the nonce-count replay check.
    reg = registrar()
    challenge_response = reg.receive(register(), SOURCE, NOW)
    assert isinstance(challenge_response, Rejection)
    md5 = parse_challenge(challenge_response.response.headers.get_all("WWW-Authenticate")[1])
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
    assert (verdict.response.status, verdict.label) == (401, "no_qop")
    assert verdict.why == (
        "alice from 192.0.2.10 answered without qop=auth (RFC 2069 digest), which is refused"
    )


def test_credentials_for_another_uri_are_a_bad_request() -> None:
    reg = registrar()
    header = authorization(reg).replace('uri="sip:example.net"', 'uri="sip:elsewhere.example"')

    verdict = reg.receive(register(header), SOURCE, NOW)

    assert isinstance(verdict, Rejection)
    assert (verdict.response.status, verdict.label) == (400, "uri_mismatch")
    assert verdict.why == (
        "alice from 192.0.2.10: the digest uri sip:elsewhere.example is not the Request-URI"
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


# --- challenges per device (RFC 8760) ---------------------------------------------------------


def challenge_values(verdict: object) -> list[str]:
    assert isinstance(verdict, Rejection)
    return verdict.response.headers.get_all("WWW-Authenticate")


def masked(values: list[str]) -> list[str]:
    return [v.replace(parse_challenge(v).nonce, "N") for v in values]


def test_the_default_challenge_is_md5_alone() -> None:
    reg = Registrar(
        NonceIssuer(SECRET, 300.0),
        NonceCountTracker(10),
        tag_secret=SECRET,
        policy=RegistrarPolicy(),
    )

    values = challenge_values(reg.receive(register(), SOURCE, NOW))

    assert [parse_challenge(v).algorithm for v in values] == [Algorithm.MD5]


def test_a_device_set_to_sha256_is_challenged_with_sha256_only() -> None:
    reg = registrar((Algorithm.MD5,), {"alice": (Algorithm.SHA_256,)})

    values = challenge_values(reg.receive(register(), SOURCE, NOW))

    assert [parse_challenge(v).algorithm for v in values] == [Algorithm.SHA_256]


def test_a_device_may_list_several_algorithms_in_its_own_order() -> None:
    reg = registrar((Algorithm.MD5,), {"alice": (Algorithm.SHA_256, Algorithm.MD5)})

    values = challenge_values(reg.receive(register(), SOURCE, NOW))

    assert [parse_challenge(v).algorithm for v in values] == [Algorithm.SHA_256, Algorithm.MD5]


def test_an_unknown_user_gets_the_default_challenge_in_the_same_shape() -> None:
    reg = registrar((Algorithm.MD5,), {"alice": (Algorithm.SHA_256,)})

    unknown = reg.receive(register(to="nobody"), SOURCE, NOW)
    known_default = reg.receive(register(to="bob"), SOURCE, NOW)
    plain = registrar((Algorithm.MD5,)).receive(register(to="nobody"), SOURCE, NOW)

    assert isinstance(unknown, Rejection)
    assert isinstance(known_default, Rejection)
    assert isinstance(plain, Rejection)
    shapes = {
        (verdict.response.status, tuple(name for name, _ in verdict.response.headers))
        for verdict in (unknown, known_default, plain)
    }
    assert len(shapes) == 1
    assert masked(challenge_values(unknown)) == masked(challenge_values(plain))
    assert masked(challenge_values(unknown)) == masked(challenge_values(known_default))


def test_credentials_pick_the_devices_algorithms_over_the_to_user() -> None:
    # A handset whose digest user name differs from its AOR: once it answers, its digest user
    # name decides (here: a refused MD5 answer is challenged again with SHA-256).
    reg = registrar((Algorithm.MD5,), {"dev-7": (Algorithm.SHA_256,)})
    header = authorization(reg, user="dev-7")

    verdict = reg.receive(register(header, to="alice"), SOURCE, NOW)

    assert [parse_challenge(v).algorithm for v in challenge_values(verdict)] == [Algorithm.SHA_256]


def test_an_md5_answer_from_a_sha256_device_is_refused_before_the_control_plane() -> None:
    reg = registrar((Algorithm.MD5,), {"alice": (Algorithm.SHA_256,)})
    header = authorization(reg, algorithm=Algorithm.MD5)

    verdict = reg.receive(register(header), SOURCE, NOW)

    assert isinstance(verdict, Rejection)
    assert (verdict.response.status, verdict.label) == (401, "algorithm")
    assert verdict.why == (
        "challenge algorithm not supported by the client: alice from 192.0.2.10 answered MD5, "
        "challenged with SHA-256"
    )
    assert [parse_challenge(v).algorithm for v in challenge_values(verdict)] == [Algorithm.SHA_256]


def test_a_sha256_answer_from_a_sha256_device_goes_to_the_control_plane() -> None:
    reg = registrar((Algorithm.MD5,), {"alice": (Algorithm.SHA_256,)})
    header = authorization(reg, algorithm=Algorithm.SHA_256)

    attempt = reg.receive(register(header), SOURCE, NOW)

    assert isinstance(attempt, RegisterAttempt)
    assert attempt.credentials.algorithm is Algorithm.SHA_256


def test_an_answer_with_an_algorithm_the_default_does_not_offer_is_refused() -> None:
    reg = registrar((Algorithm.MD5,))
    header = authorization(reg, algorithm=Algorithm.SHA_256)

    verdict = reg.receive(register(header), SOURCE, NOW)

    assert isinstance(verdict, Rejection)
    assert verdict.label == "algorithm"


def test_a_wrong_realm_is_challenged_again_and_said_why() -> None:
    reg = registrar()
    header = authorization(reg).replace('realm="example.net"', 'realm="other"')

    verdict = reg.receive(register(header), SOURCE, NOW)

    assert isinstance(verdict, Rejection)
    assert (verdict.response.status, verdict.label) == (401, "wrong_realm")
    assert verdict.why == (
        "alice from 192.0.2.10 answered for realm 'other', not 'example.net': clear the realm in "
        "the handset or set it to 'example.net'"
    )


def test_the_user_a_request_is_for_is_its_digest_user_name_else_the_to_user() -> None:
    reg = registrar()

    assert reg.user_of(register(to="bob")) == "bob"
    assert reg.user_of(register(authorization(reg, user="dev-7"), to="bob")) == "dev-7"
    assert reg.user_of(register('Authorization: Digest garbage"', to="bob")) == "bob"
