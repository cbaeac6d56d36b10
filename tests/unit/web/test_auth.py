"""Who may read the state view."""

from __future__ import annotations

import pytest
from sip2uc_web.auth import Gate, Verdict, session_value

TOKEN = "k3Ff-admin-token"


def test_on_loopback_no_credentials_are_needed_but_a_wrong_token_is_refused() -> None:
    gate = Gate(TOKEN, loopback=True)
    assert not gate.required
    assert gate.check(None, None) is Verdict.ALLOW
    assert gate.check(f"Bearer {TOKEN}", None) is Verdict.ALLOW
    assert gate.check("Bearer nope", None) is Verdict.WRONG
    # A cookie from an older token is as good as none there.
    assert gate.check(None, session_value("an-old-token")) is Verdict.ALLOW


def test_elsewhere_the_token_or_the_session_cookie_is_required() -> None:
    gate = Gate(TOKEN, loopback=False)
    assert gate.required
    assert gate.check(None, None) is Verdict.MISSING
    assert gate.check("Bearer nope", None) is Verdict.WRONG
    assert gate.check(f"bearer   {TOKEN} ", None) is Verdict.ALLOW
    assert gate.check(f"Basic {TOKEN}", None) is Verdict.WRONG
    assert gate.check(None, "forged") is Verdict.WRONG
    assert gate.check(None, session_value(TOKEN)) is Verdict.ALLOW
    # A wrong bearer token is not rescued by a good cookie.
    assert gate.check("Bearer nope", session_value(TOKEN)) is Verdict.WRONG


def test_signing_in_gives_a_session_value_that_is_not_the_token() -> None:
    gate = Gate(TOKEN, loopback=False)
    assert gate.login("nope") is None
    assert gate.login("") is None
    session = gate.login(f" {TOKEN}\n")
    assert session == session_value(TOKEN)
    assert TOKEN not in session
    assert session != session_value(TOKEN + "x")


def test_a_view_off_loopback_cannot_run_without_a_token() -> None:
    with pytest.raises(ValueError, match="needs the admin token"):
        Gate(None, loopback=False)


def test_a_loopback_view_without_a_known_token_lets_everyone_in() -> None:
    gate = Gate(None, loopback=True)
    assert gate.check("Bearer anything", None) is Verdict.ALLOW
    assert gate.login("anything") is None


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8080", True),
        ("127.0.0.1", True),
        ("[::1]:8080", True),
        ("localhost:8080", True),
        ("evil.example", False),
        ("evil.example:8080", False),
        ("127.0.0.1.evil.example", False),
        ("192.0.2.1:8080", False),
        ("", False),
        ("[::1", False),
    ],
)
def test_a_loopback_view_answers_loopback_host_names_only(host: str, allowed: bool) -> None:
    assert Gate(TOKEN, loopback=True).host_allowed(host) is allowed
    assert Gate(TOKEN, loopback=False).host_allowed(host) is True
