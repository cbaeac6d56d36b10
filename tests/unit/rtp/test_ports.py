import pytest
from sip2uc_media.rtp.ports import (
    PortAllocator,
    PortRangeError,
    PortsExhausted,
    parse_port_range,
)


def test_allocates_even_ports_in_order() -> None:
    ports = PortAllocator(20000, 20007)
    assert [ports.allocate() for _ in range(4)] == [20000, 20002, 20004, 20006]


def test_odd_lower_bound_starts_at_next_even_port() -> None:
    assert PortAllocator(20001, 20010).allocate() == 20002


def test_exhaustion_raises_an_error_carrying_503() -> None:
    ports = PortAllocator(20000, 20003)
    ports.allocate()
    ports.allocate()
    with pytest.raises(PortsExhausted) as err:
        ports.allocate()
    assert err.value.sip_status == 503
    assert str(err.value) == "no free RTP port pair in 20000-20003"


def test_released_port_is_reused_last() -> None:
    ports = PortAllocator(20000, 20005)
    first = ports.allocate()
    ports.release(first)
    assert [ports.allocate() for _ in range(3)] == [20002, 20004, 20000]


def test_counts_capacity_and_use_and_ignores_double_release() -> None:
    ports = PortAllocator(20000, 20009)
    p = ports.allocate()
    ports.release(p)
    ports.release(p)
    assert (ports.capacity, ports.in_use) == (5, 0)


def test_parses_range_spec() -> None:
    assert parse_port_range("16384-32767") == (16384, 32767)
    assert PortAllocator.from_spec("30000-30003").capacity == 2


@pytest.mark.parametrize("spec", ["", "20000", "a-b", "20000:20010"])
def test_rejects_malformed_range_spec(spec: str) -> None:
    with pytest.raises(PortRangeError):
        parse_port_range(spec)


def test_rejects_range_without_a_pair() -> None:
    with pytest.raises(PortRangeError):
        PortAllocator(20001, 20002)
