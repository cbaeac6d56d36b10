import struct

import pytest
from sip2uc_media.rtp.dtmf import DtmfGenerator, TelephoneEvent
from sip2uc_media.rtp.g711 import PCMU_TO_PCMA
from sip2uc_media.rtp.relay import (
    Direction,
    DtmfReceived,
    LegMedia,
    MediaLeg,
    MediaTimeout,
    RelayError,
    RelaySession,
    StreamOrigin,
)

A_SDP = ("10.0.0.1", 4000)
B_SDP = ("10.0.0.2", 5000)
A_NAT = ("192.0.2.9", 30000)  # where the handset's SIP (and so its RTP) comes from
A_REBOUND = ("192.0.2.9", 31000)  # the same NAT after a rebinding
FOREIGN = ("198.51.100.1", 1234)
A_TO_B = StreamOrigin(ssrc=0xA0A0A0A0, seq=1000, timestamp=50000)
B_TO_A = StreamOrigin(ssrc=0xB0B0B0B0, seq=2000, timestamp=90000)
PAYLOAD = bytes(range(160))
RECEIVER_REPORT = bytes.fromhex("80c9000101020304")  # RFC 3550 §6.4.2, no report blocks


def rtp(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int = 0x01020304,
    payload: bytes = PAYLOAD,
    marker: bool = False,
    first: int = 0x80,
) -> bytes:
    return struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq, ts, ssrc) + payload


def header(data: bytes) -> tuple[int, int, int, int, int]:
    _b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
    return (b1 >> 7, b1 & 0x7F, seq, ts, ssrc)


def make(
    a_media: LegMedia | None = None,
    b_media: LegMedia | None = None,
    *,
    symmetric: bool = True,
    relatch_after: float = 2.0,
) -> tuple[RelaySession, MediaLeg, MediaLeg]:
    a = MediaLeg(
        "a",
        20000,
        media=a_media or LegMedia(remote_rtp=A_SDP, audio_pt=0, expected_ip=A_NAT[0]),
        symmetric=symmetric,
        relatch_after=relatch_after,
    )
    b = MediaLeg(
        "b", 20002, media=b_media or LegMedia(remote_rtp=B_SDP, audio_pt=8, telephone_event_pt=96)
    )
    return RelaySession("call-1", a, b, origins=(A_TO_B, B_TO_A)), a, b


def test_pcmu_from_a_leaves_as_pcma_to_b_with_the_relay_header() -> None:
    s, _, _ = make()
    out = s.on_rtp(0, rtp(0, 7, 1600), A_SDP, 0.0)
    assert out == [
        (
            struct.pack("!BBHII", 0x80, 0x80 | 8, 1000, 50000, 0xA0A0A0A0)
            + PAYLOAD.translate(PCMU_TO_PCMA),
            B_SDP,
        )
    ]


def test_sequence_and_timestamp_follow_the_source_with_a_fixed_offset() -> None:
    s, _, _ = make()
    s.on_rtp(0, rtp(0, 7, 1600), A_SDP, 0.0)
    ((out, _),) = s.on_rtp(0, rtp(0, 8, 1760), A_SDP, 0.02)
    assert header(out) == (0, 8, 1001, 50160, 0xA0A0A0A0)


def test_same_law_is_forwarded_without_touching_the_payload() -> None:
    s, _, _ = make(b_media=LegMedia(remote_rtp=B_SDP, audio_pt=0))
    ((out, _),) = s.on_rtp(0, rtp(0, 7, 1600), A_SDP, 0.0)
    assert out[12:] == PAYLOAD


def test_first_packet_latches_the_real_source_for_the_reverse_direction() -> None:
    s, a, _ = make()
    s.on_rtp(0, rtp(0, 7, 1600), A_NAT, 0.0)
    ((_, dest),) = s.on_rtp(1, rtp(8, 1, 160, ssrc=0x99), B_SDP, 0.01)
    assert (a.latched, dest) == (A_NAT, A_NAT)


def test_other_source_is_dropped_while_the_latched_one_is_active() -> None:
    s, a, _ = make()
    s.on_rtp(0, rtp(0, 7, 1600), A_NAT, 0.0)
    assert s.on_rtp(0, rtp(0, 8, 1760), A_REBOUND, 0.5) == ()
    assert a.drops["foreign_source"] == 1
    assert a.latched == A_NAT


def test_a_foreign_ip_before_the_first_packet_is_dropped_and_counted() -> None:
    s, a, b = make()

    out = s.on_rtp(0, rtp(0, 7, 1600), FOREIGN, 0.0)

    assert out == ()
    assert a.drops["foreign_source"] == 1
    assert (a.latched, a.last_rx, b.tx_packets) == (None, None, 0)


