"""Calls over trunks to the UC platform: choosing a trunk, failing over, and calls coming in.

The call layer runs over in-memory stores (`in_memory.CallLayer`); trunk health is what a
sidecar would report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from sip2uc_control.calls import InviteInput, LegReport
from sip2uc_control.calls.commands import CreateLeg, EndLeg
from sip2uc_control.calls.model import LegState
from sip2uc_control.settings import ServerSettings
from sip2uc_control.trunk_registry import TrunkReport
from sip2uc_control.trunks import IdentityPolicy, NumberFormat, Trunk

from .in_memory import CallLayer, Sidecars, make_user, media

NUMBER = "+4930123456"


@pytest.fixture
async def layer() -> AsyncIterator[CallLayer]:
    calls = CallLayer(sidecars=Sidecars("s1", "edge"), settings=ServerSettings(default_region="DE"))
    yield calls
    await calls.presence.drain()


def add_trunk(layer: CallLayer, trunk_id: str, **fields: Any) -> Trunk:
    trunk = Trunk(id=trunk_id, address=fields.pop("address", "192.0.2.10"), sidecar="edge")
    trunk = replace(trunk, **fields)
    layer.trunk_records.by_id[trunk_id] = trunk
    return trunk


def trunk_legs(layer: CallLayer) -> list[CreateLeg]:
    return [c for _, c in layer.sidecars.take() if isinstance(c, CreateLeg)]


async def fail(layer: CallLayer, call_id: str, leg_id: str, status: int) -> None:
    await layer.controller.report_leg(
        LegReport(
            sidecar="edge", call_id=call_id, leg_id=leg_id, state=LegState.FAILED, status=status
        )
    )


def from_address(host: str, port: int, dialled: str, *, leg_id: str = "T") -> InviteInput:
    return InviteInput(
        sidecar="edge",
        leg_id=leg_id,
        credentials=None,
        source_host=host,
        source_port=port,
        request_uri=f"sip:{dialled}@sip2uc.example",
        from_uri="sip:+4930999@uc.example",
        from_display_name="",
        to_uri=f"sip:{dialled}@sip2uc.example",
        offer=media(31000, "PCMA", 8),
    )


# --- out ----------------------------------------------------------------------------------------


async def test_a_number_goes_to_the_trunk_of_lowest_priority_whose_pattern_matches(
    layer: CallLayer,
) -> None:
    add_trunk(layer, "mobile", outbound_pattern=r"\+491.*", priority=0)
    add_trunk(layer, "backup", priority=20)
    add_trunk(layer, "main", priority=10)
    alice = layer.add_user(make_user("201"))

    outcome = await layer.invite(alice, NUMBER)

    assert outcome.disposition == "routing"
    (leg,) = trunk_legs(layer)
    assert (leg.trunk_id, leg.request_uri, leg.host, leg.port) == (
        "main",
        f"sip:{NUMBER}@192.0.2.10:5060",
        "192.0.2.10",
        5060,
    )


async def test_a_5xx_or_timeout_fails_over_to_the_next_trunk_and_a_486_does_not(
    layer: CallLayer,
) -> None:
    add_trunk(layer, "a", priority=1)
    add_trunk(layer, "b", priority=2, address="192.0.2.20")
    add_trunk(layer, "c", priority=3, address="192.0.2.30")
    alice = layer.add_user(make_user("201"))
    outcome = await layer.invite(alice, NUMBER)
    (first,) = trunk_legs(layer)

    await fail(layer, outcome.call_id, first.leg_id, 503)
    (second,) = trunk_legs(layer)
    await fail(layer, outcome.call_id, second.leg_id, 408)
    (third,) = trunk_legs(layer)
    await fail(layer, outcome.call_id, third.leg_id, 486)

    assert [first.trunk_id, second.trunk_id, third.trunk_id] == ["a", "b", "c"]
    (end,) = [c for _, c in layer.sidecars.take() if isinstance(c, EndLeg)]
    assert (end.leg_id, end.status) == ("A", 486)


async def test_a_trunk_reported_down_or_on_a_lost_sidecar_is_skipped(layer: CallLayer) -> None:
    add_trunk(layer, "a", priority=1)
    add_trunk(layer, "b", priority=2)
    add_trunk(layer, "c", priority=3)
    layer.trunk_records.by_id["c"] = replace(layer.trunk_records.by_id["c"], sidecar="gone")
    layer.trunks.reported("edge", [TrunkReport("a", False, False, "no response", ())])
    alice = layer.add_user(make_user("201"))

    outcome = await layer.invite(alice, NUMBER)
    (leg,) = trunk_legs(layer)
    await fail(layer, outcome.call_id, leg.leg_id, 500)

    assert leg.trunk_id == "b"
    (end,) = [c for _, c in layer.sidecars.take() if isinstance(c, EndLeg)]
    assert end.status == 500


async def test_no_usable_trunk_is_503_and_no_matching_pattern_is_403(layer: CallLayer) -> None:
    add_trunk(layer, "de", outbound_pattern=r"\+49.*")
    layer.trunks.reported("edge", [TrunkReport("de", False, False, "no response", ())])
    alice = layer.add_user(make_user("201"))

    down = await layer.invite(alice, NUMBER, leg_id="A1")
    abroad = await layer.invite(alice, "+33123456789", leg_id="A2")

    assert (down.status, down.retry_after) == (503, 30)
    assert (abroad.status, abroad.reason) == (403, "number not allowed on any trunk")


async def test_a_trunk_at_its_channel_limit_is_skipped(layer: CallLayer) -> None:
    add_trunk(layer, "small", priority=1, channel_limit=1)
    add_trunk(layer, "big", priority=2)
    alice, bob = layer.add_user(make_user("201")), layer.add_user(make_user("202"))

    await layer.invite(alice, NUMBER, leg_id="A1")
    await layer.invite(bob, NUMBER, leg_id="A2")

    assert [leg.trunk_id for leg in trunk_legs(layer)] == ["small", "big"]


async def test_the_number_and_caller_are_written_the_trunks_way(layer: CallLayer) -> None:
    add_trunk(
        layer,
        "pbx",
        number_format=NumberFormat.NATIONAL,
        identity=IdentityPolicy(p_asserted_identity=True),
    )
    alice = layer.add_user(replace(make_user("201"), e164="+4989123456"))

    await layer.invite(alice, NUMBER)

    (leg,) = trunk_legs(layer)
    assert leg.request_uri == "sip:030123456@192.0.2.10:5060"
    assert leg.from_uri == "sip:089123456@sip2uc.local"
    assert leg.headers == (("P-Asserted-Identity", "<sip:089123456@sip2uc.local>"),)


async def test_an_emergency_number_goes_to_a_trunk_whatever_its_pattern(layer: CallLayer) -> None:
    add_trunk(layer, "de", outbound_pattern=r"\+4930.*")
    alice = layer.add_user(make_user("201"))

    outcome = await layer.invite(alice, "112")

    assert outcome.disposition == "routing"
    (leg,) = trunk_legs(layer)
    assert leg.request_uri == "sip:112@192.0.2.10:5060"


# --- in -----------------------------------------------------------------------------------------


async def test_a_call_from_the_trunks_address_rings_the_user_of_the_number(
    layer: CallLayer,
) -> None:
    add_trunk(layer, "pbx", address="127.0.0.5", port=5080)
    bob = layer.add_user(replace(make_user("202"), e164="+4989555"))
    layer.register(bob, 42001, sidecar="s1")

    by_e164 = await layer.controller.invite(from_address("127.0.0.5", 5080, "+4989555"))
    by_extension = await layer.controller.invite(
        from_address("127.0.0.5", 5080, "202", leg_id="T2")
    )

    assert (by_e164.disposition, by_extension.disposition) == ("routing", "routing")
    legs = [c for _, c in layer.sidecars.take() if isinstance(c, CreateLeg)]
    assert [(c.to_uri, c.port, c.from_uri) for c in legs] == [
        (bob.sip_uri, 42001, "sip:+4930999@uc.example")
    ] * 2


async def test_the_trunks_address_on_another_port_is_challenged(layer: CallLayer) -> None:
    add_trunk(layer, "pbx", address="127.0.0.5", port=5080)

    outcome = await layer.controller.invite(from_address("127.0.0.5", 5999, "202"))

    assert (outcome.disposition, outcome.status) == ("unauthorized", 407)


async def test_a_name_resolved_by_the_sidecar_identifies_the_trunk(layer: CallLayer) -> None:
    add_trunk(layer, "uc", address="uc.example.net")
    bob = layer.add_user(make_user("202"))
    layer.register(bob, 42001, sidecar="s1")
    layer.trunks.reported("edge", [TrunkReport("uc", True, False, "", ("198.51.100.7:5060",))])

    outcome = await layer.controller.invite(from_address("198.51.100.7", 5060, "202"))

    assert outcome.disposition == "routing"


async def test_unknown_numbers_and_other_trunks_numbers_from_a_trunk_are_404(
    layer: CallLayer,
) -> None:
    add_trunk(layer, "pbx", address="127.0.0.5", port=5080)
    add_trunk(layer, "other", address="192.0.2.99")

    unknown = await layer.controller.invite(from_address("127.0.0.5", 5080, "299"))
    external = await layer.controller.invite(from_address("127.0.0.5", 5080, NUMBER, leg_id="T2"))
    code = await layer.controller.invite(from_address("127.0.0.5", 5080, "*30", leg_id="T3"))

    assert [(o.disposition, o.status) for o in (unknown, external, code)] == [("reject", 404)] * 3
    assert trunk_legs(layer) == []


async def test_a_trunk_allowed_to_relay_reaches_another_trunk(layer: CallLayer) -> None:
    add_trunk(layer, "pbx", address="127.0.0.5", port=5080, allow_relay=True, priority=1)
    add_trunk(layer, "pstn", address="192.0.2.99", outbound_pattern=r"\+4930.*", priority=2)

    outcome = await layer.controller.invite(from_address("127.0.0.5", 5080, NUMBER))

    assert outcome.disposition == "routing"
    assert [leg.trunk_id for leg in trunk_legs(layer)] == ["pstn"]


async def test_the_inbound_pattern_limits_the_numbers_a_trunk_may_call(layer: CallLayer) -> None:
    add_trunk(layer, "pbx", address="127.0.0.5", port=5080, inbound_pattern=r"\+49.*")
    bob = layer.add_user(replace(make_user("202"), e164="+4989555"))
    layer.register(bob, 42001, sidecar="s1")

    extension = await layer.controller.invite(from_address("127.0.0.5", 5080, "202"))
    e164 = await layer.controller.invite(from_address("127.0.0.5", 5080, "+4989555", leg_id="T2"))

    assert (extension.status, e164.disposition) == (404, "routing")


async def test_the_called_user_is_ringing_then_in_a_call(layer: CallLayer) -> None:
    add_trunk(layer, "pbx", address="127.0.0.5", port=5080)
    bob = layer.add_user(make_user("202"))
    layer.register(bob, 42001, sidecar="s1")

    outcome = await layer.controller.invite(from_address("127.0.0.5", 5080, "202"))
    (leg,) = trunk_legs(layer)
    ringing = layer.presence_of(bob).activity
    await layer.controller.report_leg(
        LegReport(
            sidecar="s1",
            call_id=outcome.call_id,
            leg_id=leg.leg_id,
            state=LegState.ANSWERED,
            status=200,
            media=media(32000),
        )
    )

    assert (ringing.value, layer.presence_of(bob).activity.value) == ("ringing", "in-a-call")
