"""The RFC 3903 publication state machine: which PUBLISH goes out, and what each answer does."""

from __future__ import annotations

from sip2uc_connectors.sip_presence.publication import (
    Outcome,
    Publication,
    PublishRequest,
    RequestKind,
    classify,
)

DOC = b"<presence/>"
DOC2 = b"<presence>2</presence>"


def published(expires: int = 600, spread: float = 0.5, etag: str = "e1") -> Publication:
    pub = Publication(expires, spread)
    pub.set_body(DOC)
    assert pub.next_request(0.0) == PublishRequest(RequestKind.INITIAL, DOC, None, expires, 1)
    assert pub.on_outcome(Outcome.SUCCESS, 0.0, etag=etag, expires=expires)
    return pub


def test_initial_publish_carries_the_body_and_no_condition() -> None:
    pub = Publication(600, 0.5)
    assert pub.next_request(0.0) is None  # nothing wanted yet
    assert pub.set_body(DOC) == 1
    assert pub.next_request(0.0) == PublishRequest(RequestKind.INITIAL, DOC, None, 600, 1)
    assert pub.next_request(0.0) is None  # one request in flight at a time


def test_a_2xx_makes_the_generation_current_and_keeps_the_entity_tag() -> None:
    pub = published()
    assert (pub.etag, pub.expires_at, pub.settled) == ("e1", 600.0, 1)


def test_refresh_is_due_at_the_spread_fraction_of_the_granted_interval() -> None:
    early = published(spread=0.0)
    late = published(spread=1.0)
    middle = published(spread=0.5)
    assert (early.refresh_at, middle.refresh_at, late.refresh_at) == (300.0, 420.0, 540.0)
    assert middle.deadline() == 420.0
    assert middle.next_request(419.9) is None
    assert middle.next_request(420.0) == PublishRequest(RequestKind.REFRESH, None, "e1", 600, 1)


def test_refresh_comes_before_expiry_even_for_short_intervals() -> None:
    # 90 % of 8 s would leave 0.8 s for the refresh to arrive: it goes at half the interval.
    assert published(expires=8, spread=1.0).refresh_at == 4.0
    assert published(expires=60, spread=1.0).refresh_at == 54.0


def test_a_server_that_grants_less_is_refreshed_within_what_it_granted() -> None:
    pub = Publication(3600, 0.5)
    pub.set_body(DOC)
    pub.next_request(0.0)
    pub.on_outcome(Outcome.SUCCESS, 0.0, etag="e1", expires=120)
    assert (pub.expires_at, pub.refresh_at) == (120.0, 84.0)


def test_refresh_uses_the_latest_entity_tag() -> None:
    pub = published()
    pub.next_request(420.0)
    pub.on_outcome(Outcome.SUCCESS, 420.0, etag="e2", expires=600)
    pub.set_body(DOC2)
    assert pub.next_request(421.0) == PublishRequest(RequestKind.MODIFY, DOC2, "e2", 600, 2)


def test_a_change_modifies_with_the_entity_tag_and_the_new_body() -> None:
    pub = published()
    assert pub.set_body(DOC2) == 2
    assert pub.next_request(10.0) == PublishRequest(RequestKind.MODIFY, DOC2, "e1", 600, 2)


def test_the_same_body_again_is_no_new_generation() -> None:
    pub = published()
    assert pub.set_body(DOC) == 1
    assert pub.next_request(10.0) is None


def test_412_to_a_modify_starts_over_with_a_full_publish() -> None:
    pub = published()
    pub.set_body(DOC2)
    pub.next_request(10.0)
    assert not pub.on_outcome(Outcome.CONDITIONAL_FAILED, 10.0)
    assert pub.etag is None
    assert pub.next_request(10.0) == PublishRequest(RequestKind.INITIAL, DOC2, None, 600, 2)


def test_412_to_a_refresh_republishes_the_current_document() -> None:
    pub = published()
    pub.next_request(420.0)
    pub.on_outcome(Outcome.CONDITIONAL_FAILED, 420.0)
    assert pub.next_request(420.0) == PublishRequest(RequestKind.INITIAL, DOC, None, 600, 1)


def test_kamailios_500_to_a_stale_entity_tag_counts_as_412() -> None:
    assert classify(500, conditional=True) is Outcome.CONDITIONAL_FAILED
    assert classify(412, conditional=True) is Outcome.CONDITIONAL_FAILED
    assert classify(500, conditional=False) is Outcome.FAILURE