def test_the_sip_source_ip_latches_on_any_port() -> None:
    s, a, _ = make()

    out = s.on_rtp(0, rtp(0, 7, 1600), ("192.0.2.9", 41234), 0.0)

    assert [dest for _, dest in out] == [B_SDP]
    assert a.latched == ("192.0.2.9", 41234)
    assert a.rtp_destination == ("192.0.2.9", 41234)


def test_the_sdp_ip_latches_on_any_port() -> None:
    s, a, _ = make(a_media=LegMedia(remote_rtp=A_SDP, audio_pt=0))

    assert s.on_rtp(0, rtp(0, 7, 1600), ("10.0.0.1", 4002), 0.0) != ()
    assert a.latched == ("10.0.0.1", 4002)


def test_a_leg_with_no_known_address_latches_nothing() -> None:
    s, a, _ = make(a_media=LegMedia(audio_pt=0))

    assert s.on_rtp(0, rtp(0, 7, 1600), A_NAT, 0.0) == ()
    assert a.drops["foreign_source"] == 1


def test_the_sdp_address_takes_over_at_once() -> None:
    s, a, _ = make()
    s.on_rtp(0, rtp(0, 7, 1600), A_NAT, 0.0)

    assert s.on_rtp(0, rtp(0, 8, 1760), A_SDP, 0.1) != ()
    assert a.latched == A_SDP


def test_a_new_port_of_the_same_ip_relatches_after_the_quiet_time() -> None:
    s, a, _ = make(relatch_after=2.0)
    s.on_rtp(0, rtp(0, 7, 1600), A_NAT, 0.0)

    early = s.on_rtp(0, rtp(0, 8, 1760), A_REBOUND, 1.9)
    late = s.on_rtp(0, rtp(0, 8, 1760), A_REBOUND, 2.0)

    assert early == ()
    assert [dest for _, dest in late] == [B_SDP]
    assert a.latched == A_REBOUND
    assert a.rtp_destination == A_REBOUND
    assert a.drops["foreign_source"] == 1


def test_a_foreign_ip_never_relatches_even_after_the_quiet_time() -> None:
    s, a, b = make(relatch_after=2.0)
    s.on_rtp(0, rtp(0, 7, 1600), A_NAT, 0.0)

    outs = [s.on_rtp(0, rtp(0, 8 + i, 1760), FOREIGN, t) for i, t in enumerate((2.0, 60.0))]

    assert outs == [(), ()]
    assert a.drops["foreign_source"] == 2
    assert a.latched == A_NAT
    assert b.tx_packets == 1


def test_a_foreign_ip_cannot_steer_the_reverse_stream_after_the_quiet_time() -> None:
    s, _, _ = make(relatch_after=2.0)
    s.on_rtp(0, rtp(0, 7, 1600), A_NAT, 0.0)
    s.on_rtp(0, rtp(0, 8, 1760), FOREIGN, 10.0)

    ((_, dest),) = s.on_rtp(1, rtp(8, 1, 160, ssrc=0x99), B_SDP, 10.01)

    assert dest == A_NAT


def test_a_foreign_ip_cannot_take_the_rtcp_port() -> None:
    s, a, _ = make()

    assert s.on_rtcp(0, RECEIVER_REPORT, ("198.51.100.1", 1235), 0.0) == ()
    assert a.drops["foreign_source"] == 1
    assert a.rtcp_latched is None


def test_rtcp_from_the_sip_source_ip_latches_its_own_port() -> None:
    s, a, _ = make()

    s.on_rtcp(0, RECEIVER_REPORT, ("192.0.2.9", 30001), 0.0)

    assert a.rtcp_latched == ("192.0.2.9", 30001)


def test_remote_relay_leg_accepts_only_its_configured_address() -> None:
    s, _a, _ = make(symmetric=False)
    assert s.on_rtp(0, rtp(0, 7, 1600), A_NAT, 0.0) == ()
    assert s.on_rtp(0, rtp(0, 7, 1600), A_SDP, 0.0) != ()


def test_new_incoming_ssrc_continues_the_outgoing_stream() -> None:
    s, _, _ = make()
    s.on_rtp(0, rtp(0, 7, 1600), A_SDP, 0.0)
    s.on_rtp(0, rtp(0, 8, 1760), A_SDP, 0.02)
    # Re-INVITE: the handset restarts with another SSRC, sequence and timestamp.
    ((out, _),) = s.on_rtp(0, rtp(0, 30000, 777, ssrc=0xDEAD), A_SDP, 0.06)
    assert header(out) == (1, 8, 1002, 50160 + 320, 0xA0A0A0A0)
    ((out, _),) = s.on_rtp(0, rtp(0, 30001, 937, ssrc=0xDEAD), A_SDP, 0.08)
    assert header(out) == (0, 8, 1003, 50160 + 480, 0xA0A0A0A0)


