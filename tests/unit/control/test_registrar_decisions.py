"""The registrar's decisions (RFC 3261 §10.3), made from a REGISTER, the user directory, the
bindings a device has and the time: no server, no database."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sip2uc_control import registrar
from sip2uc_control.bindings import Binding
from sip2uc_control.domain import User
from sip2uc_control.registrar import (
    Outcome,
    RegisterDecision,
    RegisterInput,
    authenticate,
)
from sip2uc_control.settings import ServerSettings
from sip2uc_control.users import UserDirectory
from sip2uc_core.sip.contact import Contact
from sip2uc_core.sip.digest import Algorithm, Credentials
from sip2uc_core.sip.endpoint import Endpoint, Transport

from .in_memory import DOMAIN, digest, make_user

NOW = 1_000_000.0
SETTINGS = ServerSettings()  # min_expires 60, max_expires 7200, 5 bindings per device
HANDSET = "sip:201@10.0.0.7:5060"


@pytest.fixture
def users() -> UserDirectory:
    directory = UserDirectory()
    directory.index.add(make_user("201"))
    directory.index.add(make_user("202"))
    return directory


def register(
    *contacts: tuple[str, int],
    user: str = "201",
    credentials: Credentials | None = None,
    remove_all: bool = False,
    call_id: str = "reg-1",
    cseq: int = 1,
    source: tuple[str, int] = ("10.0.0.7", 40123),
    instance_id: str = "",
) -> RegisterInput:
    """A REGISTER from `user`'s handset behind sidecar "vlan10"."""
    return RegisterInput(
        credentials=credentials or digest(user),
        aor=f"sip:{user}@{DOMAIN}",
        contacts=tuple(Contact(uri, expires, instance_id=instance_id) for uri, expires in contacts),
        remove_all=remove_all,
        cseq=cseq,
        call_id=call_id,
        source=Endpoint(Transport.UDP, *source),
        sidecar="vlan10",
        user_agent="DECT base 1.0",
    )


def decide(
    inp: RegisterInput,
    users: UserDirectory,
    existing: list[Binding],
    settings: ServerSettings,
    now: float,
) -> RegisterDecision:
    """What the core does with a REGISTER (without its account lockout): verify the
    credentials, then decide."""
    found = authenticate(users, inp.credentials, settings.realm, "REGISTER")
    return registrar.decide(inp, found, existing, settings, now)


def bindings_after(decision: RegisterDecision, existing: list[Binding]) -> list[Binding]:
    """The device's bindings once the decision is applied."""
    gone = {b.id for b in decision.removals} | {b.id for b in decision.upserts}
    return [b for b in existing if b.id not in gone] + decision.upserts


# --- new, refreshed, removed bindings ------------------------------------------------------------


def test_a_first_register_adds_a_binding_that_expires_after_the_asked_interval(
    users: UserDirectory,
) -> None:
    decision = decide(register((HANDSET, 600)), users, [], SETTINGS, NOW)

    assert (decision.outcome, decision.removals) == (Outcome.OK, [])
    (binding,) = decision.upserts
    assert (binding.user_id, binding.device_id, binding.aor) == (
        "u201",
        "device-1",
        f"sip:201@{DOMAIN}",
    )
    assert (binding.contact_uri, binding.source_host, binding.source_port, binding.sidecar) == (
        HANDSET,
        "10.0.0.7",
        40123,
        "vlan10",
    )
    assert (binding.create_time, binding.refresh_time, binding.expire_time) == (NOW, NOW, NOW + 600)


def test_a_refresh_keeps_the_binding_and_moves_its_expiry_and_source(users: UserDirectory) -> None:
    (first,) = decide(register((HANDSET, 600)), users, [], SETTINGS, NOW).upserts

    later = NOW + 300
    refresh = register((HANDSET, 600), cseq=2, source=("10.0.0.7", 40999))
    (refreshed,) = decide(refresh, users, [first], SETTINGS, later).upserts

    assert refreshed.id == first.id
    assert (refreshed.create_time, refreshed.refresh_time, refreshed.expire_time) == (
        NOW,
        later,
        later + 600,
    )
    assert (refreshed.source_port, refreshed.cseq) == (40999, 2)  # moved behind its NAT


def test_expires_zero_removes_that_binding_only(users: UserDirectory) -> None:
    other = "sip:201@10.0.0.8:5060"
    existing = decide(register((HANDSET, 600), (other, 600)), users, [], SETTINGS, NOW).upserts

    decision = decide(register((other, 0), cseq=2), users, existing, SETTINGS, NOW + 1)

    assert decision.outcome is Outcome.OK
    assert [b.contact_uri for b in bindings_after(decision, existing)] == [HANDSET]


