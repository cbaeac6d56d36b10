from sip2uc_media.sidecar.protection import Ban, BanList, BanPolicy, NetworkAllowList

POLICY = BanPolicy(threshold=3, window=60.0, ban_seconds=300.0, user_names=4)
SITE = "192.0.2.7"  # a NAT, a DECT base or a multi-port adapter: many handsets, one address


def fail(
    bans: BanList, user: str, times: tuple[float, ...], source: str = SITE
) -> list[Ban | None]:
    return [bans.record_failure(source, user, t) for t in times]


def test_a_user_name_failing_at_the_threshold_bans_only_that_pair() -> None:
    bans = BanList(POLICY)

    results = fail(bans, "1001", (100.0, 110.0, 120.0))

    assert results == [None, None, Ban(SITE, "1001", "3 failed logins in 60 s", 120.0, 420.0)]
    assert bans.is_user_banned(SITE, "1001", 120.0)
    assert not bans.is_user_banned(SITE, "1002", 120.0)
    assert not bans.is_banned(SITE, 120.0)  # the good handsets there are still served


def test_failures_older_than_the_window_do_not_count() -> None:
    bans = BanList(POLICY)

    results = fail(bans, "1001", (0.0, 30.0, 60.0))

    assert results == [None, None, None]
    assert not bans.is_user_banned(SITE, "1001", 60.0)


def test_a_pair_ban_ends_after_ban_seconds() -> None:
    bans = BanList(POLICY)
    fail(bans, "1001", (10.0, 11.0, 12.0))

    assert bans.is_user_banned(SITE, "1001", 311.9)
    assert not bans.is_user_banned(SITE, "1001", 312.0)


def test_many_user_names_failing_from_one_source_ban_the_whole_source() -> None:
    bans = BanList(POLICY)

    results = [bans.record_failure(SITE, f"10{n:02d}", float(n)) for n in range(4)]

    assert results[:3] == [None, None, None]
    assert results[3] == Ban(SITE, "", "4 user names tried in 60 s", 3.0, 303.0)
    assert bans.is_banned(SITE, 3.0)
    assert not bans.is_banned("192.0.2.8", 3.0)


def test_a_source_that_also_logs_in_successfully_is_never_banned_as_a_whole() -> None:
    bans = BanList(POLICY)
    bans.record_success(SITE, "1000", 0.0)

    results = [bans.record_failure(SITE, f"10{n:02d}", float(n)) for n in range(1, 9)]

    assert results == [None] * 8
    assert not bans.is_banned(SITE, 9.0)
    # ... but each failing user name is still banned there once it reaches the threshold.
    assert fail(bans, "1001", (10.0, 11.0))[-1] == Ban(
        SITE, "1001", "3 failed logins in 60 s", 11.0, 311.0
    )


def test_trust_from_a_successful_login_fades_after_trust_seconds() -> None:
    bans = BanList(BanPolicy(threshold=3, window=60.0, user_names=2, trust_seconds=100.0))
    bans.record_success(SITE, "1000", 0.0)

    bans.record_failure(SITE, "1001", 150.0)
    ban = bans.record_failure(SITE, "1002", 151.0)

    assert ban is not None and ban.whole_source


def test_a_successful_login_forgives_that_users_failures_there() -> None:
    bans = BanList(POLICY)
    fail(bans, "1001", (1.0, 2.0))

    bans.record_success(SITE, "1001", 3.0)

    assert fail(bans, "1001", (4.0, 5.0)) == [None, None]


def test_lifting_a_source_ends_its_bans_and_forgets_its_failures() -> None:
    bans = BanList(POLICY)
    fail(bans, "1001", (1.0, 2.0, 3.0))
    fail(bans, "1002", (4.0, 5.0))

    lifted = bans.lift(SITE)

    assert lifted == [Ban(SITE, "1001", "3 failed logins in 60 s", 3.0, 303.0)]
    assert not bans.is_user_banned(SITE, "1001", 6.0)
    assert fail(bans, "1002", (6.0,)) == [None]
    assert bans.lift(SITE) == []


def test_active_bans_are_listed_most_recent_first_and_expire() -> None:
    bans = BanList(POLICY)
    fail(bans, "1001", (1.0, 2.0, 3.0))
    fail(bans, "1002", (4.0, 5.0, 6.0), source="192.0.2.8")

    assert [(b.source, b.user) for b in bans.active(10.0)] == [
        ("192.0.2.8", "1002"),
        (SITE, "1001"),
    ]
    assert bans.banned_count(10.0) == 2
    assert [b.user for b in bans.active(304.0)] == ["1002"]


def test_new_settings_apply_to_later_failures() -> None:
    bans = BanList(POLICY)
    bans.configure(BanPolicy(threshold=1, window=60.0, ban_seconds=5.0))

    assert bans.record_failure(SITE, "1001", 0.0) is not None
    assert not bans.is_user_banned(SITE, "1001", 5.0)


def test_memory_stays_bounded_under_a_flood_of_sources() -> None:
    bans = BanList(POLICY, capacity=100)

    for i in range(1000):
        bans.record_failure(f"10.0.{i // 256}.{i % 256}", "1001", float(i))
        bans.record_success(f"10.1.{i // 256}.{i % 256}", "1001", float(i))

    assert len(bans._failures) == 100
    assert len(bans._users) == 100
    assert len(bans._trusted) == 100


def test_memory_per_source_stays_bounded_under_a_spray_of_user_names() -> None:
    bans = BanList(BanPolicy(threshold=3, window=60.0, user_names=0))

    for i in range(1000):
        bans.record_failure(SITE, f"u{i}", 1.0)

    assert len(bans._users[SITE]) <= 1


def test_an_empty_allow_list_allows_every_source() -> None:
    assert NetworkAllowList().allows("203.0.113.9")


def test_the_allow_list_admits_only_its_networks() -> None:
    allow = NetworkAllowList(["10.10.0.0/16", "2001:db8::/32"])

    assert allow.allows("10.10.3.4")
    assert allow.allows("2001:db8::1")
    assert allow.allows("::ffff:10.10.3.4")
    assert not allow.allows("10.11.0.1")
    assert not allow.allows("not-an-address")