def test_a_500_to_an_initial_publish_is_retried_after_a_growing_delay() -> None:
    pub = Publication(600, 0.5)
    pub.set_body(DOC)
    pub.next_request(0.0)
    pub.on_outcome(classify(500, conditional=False), 0.0)
    assert pub.deadline() == 1.0
    assert pub.next_request(0.5) is None
    assert pub.next_request(1.0) == PublishRequest(RequestKind.INITIAL, DOC, None, 600, 1)
    pub.on_outcome(Outcome.FAILURE, 1.0)
    assert pub.deadline() == 3.0
    pub.next_request(3.0)
    pub.on_outcome(Outcome.FAILURE, 3.0)
    assert pub.deadline() == 7.0


def test_423_raises_expires_to_the_servers_minimum_and_asks_again() -> None:
    pub = Publication(60, 0.5)
    pub.set_body(DOC)
    pub.next_request(0.0)
    assert classify(423, conditional=False) is Outcome.INTERVAL_TOO_BRIEF
    pub.on_outcome(Outcome.INTERVAL_TOO_BRIEF, 0.0, min_expires=300)
    assert pub.next_request(0.0) == PublishRequest(RequestKind.INITIAL, DOC, None, 300, 1)


def test_removal_sends_expires_zero_with_the_entity_tag() -> None:
    pub = published()
    assert pub.set_body(None) == 2
    assert pub.next_request(5.0) == PublishRequest(RequestKind.REMOVE, None, "e1", 0, 2)
    assert pub.on_outcome(Outcome.SUCCESS, 5.0)
    assert pub.etag is None and pub.idle


def test_removing_what_the_server_no_longer_has_is_done() -> None:
    pub = published()
    pub.set_body(None)
    pub.next_request(5.0)
    assert pub.on_outcome(Outcome.CONDITIONAL_FAILED, 5.0)
    assert pub.idle


def test_nothing_published_and_nothing_wanted_needs_no_request() -> None:
    pub = Publication(600, 0.5)
    pub.set_body(None)
    assert pub.next_request(0.0) is None
    assert pub.settled == pub.generation and pub.idle


def test_489_gives_up_until_a_new_document_is_wanted() -> None:
    pub = Publication(600, 0.5)
    pub.set_body(DOC)
    pub.next_request(0.0)
    pub.on_outcome(classify(489, conditional=False), 0.0)
    assert pub.given_up and pub.next_request(100.0) is None and pub.deadline() is None


def test_a_2xx_without_sip_etag_is_a_failure() -> None:
    pub = Publication(600, 0.5)
    pub.set_body(DOC)
    pub.next_request(0.0)
    assert not pub.on_outcome(Outcome.SUCCESS, 0.0, etag=None)
    assert pub.retry_at == 1.0


def test_a_publication_that_expired_unrefreshed_starts_over() -> None:
    pub = published()
    pub.next_request(420.0)
    pub.on_outcome(Outcome.FAILURE, 420.0)  # the refresh got no answer
    pub.retry_at = None
    assert pub.next_request(601.0) == PublishRequest(RequestKind.INITIAL, DOC, None, 600, 1)


def test_a_restored_entity_tag_is_refreshed_and_modified_not_duplicated() -> None:
    pub = Publication(600, 0.5)
    pub.restore("saved", 1000.0, now=500.0)
    assert pub.next_request(500.0) is None  # nothing changed: the old document stays
    assert pub.deadline() == 990.0
    assert pub.next_request(990.0) == PublishRequest(RequestKind.REFRESH, None, "saved", 600, 0)
    pub.on_outcome(Outcome.SUCCESS, 990.0, etag="e2", expires=600)
    pub.set_body(DOC)
    assert pub.next_request(991.0) == PublishRequest(RequestKind.MODIFY, DOC, "e2", 600, 1)


def test_an_expired_saved_entity_tag_is_not_adopted() -> None:
    pub = Publication(600, 0.5)
    pub.restore("saved", 1000.0, now=2000.0)
    pub.set_body(DOC)
    assert pub.next_request(2000.0) == PublishRequest(RequestKind.INITIAL, DOC, None, 600, 1)


def test_a_restored_publication_of_a_user_now_gone_is_removed() -> None:
    pub = Publication(600, 0.5)
    pub.restore("saved", 1000.0, now=500.0)
    pub.set_body(None)
    assert pub.next_request(500.0) == PublishRequest(RequestKind.REMOVE, None, "saved", 0, 1)


def test_a_change_while_a_request_is_in_flight_follows_it() -> None:
    pub = published()
    pub.set_body(DOC2)
    first = pub.next_request(1.0)
    pub.set_body(DOC)
    assert pub.next_request(1.0) is None
    assert first is not None
    pub.on_outcome(Outcome.SUCCESS, 1.0, etag="e2", expires=600)
    assert pub.settled == 2
    assert pub.next_request(1.0) == PublishRequest(RequestKind.MODIFY, DOC, "e2", 600, 3)