def test_a_contact_above_max_expires_is_bound_for_max_expires(users: UserDirectory) -> None:
    (binding,) = decide(register((HANDSET, 86400)), users, [], SETTINGS, NOW).upserts

    assert binding.expire_time == NOW + SETTINGS.max_expires


def test_the_same_instance_id_with_a_new_contact_replaces_its_binding(users: UserDirectory) -> None:
    instance = "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"
    existing = decide(
        register((HANDSET, 600), instance_id=instance), users, [], SETTINGS, NOW
    ).upserts

    moved = register(("sip:201@10.0.0.9:5060", 600), cseq=2, instance_id=instance)
    decision = decide(moved, users, existing, SETTINGS, NOW + 1)

    assert [b.contact_uri for b in bindings_after(decision, existing)] == ["sip:201@10.0.0.9:5060"]


def test_contact_star_removes_every_binding_of_the_device(users: UserDirectory) -> None:
    existing = decide(
        register((HANDSET, 600), ("sip:201@10.0.0.8", 600)), users, [], SETTINGS, NOW
    ).upserts

    decision = decide(register(remove_all=True, cseq=2), users, existing, SETTINGS, NOW + 1)

    assert decision.outcome is Outcome.OK
    assert (decision.upserts, decision.removals) == ([], existing)


def test_contact_star_leaves_other_devices_bindings_alone(users: UserDirectory) -> None:
    mine = decide(register((HANDSET, 600)), users, [], SETTINGS, NOW).upserts
    desk_phone = replace(mine[0], id="other", device_id="device-2", contact_uri="sip:201@10.0.0.9")

    decision = decide(register(remove_all=True, cseq=2), users, [*mine, desk_phone], SETTINGS, NOW)

    assert decision.removals == mine


# --- 423 and the binding limit -------------------------------------------------------------------


def test_an_expiry_below_min_expires_is_423_with_the_minimum(users: UserDirectory) -> None:
    decision = decide(register((HANDSET, 59)), users, [], SETTINGS, NOW)

    assert (decision.outcome, decision.min_expires) == (Outcome.INTERVAL_TOO_BRIEF, 60)
    assert decision.upserts == []


def test_expires_zero_is_never_too_brief(users: UserDirectory) -> None:
    existing = decide(register((HANDSET, 600)), users, [], SETTINGS, NOW).upserts

    decision = decide(register((HANDSET, 0), cseq=2), users, existing, SETTINGS, NOW)

    assert (decision.outcome, decision.removals) == (Outcome.OK, existing)


def test_one_too_brief_contact_refuses_the_whole_register(users: UserDirectory) -> None:
    decision = decide(register((HANDSET, 600), ("sip:201@10.0.0.8", 30)), users, [], SETTINGS, NOW)

    assert (decision.outcome, decision.upserts) == (Outcome.INTERVAL_TOO_BRIEF, [])


def test_more_bindings_than_the_device_may_have_are_refused(users: UserDirectory) -> None:
    five = [(f"sip:201@10.0.0.{n}", 600) for n in range(1, 6)]
    existing = decide(register(*five), users, [], SETTINGS, NOW).upserts
    assert len(existing) == 5

    sixth = decide(register(("sip:201@10.0.0.6", 600), cseq=2), users, existing, SETTINGS, NOW)

    assert (sixth.outcome, sixth.reason) == (
        Outcome.TOO_MANY_BINDINGS,
        "Too many bindings (at most 5)",
    )


def test_removing_a_binding_in_the_same_register_makes_room(users: UserDirectory) -> None:
    five = [(f"sip:201@10.0.0.{n}", 600) for n in range(1, 6)]
    existing = decide(register(*five), users, [], SETTINGS, NOW).upserts

    swap = register(("sip:201@10.0.0.1", 0), ("sip:201@10.0.0.6", 600), cseq=2)
    decision = decide(swap, users, existing, SETTINGS, NOW)

    assert decision.outcome is Outcome.OK
    assert len(bindings_after(decision, existing)) == 5


def test_a_device_limit_overrides_the_server_limit() -> None:
    users = UserDirectory()
    users.index.add(make_user("201", max_bindings=1))

    decision = decide(register((HANDSET, 600), ("sip:201@10.0.0.8", 600)), users, [], SETTINGS, NOW)

    assert (decision.outcome, decision.reason) == (
        Outcome.TOO_MANY_BINDINGS,
        "Too many bindings (at most 1)",
    )


