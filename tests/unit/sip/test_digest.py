"""Digest authentication: RFC 7616 / RFC 2617 worked examples, header syntax, nonces, replay."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sip2uc_core.sip.digest import (
    DEFAULT_CHALLENGE,
    Algorithm,
    Challenge,
    CountStatus,
    Credentials,
    DigestError,
    NonceCountTracker,
    NonceIssuer,
    NonceStatus,
    build_credentials,
    compute_ha1,
    compute_response,
    parse_challenge,
    parse_credentials,
    quote_string,
    verify_response,
)

# RFC 7616 §3.9.1
RFC7616_REALM = "http-auth@example.org"
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_SHA256_RESPONSE = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
RFC7616_MD5_RESPONSE = "8ca523f5e9506fed4657c9700eebdbec"

# RFC 2617 §3.5
RFC2617_HEADER = (
    'Digest username="Mufasa",\r\n'
    '                 realm="testrealm@host.com",\r\n'
    '                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n'
    '                 uri="/dir/index.html",\r\n'
    "                 qop=auth,\r\n"
    "                 nc=00000001,\r\n"
    '                 cnonce="0a4f113b",\r\n'
    '                 response="6629fae49393a05397450978507c4ef1",\r\n'
    '                 opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)

SECRET = b"0123456789abcdef0123456789abcdef"


def rfc7616_header(algorithm: str, response: str) -> str:
    return (
        f'Digest username="Mufasa", realm="{RFC7616_REALM}", uri="/dir/index.html", '
        f'algorithm={algorithm}, nonce="{RFC7616_NONCE}", nc=00000001, '
        f'cnonce="{RFC7616_CNONCE}", qop=auth, response="{response}", '
        f'opaque="{RFC7616_OPAQUE}"'
    )


# --- RFC worked examples ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [("SHA-256", RFC7616_SHA256_RESPONSE), ("MD5", RFC7616_MD5_RESPONSE)],
)
def test_rfc7616_example_response_values(algorithm: str, expected: str) -> None:
    ha1 = compute_ha1(algorithm, "Mufasa", RFC7616_REALM, "Circle of Life")
    response = compute_response(
        algorithm,
        ha1,
        nonce=RFC7616_NONCE,
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce=RFC7616_CNONCE,
    )
    assert response == expected


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [("SHA-256", RFC7616_SHA256_RESPONSE), ("MD5", RFC7616_MD5_RESPONSE)],
)
def test_rfc7616_example_header_verifies_against_stored_ha1(algorithm: str, response: str) -> None:
    credentials = parse_credentials(rfc7616_header(algorithm, response))
    ha1 = compute_ha1(algorithm, "Mufasa", RFC7616_REALM, "Circle of Life")
    assert verify_response(ha1, credentials, "GET")


def test_rfc7616_example_rejects_wrong_password() -> None:
    credentials = parse_credentials(rfc7616_header("SHA-256", RFC7616_SHA256_RESPONSE))
    ha1 = compute_ha1("SHA-256", "Mufasa", RFC7616_REALM, "Circle of life")
    assert not verify_response(ha1, credentials, "GET")


def test_rfc7616_example_rejects_other_method() -> None:
    credentials = parse_credentials(rfc7616_header("SHA-256", RFC7616_SHA256_RESPONSE))
    ha1 = compute_ha1("SHA-256", "Mufasa", RFC7616_REALM, "Circle of Life")
    assert not verify_response(ha1, credentials, "POST")


def test_rfc2617_example_parses_every_field() -> None:
    credentials = parse_credentials(RFC2617_HEADER)
    assert credentials == Credentials(
        username="Mufasa",
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        uri="/dir/index.html",
        response="6629fae49393a05397450978507c4ef1",
        algorithm=Algorithm.MD5,
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
    )
    assert credentials.nonce_count == 1


def test_rfc2617_example_verifies() -> None:
    ha1 = compute_ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life")
    assert verify_response(ha1, parse_credentials(RFC2617_HEADER), "GET")


def test_rfc2069_form_without_qop_verifies() -> None:
    ha1 = compute_ha1("MD5", "alice", "sip2uc", "secret")
    # H(HA1:nonce:H(method:uri)) with nothing else (RFC 2617 §3.2.2.1 compatibility).
    response = compute_response("MD5", ha1, nonce="n1", method="REGISTER", uri="sip:sip2uc")
    assert response == Algorithm.MD5.hash(f"{ha1}:n1:{Algorithm.MD5.hash('REGISTER:sip:sip2uc')}")
    header = (
        f'Digest username="alice", realm="sip2uc", nonce="n1", uri="sip:sip2uc", '
        f'response="{response}"'
    )
    assert verify_response(ha1, parse_credentials(header), "REGISTER")


def test_ha1_is_hex_of_user_realm_password() -> None:
    assert compute_ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life") == (
        "939e7578ed9e3c518a452acee763bce9"
    )


def test_sess_algorithms_share_the_base_ha1() -> None:
    assert compute_ha1("SHA-256-sess", "u", "r", "p") == compute_ha1("SHA-256", "u", "r", "p")


def test_sess_response_hashes_nonce_and_cnonce_into_ha1() -> None:
    ha1 = compute_ha1("MD5", "u", "r", "p")
    sess = compute_response(
        "MD5-sess",
        ha1,
        nonce="n",
        method="INVITE",
        uri="sip:b@r",
        qop="auth",
        nc="00000001",
        cnonce="c",
    )
    session_ha1 = Algorithm.MD5.hash(f"{ha1}:n:c")
    plain = compute_response(
        "MD5",
        session_ha1,
        nonce="n",
        method="INVITE",
        uri="sip:b@r",
        qop="auth",
        nc="00000001",
        cnonce="c",
    )
    assert sess == plain


def test_auth_int_covers_the_body() -> None:
    ha1 = compute_ha1("SHA-256", "u", "r", "p")
    response = compute_response(
        "SHA-256",
        ha1,
        nonce="n",
        method="INVITE",
        uri="sip:b@r",
        qop="auth-int",
        nc="00000001",
        cnonce="c",
        body=b"v=0\r\n",
    )
    credentials = parse_credentials(
        'Digest username="u", realm="r", nonce="n", uri="sip:b@r", algorithm=SHA-256, '
        f'qop=auth-int, nc=00000001, cnonce="c", response="{response}"'
    )
    assert verify_response(ha1, credentials, "INVITE", body=b"v=0\r\n")
    assert not verify_response(ha1, credentials, "INVITE", body=b"v=1\r\n")


def test_sha512_256_uses_the_fips_180_4_truncated_hash() -> None:
    # FIPS 180-4 example for SHA-512/256("abc").
    assert Algorithm.SHA_512_256.hash("abc") == (
        "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
    )


def test_verify_rejects_ha1_of_another_hash_family() -> None:
    credentials = parse_credentials(rfc7616_header("SHA-256", RFC7616_SHA256_RESPONSE))
    md5_ha1 = compute_ha1("MD5", "Mufasa", RFC7616_REALM, "Circle of Life")
    assert not verify_response(md5_ha1, credentials, "GET")


def test_verify_accepts_uppercase_hex_response() -> None:
    header = rfc7616_header("MD5", RFC7616_MD5_RESPONSE.upper())
    ha1 = compute_ha1("MD5", "Mufasa", RFC7616_REALM, "Circle of Life")
    assert verify_response(ha1, parse_credentials(header), "GET")


def test_verify_rejects_non_ascii_response_without_raising() -> None:
    header = rfc7616_header("MD5", "é" * 32)
    ha1 = compute_ha1("MD5", "Mufasa", RFC7616_REALM, "Circle of Life")
    assert not verify_response(ha1, parse_credentials(header), "GET")


# --- header syntax ----------------------------------------------------------------------------


def test_parse_handles_quoted_pair_escapes() -> None:
    header = r'Digest username="a\"b\\c", realm="r", nonce="n", uri="sip:x", response="00"'
    assert parse_credentials(header).username == 'a"b\\c'


def test_quote_string_round_trips_through_parse() -> None:
    username = 'we"ird\\name'
    header = (
        f'Digest username={quote_string(username)}, realm="r", nonce="n", '
        'uri="sip:x", response="00"'
    )
    assert parse_credentials(header).username == username


def test_parse_is_case_insensitive_for_scheme_names_and_algorithm() -> None:
    header = 'digest USERNAME="u", Realm="r", nonce="n", uri="sip:x", response="00", algorithm=md5'
    credentials = parse_credentials(header)
    assert (credentials.username, credentials.algorithm) == ("u", Algorithm.MD5)


def test_parse_accepts_quoted_qop_and_empty_list_elements() -> None:
    header = (
        'Digest username="u",, realm="r", nonce="n", uri="sip:x", response="00", '
        'qop="auth", nc=0000000A, cnonce="c",'
    )
    credentials = parse_credentials(header)
    assert (credentials.qop, credentials.nc, credentials.nonce_count) == ("auth", "0000000A", 10)


def test_parse_decodes_extended_username() -> None:
    header = (
        'Digest username*=UTF-8\'\'J%C3%A4s%C3%B8n%20Doe, realm="r", nonce="n", '
        'uri="sip:x", response="00"'
    )
    assert parse_credentials(header).username == "Jäsøn Doe"


def test_parse_reads_userhash_flag() -> None:
    header = (
        'Digest username="ab12", realm="r", nonce="n", uri="sip:x", response="00", userhash=true'
    )
    assert parse_credentials(header).userhash is True


BASE = 'username="u", realm="r", nonce="n", uri="sip:x", response="00"'


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Basic dXNlcjpwYXNz", "not Digest"),
        ("", "no auth-scheme"),
        ('Digest username="u, realm=r', "unterminated"),
        ('Digest username="u\\', "dangling escape"),
        ('Digest realm="r", nonce="n", uri="sip:x", response="00"', "no username"),
        ('Digest username="u", nonce="n", uri="sip:x", response="00"', "no realm"),
        ('Digest username="u", realm="r", uri="sip:x", response="00"', "no nonce"),
        ('Digest username="u", realm="r", nonce="n", response="00"', "no uri"),
        ('Digest username="u", realm="r", nonce="n", uri="sip:x"', "no response"),
        (f"Digest {BASE}, algorithm=SHA-1", "not supported"),
        (f'Digest {BASE}, qop=auth, nc=0000001g, cnonce="c"', "8 hex digits"),
        (f'Digest {BASE}, qop=auth, nc=1, cnonce="c"', "8 hex digits"),
        (f"Digest {BASE}, qop=auth, nc=00000001", "needs nc and cnonce"),
        (f'Digest {BASE}, qop=auth-conf, nc=00000001, cnonce="c"', "qop"),
        (f"Digest {BASE}, algorithm=MD5-sess", "needs qop"),
        (f'Digest {BASE}, realm="again"', "repeats"),
        (f"Digest {BASE}, opaque", "no value"),
        (f'Digest {BASE}, opaque="x" y', "not followed by a comma"),
        (f"Digest {BASE}, opaque=<x>", "malformed value"),
        (f"Digest {BASE}, userhash=maybe", "true or false"),
        (
            'Digest username*=UTF-8\'\'%ZZ, realm="r", nonce="n", uri="sip:x", response="0"',
            "percent-encoding",
        ),
        (
            'Digest username="u", username*=UTF-8\'\'u, realm="r", nonce="n", uri="x", '
            'response="0"',
            "both username",
        ),
        ('Digest,username="u"', "whitespace"),
    ],
)
def test_parse_rejects_malformed_credentials(header: str, message: str) -> None:
    with pytest.raises(DigestError, match=message) as caught:
        parse_credentials(header)
    assert caught.value.status_code == 400


HEADER_PIECES = st.sampled_from(
    [
        "Digest ",
        "digest",
        " ",
        ",",
        "=",
        '"',
        "\\",
        "username",
        "realm",
        "nonce",
        "uri",
        "response",
        "qop",
        "auth",
        "nc",
        "00000001",
        "cnonce",
        "algorithm",
        "SHA-256",
        "MD5-sess",
        "username*",
        "UTF-8''",
        "%",
        "%C3",
        "userhash",
        "true",
        "\r\n",
        "é",
        "x",
    ]
)


@given(st.one_of(st.text(max_size=200), st.lists(HEADER_PIECES, max_size=40).map("".join)))
def test_parse_credentials_raises_only_digest_error(text: str) -> None:
    with contextlib.suppress(DigestError):
        parse_credentials(text)


@given(st.one_of(st.text(max_size=200), st.lists(HEADER_PIECES, max_size=40).map("".join)))
def test_parse_challenge_raises_only_digest_error(text: str) -> None:
    with contextlib.suppress(DigestError):
        parse_challenge(text)


@given(st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=40))
def test_serialized_credentials_round_trip(username: str) -> None:
    credentials = Credentials(
        username=username,
        realm='r\\"',
        nonce="n",
        uri="sip:x",
        response="ab",
        algorithm=Algorithm.SHA_256,
        qop="auth",
        nc="00000002",
        cnonce="c",
        opaque="o",
    )
    assert parse_credentials(credentials.serialize()) == credentials


def test_parse_challenge_reads_rfc3261_style_values() -> None:
    challenge = parse_challenge(
        'Digest realm="atlanta.com", domain="sip:ss1.carrier.com", qop="auth,auth-int", '
        'nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, algorithm=MD5'
    )
    assert challenge == Challenge(
        realm="atlanta.com",
        nonce="f84f1cec41e6cbe5aea9c8e88d359",
        algorithm=Algorithm.MD5,
        qop=("auth", "auth-int"),
        opaque="",
        stale=False,
    )


def test_client_answer_to_a_challenge_verifies_on_the_server() -> None:
    issuer = NonceIssuer(SECRET, lifetime=300.0)
    value = issuer.challenge_header(
        "sip2uc.example", 1000.0, "192.0.2.7", algorithms=("SHA-256", "MD5")
    )[0]
    challenge = parse_challenge(value)
    ha1 = compute_ha1(challenge.algorithm, "1001", challenge.realm, "pw")
    credentials = build_credentials(
        challenge,
        username="1001",
        ha1=ha1,
        method="REGISTER",
        uri="sip:sip2uc.example",
        cnonce="c0ffee",
        nc=1,
    )
    parsed = parse_credentials(credentials.serialize())
    assert parsed.algorithm is Algorithm.SHA_256
    assert parsed.opaque == issuer.opaque
    assert issuer.check(parsed.nonce, 1001.0, "192.0.2.7") is NonceStatus.VALID
    assert verify_response(ha1, parsed, "REGISTER")


def test_client_uses_rfc2069_form_when_challenge_has_no_qop() -> None:
    challenge = Challenge(realm="r", nonce="n")
    credentials = build_credentials(
        challenge,
        username="u",
        ha1=compute_ha1("MD5", "u", "r", "p"),
        method="INVITE",
        uri="sip:x",
        cnonce="unused",
    )
    assert (credentials.qop, credentials.nc, credentials.cnonce) == (None, None, None)
    assert verify_response(compute_ha1("MD5", "u", "r", "p"), credentials, "INVITE")


def test_client_refuses_challenge_with_only_unknown_qop() -> None:
    with pytest.raises(DigestError, match="no supported qop"):
        build_credentials(
            Challenge(realm="r", nonce="n", qop=("auth-conf",)),
            username="u",
            ha1="0" * 32,
            method="INVITE",
            uri="sip:x",
            cnonce="c",
        )


# --- stateless nonces -------------------------------------------------------------------------


def test_nonce_is_valid_within_its_lifetime() -> None:
    issuer = NonceIssuer(SECRET, lifetime=30.0)
    nonce = issuer.issue(100.0, "192.0.2.1")
    assert issuer.check(nonce, 100.0, "192.0.2.1") is NonceStatus.VALID
    assert issuer.check(nonce, 130.0, "192.0.2.1") is NonceStatus.VALID


def test_expired_authentic_nonce_is_stale() -> None:
    issuer = NonceIssuer(SECRET, lifetime=30.0)
    nonce = issuer.issue(100.0, "192.0.2.1")
    assert issuer.check(nonce, 130.002, "192.0.2.1") is NonceStatus.STALE


def test_nonce_from_the_future_is_stale() -> None:
    issuer = NonceIssuer(SECRET, lifetime=30.0)
    assert issuer.check(issuer.issue(100.0), 99.0) is NonceStatus.STALE


def test_nonce_bound_to_another_source_is_invalid() -> None:
    issuer = NonceIssuer(SECRET, lifetime=30.0)
    nonce = issuer.issue(100.0, "192.0.2.1")
    assert issuer.check(nonce, 101.0, "192.0.2.2") is NonceStatus.INVALID


def test_nonce_from_another_secret_is_invalid() -> None:
    nonce = NonceIssuer(b"another secret of 32 bytes......", lifetime=30.0).issue(100.0)
    assert NonceIssuer(SECRET, lifetime=30.0).check(nonce, 101.0) is NonceStatus.INVALID


def test_tampered_issue_time_is_invalid() -> None:
    issuer = NonceIssuer(SECRET, lifetime=30.0)
    nonce = issuer.issue(100.0)
    # Characters 2..12 carry the issue time; changing one must break the MAC.
    tampered = nonce[:8] + ("A" if nonce[8] != "A" else "B") + nonce[9:]
    assert issuer.check(tampered, 101.0) is NonceStatus.INVALID


@pytest.mark.parametrize("nonce", ["", "x", "not base64 !!", "A" * 39, "A" * 40, "é" * 39])
def test_garbage_nonce_is_invalid(nonce: str) -> None:
    assert NonceIssuer(SECRET, lifetime=30.0).check(nonce, 1.0) is NonceStatus.INVALID


def test_nonces_issued_in_the_same_millisecond_differ() -> None:
    issuer = NonceIssuer(SECRET, lifetime=30.0)
    assert issuer.issue(5.0) != issuer.issue(5.0)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        NonceIssuer(b"short", lifetime=30.0)


def test_challenge_lists_algorithms_in_the_order_given_with_one_nonce() -> None:
    # RFC 8760 §2.4: the order is the server's preference, which is what a client that reads only
    # the first challenge answers with; it is not re-sorted by strength.
    issuer = NonceIssuer(SECRET, lifetime=30.0)
    values = issuer.challenge_header("sip2uc", 10.0, "192.0.2.1", algorithms=("MD5", "SHA-256"))
    nonce = parse_challenge(values[0]).nonce
    assert values == [
        f'Digest realm="sip2uc", nonce="{nonce}", opaque="{issuer.opaque}", '
        'algorithm=MD5, qop="auth"',
        f'Digest realm="sip2uc", nonce="{nonce}", opaque="{issuer.opaque}", '
        'algorithm=SHA-256, qop="auth"',
    ]


def test_default_challenge_is_md5_alone() -> None:
    issuer = NonceIssuer(SECRET, lifetime=30.0)

    (value,) = issuer.challenge_header("sip2uc", 10.0, "192.0.2.1")

    assert parse_challenge(value).algorithm is Algorithm.MD5
    assert DEFAULT_CHALLENGE == (Algorithm.MD5,)


def test_an_algorithm_named_twice_is_offered_once() -> None:
    issuer = NonceIssuer(SECRET, lifetime=30.0)
    values = issuer.challenge_header("sip2uc", 10.0, algorithms=("SHA-256", "md5", "sha-256"))
    assert [parse_challenge(v).algorithm for v in values] == [Algorithm.SHA_256, Algorithm.MD5]


def test_issue_time_reads_back_the_time_a_nonce_was_issued() -> None:
    issuer = NonceIssuer(SECRET, lifetime=30.0)
    nonce = issuer.issue(1234.567, "192.0.2.1")
    assert NonceIssuer.issue_time(nonce) == 1234.567


def test_stale_challenge_says_so() -> None:
    issuer = NonceIssuer(SECRET, lifetime=30.0)
    (value,) = issuer.challenge_header("sip2uc", 10.0, stale=True, algorithms=("MD5",))
    assert value.endswith(', algorithm=MD5, qop="auth", stale=true')
    assert parse_challenge(value).stale is True


# --- nonce-count replay protection ------------------------------------------------------------


ACCEPTED, REPLAYED, FORGOTTEN = CountStatus.ACCEPTED, CountStatus.REPLAYED, CountStatus.FORGOTTEN


def test_increasing_counts_are_accepted() -> None:
    tracker = NonceCountTracker(capacity=4)
    assert [tracker.admit("n", nc, 0.0, 0.0) for nc in (1, 2, 5)] == [ACCEPTED] * 3


def test_repeated_count_is_a_replay() -> None:
    tracker = NonceCountTracker(capacity=4)
    assert tracker.admit("n", 1, 0.0, 0.0) is ACCEPTED
    assert tracker.admit("n", 1, 0.0, 0.0) is REPLAYED


def test_lower_count_is_a_replay() -> None:
    tracker = NonceCountTracker(capacity=4)
    assert tracker.admit("n", 1, 0.0, 0.0) is ACCEPTED
    assert tracker.admit("n", 3, 0.0, 0.0) is ACCEPTED
    assert tracker.admit("n", 2, 0.0, 0.0) is REPLAYED


def test_unseen_nonce_starts_at_the_first_count_that_arrives() -> None:
    # A retransmitted challenge makes honest clients send nc=2 before nc=1 is processed.
    tracker = NonceCountTracker(capacity=4)
    assert tracker.admit("n", 2, 0.0, 0.0) is ACCEPTED
    assert tracker.admit("n", 1, 0.0, 0.0) is REPLAYED
    assert tracker.admit("n", 3, 0.0, 0.0) is ACCEPTED


def test_count_zero_is_never_accepted() -> None:
    assert NonceCountTracker(capacity=4).admit("n", 0, 0.0, 0.0) is REPLAYED


def test_a_nonce_forgotten_at_capacity_accepts_no_count_at_all() -> None:
    tracker = NonceCountTracker(capacity=2)
    tracker.admit("a", 1, 10.0, 10.0)
    tracker.admit("b", 1, 11.0, 11.0)
    tracker.admit("a", 2, 10.0, 12.0)
    tracker.admit("c", 1, 12.0, 12.0)  # "b" is the least recently used: forgotten
    assert len(tracker) == 2
    assert tracker.forgotten_through == 11.0

    # Neither a replayed count nor a higher one: only a fresh nonce goes on.
    assert tracker.admit("b", 1, 11.0, 13.0) is FORGOTTEN
    assert tracker.admit("b", 9, 11.0, 13.0) is FORGOTTEN
    assert tracker.admit("a", 2, 10.0, 13.0) is REPLAYED
    assert tracker.admit("a", 3, 10.0, 13.0) is ACCEPTED


def test_a_nonce_issued_after_everything_forgotten_is_new() -> None:
    tracker = NonceCountTracker(capacity=1)
    tracker.admit("a", 1, 10.0, 10.0)
    tracker.admit("b", 1, 20.0, 20.0)  # forgets "a", issued at 10

    assert tracker.admit("c", 1, 10.5, 21.0) is ACCEPTED
    assert tracker.admit("d", 1, 9.0, 21.0) is FORGOTTEN  # may be one forgotten with "a"


def test_idle_nonces_are_forgotten_and_then_refused() -> None:
    tracker = NonceCountTracker(capacity=10, max_idle=60.0)
    tracker.admit("a", 1, 0.0, 0.0)
    tracker.admit("b", 1, 30.0, 30.0)

    assert tracker.admit("b", 2, 30.0, 61.0) is ACCEPTED
    assert len(tracker) == 1
    assert tracker.admit("a", 2, 0.0, 62.0) is FORGOTTEN


@given(
    st.sampled_from(list(Algorithm)),
    st.text(min_size=1, max_size=20),
    st.text(max_size=20),
    st.text(max_size=20),
    st.integers(1, 0xFFFFFFFF),
)
def test_any_answer_built_from_the_password_verifies(
    algorithm: Algorithm, username: str, realm: str, password: str, nc: int
) -> None:
    challenge = Challenge(realm=realm, nonce="n0", algorithm=algorithm, qop=("auth",))
    ha1 = compute_ha1(algorithm, username, realm, password)
    credentials = build_credentials(
        challenge, username=username, ha1=ha1, method="REGISTER", uri="sip:r", cnonce="c", nc=nc
    )
    assert verify_response(ha1, credentials, "REGISTER")
    wrong = compute_ha1(algorithm, username, realm, password + "x")
    assert not verify_response(wrong, credentials, "REGISTER")


def test_challenge_values_from_the_template_equal_the_formatted_challenges() -> None:
    issuer = NonceIssuer(b"k" * 32, 300.0)
    for stale in (False, True, False):
        values = issuer.challenge_header(
            "sip2uc", 1000.0, "192.0.2.10", stale=stale, algorithms=("MD5", Algorithm.SHA_256)
        )
        nonce = parse_challenge(values[0]).nonce
        assert values == [
            Challenge(
                realm="sip2uc",
                nonce=nonce,
                algorithm=algorithm,
                qop=("auth",),
                opaque=issuer.opaque,
                stale=stale,
            ).serialize()
            for algorithm in (Algorithm.MD5, Algorithm.SHA_256)
        ]
        assert issuer.check(nonce, 1000.0, "192.0.2.10") is NonceStatus.VALID


def test_a_quoted_value_with_an_escaped_quote_is_unescaped() -> None:
    credentials = parse_credentials(
        'Digest username="a\\"b", realm="r", nonce="n", uri="sip:r", response="00"'
    )
    assert credentials.username == 'a"b'


def test_nonces_issued_before_the_tracker_started_count_as_forgotten() -> None:
    # A restart keeps the nonce secret but not the counts: earlier nonces could be replayed.
    tracker = NonceCountTracker(capacity=10, started=1000.0)

    assert tracker.admit("old", 5, 999.0, 1001.0) is CountStatus.FORGOTTEN
    assert tracker.admit("new", 1, 1000.5, 1001.0) is CountStatus.ACCEPTED