def test_sequence_jump_with_the_same_ssrc_also_rebases() -> None:
    s, _, _ = make()
    s.on_rtp(0, rtp(0, 7, 1600), A_SDP, 0.0)
    ((out, _),) = s.on_rtp(0, rtp(0, 40000, 99999), A_SDP, 0.02)
    assert header(out) == (1, 8, 1001, 50160, 0xA0A0A0A0)


def test_telephone_event_pt_is_remapped_and_the_digit_reported() -> None:
    s, _, _ = make()
    gen = DtmfGenerator().packets("4", 60)
    outs: list[tuple[bytes, tuple[str, int]]] = []
    for i, p in enumerate(gen):
        outs += s.on_rtp(0, rtp(101, 10 + i, 8000, payload=p.payload, marker=p.marker), A_SDP, i)
    assert [header(o)[:2] for o, _ in outs] == [(1, 96)] + [(0, 96)] * 4
    assert s.pop_events() == [DtmfReceived(leg_id="a", digit="4", duration_ms=60)]
    assert s.pop_events() == []


def test_events_are_reported_but_not_forwarded_to_a_leg_without_telephone_event() -> None:
    s, _, _ = make(b_media=LegMedia(remote_rtp=B_SDP, audio_pt=0, telephone_event_pt=None))
    end = bytes(TelephoneEvent(event=0, end=True, duration=800))
    assert s.on_rtp(0, rtp(101, 10, 8000, payload=end), A_SDP, 0.0) == ()
    ((out, _),) = s.on_rtp(0, rtp(0, 11, 8800), A_SDP, 0.02)
    assert header(out)[2] == 1000  # the event's sequence number was not used
    assert s.pop_events() == [DtmfReceived(leg_id="a", digit="0", duration_ms=100)]


def test_hold_gates_directions_by_sdp_attribute() -> None:
    s, a, b = make()
    a.update(LegMedia(remote_rtp=A_SDP, audio_pt=0, direction=Direction.SENDONLY))
    assert s.on_rtp(0, rtp(0, 7, 1600), A_SDP, 0.0) != ()
    assert s.on_rtp(1, rtp(8, 1, 160, ssrc=9), B_SDP, 0.0) == ()
    assert b.drops["direction"] == 1
    a.update(LegMedia(remote_rtp=A_SDP, audio_pt=0, direction=Direction.INACTIVE))
    assert s.on_rtp(0, rtp(0, 8, 1760), A_SDP, 0.02) == ()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x00\x00", "truncated"),
        (rtp(0, 1, 0, first=0x40), "version"),
        (rtp(0, 1, 0, first=0x8F, payload=b"\x00" * 8), "csrc_overrun"),
        (rtp(0, 1, 0, first=0x90, payload=b"\xbe\xde\x00\x09"), "extension_overrun"),
        (rtp(0, 1, 0, first=0xA0, payload=b"\x00\x00\xff"), "padding_overrun"),
        (rtp(0, 1, 0, first=0xA0, payload=b"\x00\x00\x00"), "padding_overrun"),
        (rtp(34, 1, 0), "unknown_pt"),
    ],
)
def test_invalid_packets_are_dropped_and_counted(data: bytes, reason: str) -> None:
    s, a, _ = make()
    assert s.on_rtp(0, data, A_SDP, 0.0) == ()
    assert a.drops[reason] == 1
    assert sum(a.drops.values()) == 1


def test_header_extension_and_padding_survive_and_only_payload_is_transcoded() -> None:
    s, _, _ = make()
    ext = b"\xbe\xde\x00\x01" + b"\x10\xaa\x00\x00"
    padding = b"\x00\x00\x03"
    data = rtp(0, 7, 1600, first=0xB0, payload=ext + b"\xff" * 160 + padding)
    ((out, _),) = s.on_rtp(0, data, A_SDP, 0.0)
    assert out[12:] == ext + b"\xd5" * 160 + padding


