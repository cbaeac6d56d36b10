"""The templates, given the view's values: the exact HTML fragments the browser receives."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import pytest
from sip2uc_web import render
from sip2uc_web.model import (
    CallView,
    ConnectorView,
    FeedStatus,
    LegView,
    LogEntryView,
    PresenceView,
    RegistrationView,
    SidecarView,
    StreamQuality,
)
from sip2uc_web.render import Renderer, clock_text, dom_id, duration_text, worst_quality
from sip2uc_web.state import SECTIONS, Part, StateView

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
STATIC = Path(render.__file__).parent / "static"

ALICE = PresenceView(
    user="users/a1",
    extension="456",
    sip_uri="sip:alice@example.com",
    availability="do not disturb",
    activity="in a call",
    source="manual",
    note="<b>back at 3</b>",
    since=NOW - 60,
    expire_time=NOW + 3600,
    registered=True,
)
BOB = PresenceView(
    user="users/b2",
    extension="457",
    sip_uri="sip:bob@example.com",
    availability="available",
    activity="",
    source="registration",
    note="",
    since=NOW - 86400,
    expire_time=None,
    registered=True,
)
BINDING = RegistrationView(
    name="registrations/r1",
    user="users/a1",
    device_id="device-1",
    aor="sip:456@example.com",
    contact_uri="sip:456@192.0.2.7:5062;transport=udp",
    source="192.0.2.7:5062",
    transport="udp",
    sidecar="vlan10",
    user_agent="Grandstream HT502",
    expire_time=NOW + 300,
    create_time=NOW - 10,
    refresh_time=NOW - 5,
)
CALL = CallView(
    name="calls/c1",
    state="connected",
    caller="users/a1",
    dialled="457",
    callee="users/b2",
    legs=(
        LegView(
            id="l1",
            sidecar="vlan10",
            state="answered",
            party="users/a1",
            codec="PCMA",
            direction="sendrecv",
            quality=(
                StreamQuality("rx", packets=300, lost=3, jitter_ms=2.5, mos=4.1, codec="PCMA"),
                StreamQuality("tx", packets=0, lost=0, jitter_ms=0.0, mos=0.0, codec="PCMA"),
            ),
        ),
        LegView("l2", "vlan10", "answered", "users/b2", "PCMU", "sendonly", ()),
    ),
    start_time=NOW - 20,
    answer_time=NOW - 15,
    end_time=None,
    end_reason="",
    final_status=0,
)


def view() -> StateView:
    state = StateView()
    state.presence_snapshot([ALICE, BOB])
    state.registrations_snapshot([BINDING])
    return state


def renderer() -> Renderer:
    return Renderer(control="127.0.0.1:50051", clock=lambda: NOW)


def test_a_presence_row_goes_out_of_band_inside_a_template() -> None:
    html = renderer().update(view(), [Part("presence", "users/a1")])
    assert html == (
        f'<template><tr id="{dom_id("presence", "users/a1")}" data-user="users/a1"'
        ' hx-swap-oob="true">\n'
        '<th scope="row">456</th>\n'
        "<td>sip:alice@example.com</td>\n"
        '<td><span class="availability do-not-disturb">do not disturb</span></td>\n'
        "<td>in a call</td>\n"
        "<td>manual</td>\n"
        "<td>&lt;b&gt;back at 3&lt;/b&gt;</td>\n"
        '<td><time datetime="2027-01-15T07:59:00Z">07:59:00</time></td>\n'
        '<td><time datetime="2027-01-15T09:00:00Z">09:00:00</time></td>\n'
        "<td>registered</td>\n"
        "</tr>\n"
        "</template>"
    )


def test_a_row_of_another_day_shows_the_date_and_no_expiry_shows_a_dash() -> None:
    html = renderer().update(view(), [Part("presence", "users/b2")])
    assert '<td><time datetime="2027-01-14T08:00:00Z">2027-01-14 08:00:00</time></td>' in html
    assert '<td><span class="none">—</span></td>' in html


def test_a_registration_row_names_the_user_by_extension() -> None:
    html = renderer().update(view(), [Part("registrations", "registrations/r1")])
    assert html == (
        f'<template><tr id="{dom_id("registration", "registrations/r1")}"'
        ' data-registration="registrations/r1" hx-swap-oob="true">\n'
        '<th scope="row">456</th>\n'
        "<td>sip:456@192.0.2.7:5062;transport=udp</td>\n"
        "<td>192.0.2.7:5062 udp</td>\n"
        "<td>vlan10</td>\n"
        "<td>Grandstream HT502</td>\n"
        '<td><time datetime="2027-01-15T07:59:55Z">07:59:55</time></td>\n'
        '<td><time datetime="2027-01-15T08:05:00Z">08:05:00</time></td>\n'
        "</tr>\n"
        "</template>"
    )


def test_a_live_call_lists_its_legs_with_their_media_quality() -> None:
    state = view()
    state.calls_snapshot([CALL])
    assert renderer().section(state, "calls") == (
        '<section id="calls" aria-labelledby="calls-title">\n'
        '<h2 id="calls-title">Live calls <span class="count">(1)</span></h2>\n'
        "<table>\n"
        '<thead><tr><th scope="col">Caller</th><th scope="col">Called</th>'
        '<th scope="col">State</th><th scope="col">Started</th><th scope="col">Answered</th>'
        '<th scope="col">Legs</th></tr></thead>\n'
        "<tbody>\n"
        f'<tr id="{dom_id("call", "calls/c1")}" data-call="calls/c1">\n'
        '<th scope="row">456</th>\n'
        "<td>457</td>\n"
        '<td><span class="call-state connected">connected</span></td>\n'
        '<td><time datetime="2027-01-15T07:59:40Z">07:59:40</time></td>\n'
        '<td><time datetime="2027-01-15T07:59:45Z">07:59:45</time></td>\n'
        "<td>\n"
        '<ul class="legs">\n'
        '<li data-leg="l1">456 on vlan10: <span class="leg-state answered">answered</span>, PCMA'
        '<br><span class="quality">rx PCMA: 300 packets, 3 lost (1.0%), jitter 2.5 ms, MOS 4.1'
        "</span>\n"
        '<br><span class="quality">tx PCMA: no packets</span>\n'
        "</li>\n"
        '<li data-leg="l2">457 on vlan10: <span class="leg-state answered">answered</span>, PCMU,'
        " sendonly</li>\n"
        "</ul>\n"
        "</td>\n"
        "</tr>\n"
        "</tbody>\n"
        "</table>\n"
        "</section>\n"
    )


def test_an_ended_call_shows_in_the_history_with_its_worst_quality() -> None:
    state = view()
    state.call_changed(replace(CALL, state="ended", end_time=NOW - 2, end_reason="caller hung up"))
    html = renderer().section(state, "history")
    row = re.search(r"<tbody>\n(.*)</tbody>", html, re.S)
    assert row is not None
    assert row.group(1) == (
        f'<tr id="{dom_id("history", "calls/c1")}" data-call="calls/c1">\n'
        '<th scope="row">456</th>\n'
        "<td>457</td>\n"
        '<td><time datetime="2027-01-15T07:59:40Z">07:59:40</time></td>\n'
        "<td>0:13</td>\n"
        '<td><time datetime="2027-01-15T07:59:58Z">07:59:58</time></td>\n'
        "<td>caller hung up</td>\n"
        "<td>MOS 4.1, loss 1.0%, jitter 2.5 ms</td>\n"
        "</tr>\n"
    )


def test_an_unanswered_call_shows_its_final_status_and_no_quality() -> None:
    state = view()
    missed = replace(
        CALL,
        state="ended",
        answer_time=None,
        end_time=NOW,
        end_reason="no answer",
        final_status=480,
        legs=(),
    )
    state.call_changed(missed)
    html = renderer().section(state, "history")
    assert "<td>—</td>\n" in html  # talked: never answered
    assert "<td>no answer (480)</td>\n<td>—</td>\n" in html


def test_sidecar_health_shows_channel_use_against_the_limit() -> None:
    state = view()
    state.sidecars_snapshot(
        [
            SidecarView(
                name="vlan10",
                site="2nd floor",
                connected=False,
                sip_listeners=("udp 10.0.0.2:5060", "tcp 10.0.0.2:5060"),
                rtp="10.0.0.2:20000-29999",
                capacity=500,
                channel_limit=400,
                active_legs=100,
                relay_ports_in_use=200,
                version="0.1.0",
                connect_time=NOW - 3600,
                last_seen=NOW - 40,
            )
        ]
    )
    html = renderer().section(state, "sidecars")
    assert '<td><span class="health lost">lost</span></td>' in html
    assert (
        '<td><meter min="0" max="400" value="100" high="320" aria-label="channels of vlan10">'
        "</meter> 100 / 400 (25%)</td>"
    ) in html
    # One binding of the view registered through vlan10.
    assert "<td>200</td>\n<td>1</td>\n<td>udp 10.0.0.2:5060, tcp 10.0.0.2:5060</td>" in html


def test_warnings_are_newest_first_and_escaped() -> None:
    state = view()
    state.warnings_snapshot(
        [
            LogEntryView(1, NOW - 9, "warning", "sip2uc_control.api.sidecar", "sidecar lost", ""),
            LogEntryView(2, NOW - 1, "error", "sip2uc_media", "<script>alert(1)</script>", ""),
        ]
    )
    html = renderer().section(state, "warnings")
    rows = re.findall(r'<tr class="(\w+)" data-sequence="(\d)">', html)
    assert rows == [("error", "2"), ("warning", "1")]
    assert '<td class="message">&lt;script&gt;alert(1)&lt;/script&gt;</td>' in html
    assert "<script>" not in html


@pytest.mark.parametrize(
    ("section", "text"),
    [
        ("sidecars", "No sidecar has connected yet."),
        ("presence", "No users yet."),
        ("registrations", "No handset is registered."),
        ("calls", "No call in progress."),
        ("history", "No finished call yet."),
        ("connectors", "No UC bridge is configured (<code>sip2uc connector add</code>)."),
        ("warnings", "No warning since the control plane started."),
    ],
)
def test_empty_sections_say_so(section: str, text: str) -> None:
    assert f'<p class="empty">{text}</p>' in renderer().section(StateView(), section)


def test_a_table_shows_its_first_rows_and_says_where_the_rest_are() -> None:
    state = StateView(row_limit=1)
    state.presence_snapshot([BOB, ALICE])
    html = renderer().section(state, "presence")
    assert html.count("<tr id=") == 1
    assert 'data-user="users/a1"' in html  # 456 sorts before 457
    assert "The first 1 users are shown" in html


def test_an_update_sends_a_changed_section_whole_and_not_its_rows() -> None:
    html = renderer().update(view(), [Part("presence"), Part("presence", "users/a1")])
    assert html.startswith('<section id="presence" aria-labelledby="presence-title"')
    assert ' hx-swap-oob="true">' in html.splitlines()[0]
    assert "<template>" not in html


def test_a_row_of_a_user_the_view_no_longer_has_is_left_out() -> None:
    assert renderer().update(view(), [Part("presence", "users/gone")]) == ""


def test_feed_problems_are_announced() -> None:
    state = view()
    state.feed_changed(FeedStatus("calls", live=False, problem="unavailable: connection refused"))
    html = renderer().section(state, "feeds")
    assert '<div class="problem" role="alert">' in html
    assert "<li>calls: unavailable: connection refused</li>" in html


def test_the_page_has_every_section_in_order_and_follows_the_event_stream() -> None:
    html = renderer().page(view())
    found = re.findall(r'<section id="(\w+)"', html)
    assert tuple(found) == SECTIONS
    assert (
        '<div id="live" hx-ext="sse" sse-connect="/events" sse-swap="update" hx-swap="none"'
        " hidden></div>"
    ) in html
    assert f'<script src="/static/vendor/htmx-{render.HTMX_VERSION}.min.js" defer>' in html
    assert f'<script src="/static/vendor/htmx-ext-sse-{render.SSE_VERSION}.js" defer>' in html
    assert '<noscript><meta http-equiv="refresh" content="15"></noscript>' in html
    assert " hx-swap-oob" not in html  # only fragments sent later replace elements


def test_the_vendored_files_exist_and_match_their_recorded_hashes() -> None:
    table = (STATIC / "vendor" / "README.md").read_text()
    for name in (
        f"htmx-{render.HTMX_VERSION}.min.js",
        f"htmx-ext-sse-{render.SSE_VERSION}.js",
    ):
        digest = hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest()
        assert f"| `{name}` |" in table and f"`{digest}`" in table
    assert (STATIC / "vendor" / "LICENSE.htmx.org").exists()
    assert (STATIC / "vendor" / "LICENSE.htmx-ext-sse").exists()


def test_element_ids_are_stable_and_usable_in_selectors() -> None:
    assert dom_id("presence", "users/a1") == dom_id("presence", "users/a1")
    assert dom_id("presence", "users/a1") != dom_id("presence", "users/a2")
    assert re.fullmatch(r"presence-[0-9a-f]{16}", dom_id("presence", "users/a1"))


def test_times_and_durations() -> None:
    assert clock_text(NOW + 59, NOW) == "08:00:59"
    assert clock_text(NOW - 8 * 3600 - 1, NOW) == "2027-01-14 23:59:59"
    assert duration_text(None) == "—"
    assert duration_text(5.9) == "0:05"
    assert duration_text(3725) == "1:02:05"


def test_worst_quality_ignores_streams_without_packets() -> None:
    worst = worst_quality(CALL)
    assert worst is not None
    # 3 lost of 303 expected (RFC 3550: received + lost).
    assert (worst.mos, worst.jitter_ms) == (4.1, 2.5)
    assert worst.loss_percent == pytest.approx(100 * 3 / 303)
    assert worst_quality(replace(CALL, legs=())) is None


def test_the_banner_says_what_is_still_loading() -> None:
    state = view()
    state.feed_changed(FeedStatus("presence", live=True, problem=""))
    state.feed_changed(FeedStatus("calls", live=False, problem=""))
    html = renderer().section(state, "feeds")
    assert '<p class="waiting">Loading from the control plane: calls…</p>' in html


def test_a_control_plane_without_sidecar_updates_is_named_as_such() -> None:
    state = view()
    state.feed_changed(FeedStatus("sidecars", live=False, problem="", offered=False))
    html = renderer().section(state, "sidecars")
    assert '<p class="empty">This control plane does not offer sidecar updates.</p>' in html


KAMAILIO = ConnectorView(
    name="kam",
    display_name="Kamailio <lab>",
    kind="SIP presence",
    target="sip:presence.example.com:5061;transport=tls",
    state="failed",
    last_error="PUBLISH sip:456@example.com: 503 <Service Unavailable>",
    lag_seconds=2.5,
    users_mapped=1200,
    last_sync_time=NOW - 30,
    runner="gw1:4242",
    report_time=NOW - 2,
    changes_out=17,
    changes_in=3,
    external=True,
    disabled=False,
)


def test_a_connector_row_shows_kind_state_error_lag_users_and_last_sync() -> None:
    state = view()
    state.connectors_snapshot([KAMAILIO])
    html = renderer().update(state, [Part("connectors", "kam")])
    assert html == (
        f'<template><tr id="{dom_id("connector", "kam")}" data-connector="kam"'
        ' hx-swap-oob="true">\n'
        '<th scope="row">kam <span class="label">Kamailio &lt;lab&gt;</span></th>\n'
        "<td>SIP presence</td>\n"
        "<td>sip:presence.example.com:5061;transport=tls</td>\n"
        '<td><span class="health failed">failed</span> <span class="label">external</span></td>\n'
        '<td class="message">PUBLISH sip:456@example.com: 503 &lt;Service Unavailable&gt;</td>\n'
        "<td>2.5 s</td>\n"
        "<td>1200</td>\n"
        '<td><time datetime="2027-01-15T07:59:30Z">07:59:30</time></td>\n'
        "<td>17 / 3</td>\n"
        "<td>gw1:4242</td>\n"
        '<td><time datetime="2027-01-15T07:59:58Z">07:59:58</time></td>\n'
        "</tr>\n"
        "</template>"
    )


def test_the_connectors_section_lists_bridges_by_name_and_the_summary_counts_them() -> None:
    state = view()
    teams = replace(
        KAMAILIO,
        name="a-teams",
        display_name="",
        kind="Teams",
        target="tenant 2b7b4c1e",
        state="connected",
        last_error="",
        lag_seconds=None,
        last_sync_time=None,
        external=False,
    )
    state.connectors_snapshot([KAMAILIO, teams])
    html = renderer().section(state, "connectors")
    assert re.findall(r'data-connector="([\w-]+)"', html) == ["a-teams", "kam"]
    assert '<h2 id="connectors-title">UC bridges <span class="count">(2)</span></h2>' in html
    assert '<td><span class="health connected">connected</span></td>' in html
    assert '<td class="message">—</td>\n<td>—</td>' in html  # no error, lag not reported
    summary = renderer().section(state, "summary")
    assert "<div><dt>UC bridges connected</dt><dd>1</dd></div>" in summary
    assert '<div><dt>UC bridges not connected</dt><dd class="bad">1</dd></div>' in summary


def test_the_summary_leaves_bridges_out_when_there_are_none() -> None:
    assert "UC bridges" not in renderer().section(view(), "summary")


def test_a_control_plane_without_connector_updates_is_named_as_such() -> None:
    state = view()
    state.feed_changed(FeedStatus("connectors", live=False, problem="", offered=False))
    html = renderer().section(state, "connectors")
    assert '<p class="empty">This control plane does not offer connector updates.</p>' in html


def test_lag_reads_in_seconds_then_minutes() -> None:
    assert [render.lag_text(s) for s in (None, 0.0, 59.94, 125.0)] == [
        "—",
        "0.0 s",
        "59.9 s",
        "2:05",
    ]