# --- CSeq order ----------------------------------------------------------------------------------


@pytest.mark.parametrize("late_cseq", [10, 9])
def test_a_late_register_on_the_same_call_id_changes_nothing(
    users: UserDirectory, late_cseq: int
) -> None:
    existing = decide(register((HANDSET, 600), cseq=10), users, [], SETTINGS, NOW).upserts

    late = decide(register((HANDSET, 0), cseq=late_cseq), users, existing, SETTINGS, NOW + 1)
    star = decide(register(remove_all=True, cseq=late_cseq), users, existing, SETTINGS, NOW + 1)

    for decision in (late, star):
        assert (decision.outcome, decision.reason) == (Outcome.OUT_OF_ORDER, "Out-of-order CSeq")
        assert (decision.upserts, decision.removals) == ([], [])


def test_a_lower_cseq_on_another_call_id_is_a_new_registration_not_a_late_one(
    users: UserDirectory,
) -> None:
    existing = decide(register((HANDSET, 600), cseq=10), users, [], SETTINGS, NOW).upserts

    rebooted = register((HANDSET, 600), call_id="reg-after-reboot", cseq=1)
    decision = decide(rebooted, users, existing, SETTINGS, NOW + 1)

    assert decision.outcome is Outcome.OK
    assert [(b.call_id, b.cseq) for b in decision.upserts] == [("reg-after-reboot", 1)]


# --- who may register ----------------------------------------------------------------------------


def test_sha256_credentials_are_checked_against_the_sha256_ha1(users: UserDirectory) -> None:
    creds = digest("201", algorithm=Algorithm.SHA_256)

    decision = decide(register((HANDSET, 600), credentials=creds), users, [], SETTINGS, NOW)

    assert decision.outcome is Outcome.OK


@pytest.mark.parametrize(
    "credentials",
    [
        digest("201", "wrong-password"),
        digest("999"),  # nobody has that digest user name
        digest("201", realm="another-realm"),
        digest("201", "wrong-password", algorithm=Algorithm.SHA_256),
        replace(digest("201"), response="0" * 32),
    ],
    ids=["wrong password", "unknown user", "wrong realm", "wrong SHA-256", "forged response"],
)
def test_every_digest_failure_gives_the_same_answer_after_the_same_work(
    users: UserDirectory, credentials: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[int] = []
    real_verify = registrar.verify_response

    def counting(ha1: str, creds: Credentials, method: str) -> bool:
        checks.append(len(ha1))
        return real_verify(ha1, creds, method)

    monkeypatch.setattr(registrar, "verify_response", counting)
    decision = decide(register((HANDSET, 600), credentials=credentials), users, [], SETTINGS, NOW)

    assert decision == RegisterDecision(Outcome.UNAUTHORIZED, "Unauthorized")
    # One digest computation with an HA1 of the credentials' hash size, known user or not.
    assert checks == [credentials.algorithm.hexdigest_length]


def test_a_disabled_user_is_forbidden(users: UserDirectory) -> None:
    alice = users.get("u201")
    assert alice is not None
    users.index.add(replace(alice, disabled=True))

    decision = decide(register((HANDSET, 600)), users, [], SETTINGS, NOW)

    assert (decision.outcome, decision.reason) == (Outcome.FORBIDDEN, "User disabled")


def test_registering_another_users_address_of_record_is_forbidden(users: UserDirectory) -> None:
    theirs = replace(register((HANDSET, 600)), aor=f"sip:202@{DOMAIN}")

    decision = decide(theirs, users, [], SETTINGS, NOW)

    assert (decision.outcome, decision.reason) == (
        Outcome.FORBIDDEN,
        "Address of record does not belong to you",
    )


@pytest.mark.parametrize("aor_user", ["201", "alice", "+4989123456"])
def test_the_address_of_record_may_be_the_extension_alias_or_number(aor_user: str) -> None:
    users = UserDirectory()
    alice: User = replace(make_user("201"), sip_uri=f"sip:alice@{DOMAIN}", e164="+4989123456")
    users.index.add(alice)

    decision = decide(
        replace(register((HANDSET, 600)), aor=f"sip:{aor_user}@{DOMAIN}"), users, [], SETTINGS, NOW
    )

    assert decision.outcome is Outcome.OK
