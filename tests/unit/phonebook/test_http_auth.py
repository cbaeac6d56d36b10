"""HTTP Digest (RFC 7616) checks before the control plane is asked, and the site token."""

from __future__ import annotations

from sip2uc_core.sip.digest import (
    Algorithm,
    Credentials,
    NonceCountTracker,
    NonceIssuer,
    build_credentials,
    compute_ha1,
    parse_challenge,
)
from sip2uc_media.phonebook.http_auth import Challenge, HttpDigest, token_matches

NOW = 1000.0
SOURCE = "192.0.2.10"
TARGET = "/phonebook/yealink.xml?q=al"


def gate() -> HttpDigest:
    return HttpDigest(
        NonceIssuer(b"k" * 32, 300.0), NonceCountTracker(100, max_idle=300.0), realm="sip2uc"
    )


def answer(digest: HttpDigest, uri: str = TARGET, nc: int = 1, password: str = "pw") -> str:
    challenge = digest.challenge(SOURCE, NOW)
    parsed = parse_challenge(challenge.www_authenticate[0])
    ha1 = compute_ha1(parsed.algorithm, "1001", parsed.realm, password)
    creds = build_credentials(
        parsed, username="1001", ha1=ha1, method="GET", uri=uri, cnonce="abcdef", nc=nc
    )
    return str(creds)


def test_no_credentials_get_one_challenge_per_algorithm_strongest_first() -> None:
    checked = gate().check(None, TARGET, SOURCE, NOW)
    assert isinstance(checked, Challenge)
    assert checked.status == 401 and not checked.auth_failure
    algorithms = [parse_challenge(v).algorithm for v in checked.www_authenticate]
    assert algorithms == [Algorithm.SHA_256, Algorithm.MD5]
    assert all(parse_challenge(v).qop == ("auth",) for v in checked.www_authenticate)


def test_well_formed_credentials_go_to_the_control_plane() -> None:
    digest = gate()
    checked = digest.check(answer(digest), TARGET, SOURCE, NOW + 1)
    assert isinstance(checked, Credentials)
    assert (checked.username, checked.uri, checked.realm) == ("1001", TARGET, "sip2uc")


def test_a_replayed_nonce_count_is_answered_stale_not_passed_on() -> None:
    digest = gate()
    header = answer(digest)
    assert isinstance(digest.check(header, TARGET, SOURCE, NOW + 1), Credentials)
    again = digest.check(header, TARGET, SOURCE, NOW + 2)
    assert isinstance(again, Challenge) and again.reason == "stale_nonce"
    assert not again.auth_failure


def test_credentials_for_another_url_are_refused() -> None:
    digest = gate()
    checked = digest.check(answer(digest, uri="/phonebook/snom.xml"), TARGET, SOURCE, NOW + 1)
    assert isinstance(checked, Challenge)
    assert (checked.status, checked.auth_failure) == (400, True)


def test_a_nonce_from_another_address_or_another_key_is_invalid() -> None:
    digest = gate()
    header = answer(digest)
    moved = digest.check(header, TARGET, "192.0.2.99", NOW + 1)
    assert isinstance(moved, Challenge) and moved.reason == "invalid_nonce" and moved.auth_failure
    other = HttpDigest(NonceIssuer(b"x" * 32, 300.0), NonceCountTracker(100), realm="sip2uc").check(
        header, TARGET, SOURCE, NOW + 1
    )
    assert isinstance(other, Challenge) and other.reason == "invalid_nonce"


def test_an_old_nonce_is_stale() -> None:
    digest = gate()
    checked = digest.check(answer(digest), TARGET, SOURCE, NOW + 301)
    assert isinstance(checked, Challenge) and checked.reason == "stale_nonce"
    assert any("stale=true" in v for v in checked.www_authenticate)


def test_garbage_authorization_is_a_bad_request() -> None:
    checked = gate().check('Digest username="x, realm=', TARGET, SOURCE, NOW)
    assert isinstance(checked, Challenge) and checked.status == 400


def test_the_token_compares_whole_and_never_matches_when_unset() -> None:
    assert token_matches("s3cret-token", "s3cret-token")
    assert not token_matches("s3cret-toke", "s3cret-token")
    assert not token_matches("", "")
    assert not token_matches("anything", "")