def test_injected_dtmf_is_spliced_with_continuous_sequence_numbers() -> None:
    s, _, _ = make()
    s.on_rtp(0, rtp(0, 7, 1600), A_SDP, 0.0)  # out seq 1000, ts 50000
    s.inject_dtmf(1, "9", now=0.01, duration_ms=40)
    assert s.next_deadline() == pytest.approx(0.01)
    sent: list[tuple[int, bytes, tuple[str, int]]] = []
    held_back: list[tuple[bytes, tuple[str, int]]] = []
    for i in range(4):
        sent += s.handle_timer(0.01 + 0.02 * i)
        if i < 3:  # audio from A while the event plays is held back
            held_back += s.on_rtp(0, rtp(0, 8 + i, 1760 + 160 * i), A_SDP, 0.02 + 0.02 * i)
    assert held_back == []
    assert [(leg, header(d), d[12:], dest) for leg, d, dest in sent] == [
        (1, (1, 96, 1001, 50080, 0xA0A0A0A0), bytes.fromhex("090a00a0"), B_SDP),
        (1, (0, 96, 1002, 50080, 0xA0A0A0A0), bytes.fromhex("098a0140"), B_SDP),
        (1, (0, 96, 1003, 50080, 0xA0A0A0A0), bytes.fromhex("098a0140"), B_SDP),
        (1, (0, 96, 1004, 50080, 0xA0A0A0A0), bytes.fromhex("098a0140"), B_SDP),
    ]
    ((out, _),) = s.on_rtp(0, rtp(0, 11, 2240), A_SDP, 0.08)
    assert header(out) == (1, 8, 1005, 50640, 0xA0A0A0A0)
    assert s.next_deadline() is None


def test_injection_needs_a_negotiated_telephone_event_pt() -> None:
    s, _, _ = make(b_media=LegMedia(remote_rtp=B_SDP, telephone_event_pt=None))
    with pytest.raises(RelayError):
        s.inject_dtmf(1, "1", now=0.0)


def test_rtcp_sender_report_is_relayed_with_the_outgoing_ssrc_and_timestamp() -> None:
    s, _, _ = make()
    s.on_rtp(0, rtp(0, 7, 1600), A_SDP, 0.0)
    s.on_rtp(1, rtp(8, 1, 160, ssrc=0x77777777), B_SDP, 0.0)
    sr = bytes.fromhex(
        "81c8000c"
        "01020304"
        "e0000000"
        "00000000"
        "00000640"
        "00000001"
        "000000ac"
        # report block about what A receives: our B->A SSRC
        "b0b0b0b0"
        "00000000"
        "00000001"
        "00000000"
        "00000000"
        "00000000"
    )
    ((out, dest),) = s.on_rtcp(0, sr, ("10.0.0.1", 4001), 0.1)
    assert dest == ("10.0.0.2", 5001)
    assert out[4:8] == bytes.fromhex("a0a0a0a0")
    assert out[16:20] == (1600 + 50000 - 1600).to_bytes(4, "big")
    assert out[28:32] == bytes.fromhex("77777777")
    assert out[32:] == sr[32:]


def test_invalid_rtcp_is_dropped_and_counted() -> None:
    s, a, _ = make()
    assert s.on_rtcp(0, b"\x81\xc8\x00\x0c\x00", ("10.0.0.1", 4001), 0.0) == ()
    assert a.drops["rtcp_invalid"] == 1


def test_media_timeout_names_silent_legs_but_not_held_ones() -> None:
    s, _a, b = make()
    s.on_rtp(0, rtp(0, 7, 1600), A_SDP, 10.0)
    assert s.expired(35.0, 30.0) == [MediaTimeout(leg_id="b", silent_for=35.0)]
    assert s.expired(40.0, 30.0) == [
        MediaTimeout(leg_id="a", silent_for=30.0),
        MediaTimeout(leg_id="b", silent_for=40.0),
    ]
    b.update(LegMedia(remote_rtp=B_SDP, audio_pt=8, direction=Direction.INACTIVE))
    assert s.expired(40.0, 30.0) == [MediaTimeout(leg_id="a", silent_for=30.0)]


def test_per_leg_stats_count_received_and_sent() -> None:
    s, _, _ = make()
    for i in range(5):
        s.on_rtp(0, rtp(0, 7 + i, 1600 + 160 * i), A_SDP, 0.02 * i)
    a_stats, b_stats = s.stats()
    assert (a_stats.received.packets, a_stats.received.lost, b_stats.sent_packets) == (5, 0, 5)
    assert a_stats.received.mos == 4.4


def test_a_leg_cannot_join_two_sessions() -> None:
    _, a, _ = make()
    with pytest.raises(RelayError):
        RelaySession("call-2", a, MediaLeg("c", 20004), origins=(A_TO_B, B_TO_A))


def test_invalid_packet_from_a_new_source_does_not_latch() -> None:
    s, a, _ = make()
    s.on_rtp(0, rtp(0, 7, 1600), A_SDP, 0.0)
    s.on_rtp(0, rtp(34, 8, 1760), A_NAT, 5.0)  # quiet long enough, but unknown PT
    assert a.latched == A_SDP
