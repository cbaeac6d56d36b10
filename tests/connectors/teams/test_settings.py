"""The Teams bridge's settings and small rules: mapping tables and overrides, configuration
(authority, scope, secret files), Retry-After, backoff, the request budget, durations."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sip2uc_connectors.teams import (
    Availability,
    ClientSecret,
    ConfigError,
    GraphPair,
    MappingError,
    OutboundPresence,
    TeamsConfig,
    TeamsMapping,
)
from sip2uc_connectors.teams.budget import RequestBudget
from sip2uc_connectors.teams.graph_calls import get_presences, iso_duration
from sip2uc_connectors.teams.mapping import PREFERRED_PAIRS, SESSION_PAIRS
from sip2uc_connectors.teams.retry import Backoff, parse_retry_after
from sip2uc_connectors.teams.sync import SyncTiming

TENANT = "72f988bf-0000-4000-8000-00000000cafe"
APP = "22553876-f5ab-4529-bffb-cfe50aa89f87"


def make_config(**changes: object) -> TeamsConfig:
    values: dict[str, object] = {
        "tenant_id": TENANT,
        "client_id": APP,
        "credential": ClientSecret("x"),
    }
    values.update(changes)
    return TeamsConfig(**values)  # type: ignore[arg-type]


def test_default_tables_only_hold_pairs_graph_accepts() -> None:
    mapping = TeamsMapping()
    assert {p for p in mapping.session.values() if p} <= SESSION_PAIRS
    assert {p for p in mapping.preferred.values() if p} <= PREFERRED_PAIRS
    assert set(mapping.session) == set(Availability) == set(mapping.preferred)


def test_an_override_with_a_pair_graph_refuses_names_the_allowed_ones() -> None:
    with pytest.raises(
        MappingError,
        match=r"session\.ringing: Busy/Busy is not an availability/activity pair setPresence accepts \(Available/Available, Away/Away",
    ):
        TeamsMapping.from_overrides({"session": {"ringing": "Busy/Busy"}})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sessions": {}}, "unknown mapping tables"),
        ({"session": {"ring": "Busy/InACall"}}, "'ring' is not a sip2uc state"),
        ({"preferred": {"busy": "Busy"}}, "is not 'Availability/Activity' or null"),
        ({"inbound": {"Bussy": "busy"}}, "not Teams availability values"),
    ],
)
def test_malformed_overrides_are_refused(
    overrides: dict[str, dict[str, object]], message: str
) -> None:
    with pytest.raises(MappingError, match=message):
        TeamsMapping.from_overrides(overrides)


def test_overrides_replace_single_entries() -> None:
    mapping = TeamsMapping.from_overrides(
        {
            "session": {"ringing": "Busy/InACall"},
            "preferred": {"busy": None},
            "inbound": {"Away": None},
        }
    )
    assert mapping.session_pair(Availability.RINGING) == GraphPair("Busy", "InACall")
    assert mapping.preferred_pair(Availability.BUSY) is None
    assert mapping.from_teams("Away") is None
    assert mapping.from_teams("DoNotDisturb") is Availability.DO_NOT_DISTURB
    assert mapping.from_teams("SomethingNew") is None


@pytest.mark.parametrize(
    ("token_url", "authority"),
    [
        ("https://login.microsoftonline.com", f"https://login.microsoftonline.com/{TENANT}"),
        ("https://login.microsoftonline.us/", f"https://login.microsoftonline.us/{TENANT}"),
        (
            f"https://login.microsoftonline.us/{TENANT}/oauth2/v2.0/token",
            f"https://login.microsoftonline.us/{TENANT}",
        ),
        ("https://127.0.0.1:8443", f"https://127.0.0.1:8443/{TENANT}"),
    ],
)
def test_the_token_url_is_a_login_host_or_the_tenants_token_endpoint(
    token_url: str, authority: str
) -> None:
    assert make_config(token_url=token_url).authority() == authority


@pytest.mark.parametrize(
    ("graph_url", "root", "scope"),
    [
        (
            "https://graph.microsoft.com",
            "https://graph.microsoft.com/v1.0",
            "https://graph.microsoft.com/.default",
        ),
        (
            "https://graph.microsoft.us/v1.0/",
            "https://graph.microsoft.us/v1.0",
            "https://graph.microsoft.us/.default",
        ),
        (
            "https://127.0.0.1:9443",
            "https://127.0.0.1:9443/v1.0",
            "https://127.0.0.1:9443/.default",
        ),
    ],
)
def test_the_scope_follows_the_graph_host(graph_url: str, root: str, scope: str) -> None:
    config = make_config(graph_url=graph_url)
    assert (config.graph_root, config.scope) == (root, scope)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"graph_url": "http://graph.microsoft.com"}, "must be an https:// URL"),
        (
            {"token_url": "https://login.microsoftonline.com/other/oauth2/v2.0/token"},
            "names tenant 'other'",
        ),
        ({"token_url": "https://login.microsoftonline.com/x/y"}, "neither a login host"),
        ({"tenant_id": "a/b"}, "not a directory or application id"),
        ({"client_id": ""}, "not a directory or application id"),
        ({"request_timeout": 0}, "request_timeout must be positive"),
    ],
)
def test_bad_configuration_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(**changes)


def test_the_secret_never_shows_in_a_repr() -> None:
    config = make_config(credential=ClientSecret("hunter2-very-secret"))
    assert "hunter2" not in repr(config) and "hunter2" not in repr(config.credential)


def test_a_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by others .*chmod 600"):
        ClientSecret.from_file(secret)
    secret.chmod(0o600)
    assert ClientSecret.from_file(secret).value == "s3cret"


def test_a_missing_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"client secret file .*No such file"):
        ClientSecret.from_file(tmp_path / "missing")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"session_expiration": 299}, "PT5M-PT4H"),
        ({"session_expiration": 14401}, "PT5M-PT4H"),
        ({"available_keepalive": 300}, "below Graph's 300 s timeout"),
        ({"poll_batch": 651}, "poll_batch must be 1-650"),
        ({"refresh_margin": 900}, "shorter than session_expiration"),
    ],
)
def test_timing_outside_graphs_limits_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyncTiming(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("user_id", ["", "a/b", " padded", "x?y", "a#b"])
def test_user_ids_that_cannot_be_a_path_segment_are_refused(user_id: str) -> None:
    with pytest.raises(ValueError, match="not an Entra object id or UPN"):
        OutboundPresence(user_id=user_id, automatic=Availability.AVAILABLE)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2.128", 2.128),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("99999999", 3600.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("-5", 0.0),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(value: str | None, seconds: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(value, now_epoch=now) == seconds


def test_backoff_waits_between_half_and_all_of_the_doubling_ceiling() -> None:
    backoff = Backoff(base=1.0, factor=2.0, cap=8.0, rng=random.Random(1))
    for attempt, ceiling in enumerate([1.0, 2.0, 4.0, 8.0, 8.0, 8.0]):
        for _ in range(20):
            assert ceiling / 2 <= backoff.delay(attempt) <= ceiling


def test_budget_counts_a_sliding_window() -> None:
    budget = RequestBudget(limit=2, window=30.0)
    budget.spend(0.0)
    budget.spend(10.0)
    assert not budget.available(29.9)
    assert budget.next_free(29.9) == 30.0
    assert budget.available(30.0)
    budget.spend(30.0)
    with pytest.raises(RuntimeError):
        budget.spend(30.0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(300, "PT5M"), (900, "PT15M"), (3600, "PT1H"), (14400, "PT4H"), (3725, "PT1H2M5S")],
)
def test_durations_are_iso_8601(seconds: int, text: str) -> None:
    assert iso_duration(seconds) == text


def test_a_poll_request_refuses_more_than_650_ids() -> None:
    with pytest.raises(ValueError, match="1-650 ids"):
        get_presences([f"id{i}" for i in range(651)], now=0.0)
