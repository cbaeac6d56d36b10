import pytest
from sip2uc.cli.parsing import (
    normalise_listen,
    parse_duration,
    parse_listen,
    parse_port_range,
    parse_state,
    parse_target,
)
from sip2uc.v1 import common_pb2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1d", 86400),
        ("1h0m5s", 3605),
        ("90", 90),
        (" 2H ", 7200),
    ],
)
def test_duration_accepts_unit_forms(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "0s", "0", "5x", "m", "1.5h", "30m1h", "1h1h", "-5m", "1h 30m"]
)
def test_duration_rejects_malformed_and_zero(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("available", common_pb2.AVAILABILITY_AVAILABLE),
        ("busy", common_pb2.AVAILABILITY_BUSY),
        ("dnd", common_pb2.AVAILABILITY_DO_NOT_DISTURB),
        ("do-not-disturb", common_pb2.AVAILABILITY_DO_NOT_DISTURB),
        ("DO_NOT_DISTURB", common_pb2.AVAILABILITY_DO_NOT_DISTURB),
        ("brb", common_pb2.AVAILABILITY_BE_RIGHT_BACK),
        ("be-right-back", common_pb2.AVAILABILITY_BE_RIGHT_BACK),
        ("away", common_pb2.AVAILABILITY_AWAY),
        ("offline", common_pb2.AVAILABILITY_OFFLINE),
    ],
)
def test_state_names_map_to_availability(text: str, value: int) -> None:
    assert parse_state(text) == value


def test_in_a_call_cannot_be_set_by_hand() -> None:
    with pytest.raises(ValueError, match="unknown state 'in-a-call': use one of available"):
        parse_state("in-a-call")


def test_port_range_is_inclusive_pair() -> None:
    assert parse_port_range("20000-29999") == (20000, 29999)


@pytest.mark.parametrize(
    "text", ["20000", "29999-20000", "a-b", "100-200", "20000-70000", "20000-20000"]
)
def test_port_range_rejects_bad_ranges(text: str) -> None:
    with pytest.raises(ValueError, match="bad port range"):
        parse_port_range(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5060", ("127.0.0.1", 5060)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:5061", ("::1", 5061)),
        ("localhost:50051", ("localhost", 50051)),
    ],
)
def test_listen_address_splits_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["5060", ":5060", "host:", "host:99999", "::1:5060", "[::1:5060"])
def test_listen_address_needs_host_and_port(text: str) -> None:
    with pytest.raises(ValueError, match="bad address"):
        parse_listen(text)


def test_ipv6_listen_address_is_bracketed_again() -> None:
    assert normalise_listen("[::1]:5060") == "[::1]:5060"


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("10.0.0.5", "10.0.0.5:50051"),
        ("control.example.com:443", "control.example.com:443"),
        ("[2001:db8::1]:8443", "[2001:db8::1]:8443"),
        ("::1", "[::1]:50051"),
    ],
)
def test_control_target_defaults_the_port(text: str, target: str) -> None:
    assert parse_target(text) == target


@pytest.mark.parametrize("text", ["", "host:0", "host:http", ":50051"])
def test_control_target_rejects_bad_values(text: str) -> None:
    with pytest.raises(ValueError, match="address"):
        parse_target(text)


def test_digest_algorithms_keep_order_ignore_case_and_drop_repeats() -> None:
    from sip2uc_server.cli import _digest

    assert _digest(None) == ()
    assert _digest(["md5"]) == ("MD5",)
    assert _digest(["sha-256", "MD5", "md5"]) == ("SHA-256", "MD5")


def test_unknown_digest_algorithm_is_a_usage_error() -> None:
    import pytest
    import typer
    from sip2uc_server.cli import _digest

    with pytest.raises(typer.BadParameter, match="choose SHA-256 or MD5"):
        _digest(["SHA-1"])
