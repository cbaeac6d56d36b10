from sip2uc_media.sidecar.protection import BanList, BanPolicy, NetworkAllowList

POLICY = BanPolicy(threshold=3, window=60.0, ban_seconds=300.0)


def test_a_source_is_banned_by_the_failure_that_reaches_the_threshold() -> None:
    bans = BanList(POLICY)

    results = [bans.record_failure("192.0.2.7", t) for t in (100.0, 110.0, 120.0)]

    assert results == [False, False, True]
    assert bans.is_banned("192.0.2.7", 120.0)


def test_failures_older_than_the_window_do_not_count() -> None:
    bans = BanList(POLICY)
    bans.record_failure("192.0.2.7", 0.0)
    bans.record_failure("192.0.2.7", 30.0)

    banned = bans.record_failure("192.0.2.7", 60.0)

    assert banned is False
    assert not bans.is_banned("192.0.2.7", 60.0)


def test_a_ban_ends_after_ban_seconds() -> None:
    bans = BanList(POLICY)
    for t in (10.0, 11.0, 12.0):
        bans.record_failure("192.0.2.7", t)

    assert bans.is_banned("192.0.2.7", 311.9)
    assert not bans.is_banned("192.0.2.7", 312.0)


def test_other_sources_are_not_affected_by_a_ban() -> None:
    bans = BanList(POLICY)
    for t in (1.0, 2.0, 3.0):
        bans.record_failure("192.0.2.7", t)

    assert not bans.is_banned("192.0.2.8", 3.0)


def test_new_settings_apply_to_later_failures() -> None:
    bans = BanList(POLICY)
    bans.configure(BanPolicy(threshold=1, window=60.0, ban_seconds=5.0))

    assert bans.record_failure("192.0.2.7", 0.0) is True
    assert not bans.is_banned("192.0.2.7", 5.0)


def test_memory_stays_bounded_under_a_flood_of_sources() -> None:
    bans = BanList(POLICY, capacity=100)

    for i in range(1000):
        bans.record_failure(f"10.0.{i // 256}.{i % 256}", float(i))

    assert len(bans._failures) == 100


def test_an_empty_allow_list_allows_every_source() -> None:
    assert NetworkAllowList().allows("203.0.113.9")


def test_the_allow_list_admits_only_its_networks() -> None:
    allow = NetworkAllowList(["10.10.0.0/16", "2001:db8::/32"])

    assert allow.allows("10.10.3.4")
    assert allow.allows("2001:db8::1")
    assert allow.allows("::ffff:10.10.3.4")
    assert not allow.allows("10.11.0.1")
    assert not allow.allows("not-an-address")
