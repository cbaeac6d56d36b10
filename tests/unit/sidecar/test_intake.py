"""The intake's asyncio side: what it serves in which order, and what shed new work hears.

The clock is injected; the tests run in an event loop only because the intake serves its
queue from a loop callback, and they let that callback run with `asyncio.sleep(0)`.
"""

from __future__ import annotations

import asyncio
import random

from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.message import SipResponse, parse_message
from sip2uc_media.sidecar.intake import Intake
from sip2uc_media.sidecar.known_sources import KnownSources
from sip2uc_media.sidecar.overload import IntakeQueue, OverloadSettings, Reason
from sip2uc_media.transport.base import Source

from .test_overload import follow_up, in_dialog, new, sip

HANDSET = "192.0.2.10"


class Handset:
    """A source whose replies the test reads."""

    def __init__(self, host: str = HANDSET) -> None:
        self.sent: list[bytes] = []
        self.source = Source(Endpoint(Transport.UDP, host, 5062), self._send)

    def _send(self, data: bytes) -> bool:
        self.sent.append(data)
        return True


class Rig:
    def __init__(
        self,
        *,
        backlog: tuple[int, float] = (0, 0.0),
        absorbed: frozenset[bytes] = frozenset(),
        **settings: float,
    ) -> None:
        self.now = 50.0
        self.served: list[bytes] = []
        self.queue: IntakeQueue[Source] = IntakeQueue(
            OverloadSettings(**settings),  # type: ignore[arg-type]
            KnownSources(),
            shed_tag=b"shedtag",
        )
        self.intake = Intake(
            serve=lambda data, _source: self.served.append(data),
            queue=self.queue,
            absorb=lambda data: data in absorbed,
            clock=lambda: self.now,
            retry_after=5,
            backlog=lambda: backlog,
            rng=random.Random(3),
        )


async def test_what_arrives_together_is_served_in_class_order() -> None:
    rig, handset = Rig(), Handset()

    for data in (new(1), follow_up(2), in_dialog(3)):
        rig.intake.receive(data, handset.source)
    await asyncio.sleep(0)

    assert rig.served == [in_dialog(3), follow_up(2), new(1)]
    assert len(rig.queue) == 0


async def test_shed_new_work_gets_a_503_with_a_spread_retry_after_and_its_ack_is_dropped() -> None:
    rig, handset = Rig(control_delay=1.0, backlog=(10, 1.5)), Handset()

    rig.intake.receive(new(1), handset.source)

    (data,) = handset.sent
    response = parse_message(data)
    assert isinstance(response, SipResponse)
    assert response.status == 503
    assert 5 <= int(response.headers.get("Retry-After") or 0) <= 10
    assert response.to.tag == "shedtag"
    assert rig.intake.answered == 1
    to = (response.headers.get("To") or "").encode()
    ack = sip("ACK", 1).replace(b"To: <sip:alice@example.net>", b"To: " + to)
    rig.intake.receive(ack, handset.source)
    await asyncio.sleep(0)
    assert rig.served == []
    assert rig.queue.refused[Reason.SHED_ACK] == 1


async def test_work_under_way_is_queued_while_new_work_is_shed() -> None:
    rig, handset = Rig(control_delay=1.0, backlog=(10, 1.5)), Handset()

    rig.intake.receive(follow_up(1), handset.source)
    await asyncio.sleep(0)

    assert handset.sent == []
    assert rig.served == [follow_up(1)]


async def test_a_retransmission_the_edge_recognises_is_not_queued() -> None:
    rig, handset = Rig(absorbed=frozenset({new(1)})), Handset()

    rig.intake.receive(new(1), handset.source)
    await asyncio.sleep(0)

    assert rig.served == []
    assert rig.queue.refused[Reason.RETRANSMISSION] == 1


async def test_retry_after_values_spread_over_one_to_two_times_the_base() -> None:
    rig = Rig(control_delay=1.0, backlog=(10, 1.5))
    values = set()
    for n in range(200):
        handset = Handset()
        rig.intake.receive(new(n), handset.source)
        response = parse_message(handset.sent[0])
        assert isinstance(response, SipResponse)
        values.add(int(response.headers.get("Retry-After") or 0))

    assert values == set(range(5, 11))
