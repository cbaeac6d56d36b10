"""Account lockout: an account's failed logins counted across sources, its digest locked."""

from __future__ import annotations

from sip2uc_control.lockout import AccountLock, AccountLockout, LockoutPolicy

POLICY = LockoutPolicy(threshold=4, window=60.0, lock_seconds=300.0)


def test_failures_from_several_sources_lock_the_account_at_the_threshold() -> None:
    lockout = AccountLockout(POLICY)

    results = [lockout.failed("1001", f"10.0.0.{n % 3}", float(n)) for n in range(4)]

    assert results[:3] == [None, None, None]
    assert results[3] == AccountLock("1001", "4 failed logins from 3 sources in 60 s", 3.0, 303.0)
    assert lockout.locked("1001", 3.0)
    assert not lockout.locked("1002", 3.0)


def test_failures_older_than_the_window_do_not_count() -> None:
    lockout = AccountLockout(POLICY)

    results = [lockout.failed("1001", "10.0.0.1", t) for t in (0.0, 30.0, 60.0, 61.0)]

    assert results == [None, None, None, None]


def test_a_lock_ends_after_lock_seconds() -> None:
    lockout = AccountLockout(POLICY)
    for n in range(4):
        lockout.failed("1001", "10.0.0.1", float(n))

    assert lockout.locked("1001", 302.9)
    assert not lockout.locked("1001", 303.0)
    assert lockout.active(303.0) == []


def test_one_source_is_named_in_the_singular() -> None:
    lockout = AccountLockout(POLICY)

    lock = [lockout.failed("1001", "10.0.0.1", float(n)) for n in range(4)][-1]

    assert lock is not None
    assert lock.reason == "4 failed logins from 1 source in 60 s"


def test_lifting_unlocks_and_clears_the_count() -> None:
    lockout = AccountLockout(POLICY)
    for n in range(4):
        lockout.failed("1001", "10.0.0.1", float(n))

    lifted = lockout.lift("1001")

    assert lifted is not None and lifted.user == "1001"
    assert not lockout.locked("1001", 5.0)
    assert lockout.failed("1001", "10.0.0.1", 6.0) is None
    assert lockout.lift("1001") is None


def test_failures_while_locked_do_not_extend_the_lock() -> None:
    lockout = AccountLockout(POLICY)
    for n in range(4):
        lockout.failed("1001", "10.0.0.1", float(n))

    assert lockout.failed("1001", "10.0.0.1", 100.0) is None
    assert [lock.until for lock in lockout.active(100.0)] == [303.0]
