"""Transports by the names Via headers, URIs and the control plane's records give them."""

from __future__ import annotations

import pytest
from sip2uc_core.sip.endpoint import Endpoint, Transport


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("UDP", Transport.UDP),
        ("udp", Transport.UDP),
        ("Tcp", Transport.TCP),
        ("TLS", Transport.TLS),
        ("SCTP", None),
        ("WS", None),
        ("", None),
    ],
)
def test_a_transport_is_found_by_its_name_in_any_case(
    name: str, expected: Transport | None
) -> None:
    assert Transport.parse(name) is expected


def test_via_names_are_upper_case_and_stored_values_lower_case() -> None:
    assert [(t.via_name, t.value) for t in Transport] == [
        ("UDP", "udp"),
        ("TCP", "tcp"),
        ("TLS", "tls"),
    ]
    assert Transport("tls") is Transport.TLS


def test_only_udp_is_unreliable() -> None:
    assert [t.reliable for t in Transport] == [False, True, True]
    assert not Endpoint(Transport.UDP, "192.0.2.1", 5060).reliable
    assert Endpoint(Transport.TLS, "192.0.2.1", 5061, connection_id=3).reliable


def test_endpoints_on_another_connection_differ() -> None:
    first = Endpoint(Transport.TCP, "192.0.2.1", 40000, connection_id=1)

    assert first == Endpoint(Transport.TCP, "192.0.2.1", 40000, connection_id=1)
    assert first != Endpoint(Transport.TCP, "192.0.2.1", 40000, connection_id=2)
    assert first != Endpoint(Transport.UDP, "192.0.2.1", 40000, connection_id=1)
