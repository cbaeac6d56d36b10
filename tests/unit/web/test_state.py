"""The view's state: what each stream message changes, and which parts of the page it marks."""

from __future__ import annotations

from dataclasses import replace

from sip2uc_web.model import (
    CallView,
    ConnectorView,
    FeedStatus,
    PresenceView,
    RegistrationView,
    SidecarView,
)
from sip2uc_web.state import Part, StateView, extension_order


def presence(user: str, extension: str, availability: str = "offline") -> PresenceView:
    return PresenceView(
        user=user,
        extension=extension,
        sip_uri=f"sip:{extension}@example.com",
        availability=availability,
        activity="",
        source="registration",
        note="",
        since=None,
        expire_time=None,
        registered=availability != "offline",
    )


def binding(name: str, user: str, contact: str = "sip:h@192.0.2.1") -> RegistrationView:
    return RegistrationView(
        name=name,
        user=user,
        device_id="device-1",
        aor="",
        contact_uri=contact,
        source="192.0.2.1:5060",
        transport="udp",
        sidecar="vlan10",
        user_agent="",
        expire_time=None,
        create_time=None,
        refresh_time=None,
    )


def call(name: str, state: str = "ringing", end_time: float | None = None) -> CallView:
    return CallView(
        name=name,
        state=state,
        caller="users/a",
        dialled="457",
        callee="users/b",
        legs=(),
        start_time=100.0,
        answer_time=None,
        end_time=end_time,
        end_reason="caller hung up" if state == "ended" else "",
        final_status=0,
    )


def sidecar(name: str, connected: bool = True, active_legs: int = 0) -> SidecarView:
    return SidecarView(name, "", connected, (), "", 500, 500, active_legs, 0, "0.1.0", None, None)


def state_with_users() -> StateView:
    state = StateView()
    state.presence_snapshot([presence("users/b", "457"), presence("users/a", "456")])
    return state


def test_a_known_user_changing_presence_marks_only_its_row_and_the_summary() -> None:
    state = state_with_users()
    parts = state.presence_changed(presence("users/a", "456", "available"))
    assert parts == {Part("summary"), Part("presence", "users/a")}
    assert [p.availability for p in state.presence_rows()] == ["available", "offline"]


def test_a_new_user_redraws_every_section_that_names_users() -> None:
    state = state_with_users()
    parts = state.presence_changed(presence("users/c", "455", "available"))
    assert parts == {Part(s) for s in ("summary", "presence", "registrations", "calls", "history")}
    assert [p.extension for p in state.presence_rows()] == ["455", "456", "457"]


def test_a_changed_extension_moves_the_row() -> None:
    state = state_with_users()
    parts = state.presence_changed(presence("users/a", "999"))
    assert Part("presence") in parts
    assert [p.extension for p in state.presence_rows()] == ["457", "999"]


def test_a_change_to_a_row_past_the_shown_rows_marks_only_the_summary() -> None:
    state = StateView(row_limit=1)
    state.presence_snapshot([presence("users/a", "456"), presence("users/b", "457")])
    assert state.presence_changed(presence("users/b", "457", "away")) == {Part("summary")}


def test_extensions_sort_as_numbers_then_text_then_none() -> None:
    keys = ["10", "9", "", "abc", "100"]
    assert sorted(keys, key=lambda e: extension_order(e, "")) == ["9", "10", "100", "abc", ""]


def test_user_labels_prefer_the_extension() -> None:
    state = state_with_users()
    state.presence_changed(replace(presence("users/c", ""), sip_uri="sip:carol@example.com"))
    assert state.user_label("users/a") == "456"
    assert state.user_label("users/c") == "sip:carol@example.com"
    assert state.user_label("sip:+4989123@trunk.example") == "sip:+4989123@trunk.example"


def test_registrations_added_refreshed_and_removed() -> None:
    state = state_with_users()
    assert state.registration_added(binding("registrations/1", "users/a")) == {
        Part("registrations"),
        Part("summary"),
        Part("sidecars"),
    }
    assert state.registration_refreshed(binding("registrations/1", "users/a")) == {
        Part("registrations", "registrations/1")
    }
    moved = binding("registrations/1", "users/a", contact="sip:h@192.0.2.9")
    assert state.registration_refreshed(moved) == {Part("registrations")}
    assert state.registration_removed(moved) == {
        Part("registrations"),
        Part("summary"),
        Part("sidecars"),
    }
    assert state.registration_removed(moved) == set()
    assert state.registrations == {}


def test_bindings_are_counted_per_sidecar() -> None:
    state = state_with_users()
    state.registrations_snapshot(
        [binding("registrations/1", "users/a"), binding("registrations/2", "users/b")]
    )
    assert state.bindings_per_sidecar() == {"vlan10": 2}


def test_a_call_that_ends_moves_from_the_live_calls_to_the_history() -> None:
    state = state_with_users()
    assert state.call_changed(call("calls/1")) == {Part("calls"), Part("summary")}
    assert state.call_changed(call("calls/1", "connected")) == {Part("calls")}
    parts = state.call_changed(call("calls/1", "ended", end_time=200.0))
    assert parts == {Part("calls"), Part("history"), Part("summary")}
    assert state.calls == {}
    assert [c.name for c in state.history] == ["calls/1"]


def test_the_history_keeps_the_newest_calls_once_each() -> None:
    state = StateView(history_limit=2)
    state.history_loaded([call("calls/1", "ended", 10.0), call("calls/2", "ended", 20.0)])
    state.call_changed(call("calls/3", "ended", 30.0))
    state.history_loaded([call("calls/3", "ended", 30.0), call("calls/2", "ended", 20.0)])
    assert [c.name for c in state.history] == ["calls/3", "calls/2"]


def test_a_calls_snapshot_replaces_the_live_calls() -> None:
    state = StateView()
    state.call_changed(call("calls/gone"))
    state.calls_snapshot([call("calls/1"), call("calls/2", "connected")])
    assert sorted(state.calls) == ["calls/1", "calls/2"]


def test_sidecars_and_the_summary() -> None:
    state = StateView()
    assert state.sidecars_snapshot([sidecar("vlan10")]) == {Part("sidecars"), Part("summary")}
    assert state.sidecar_changed(sidecar("vlan10", active_legs=4)) == {Part("sidecars")}
    assert state.sidecar_changed(sidecar("vlan10", connected=False)) == {
        Part("sidecars"),
        Part("summary"),
    }
    assert state.counts()["sidecars_lost"] == 1


def test_availability_counts_follow_a_fixed_order() -> None:
    state = StateView()
    state.presence_snapshot(
        [
            presence("users/a", "1", "offline"),
            presence("users/b", "2", "available"),
            presence("users/c", "3", "available"),
            presence("users/d", "4", "unknown"),
        ]
    )
    assert state.availability_counts() == [("available", 2), ("offline", 1), ("unknown", 1)]


def test_a_feed_status_marks_the_banner_only_when_it_changes() -> None:
    state = StateView()
    down = FeedStatus("calls", live=False, problem="unavailable")
    assert state.feed_changed(down) == {Part("feeds")}
    assert state.feed_changed(down) == set()
    assert state.problems() == [down]
    state.feed_changed(FeedStatus("warnings", live=False, problem="", offered=False))
    assert not state.offered("warnings")
    assert state.offered("calls")


def connector(name: str, state: str = "connecting", lag: float | None = None) -> ConnectorView:
    return ConnectorView(
        name=name,
        display_name="",
        kind="SIP presence",
        target="sip:uc.example.com",
        state=state,
        last_error="",
        lag_seconds=lag,
        users_mapped=0,
        last_sync_time=None,
        runner="",
        report_time=None,
        changes_out=0,
        changes_in=0,
        external=False,
        disabled=False,
    )


def test_a_connector_whose_state_word_stays_marks_only_its_row() -> None:
    state = StateView()
    assert state.connectors_snapshot([connector("kam", "connected")]) == {
        Part("connectors"),
        Part("summary"),
    }
    assert state.connector_changed(connector("kam", "connected", lag=1.5)) == {
        Part("connectors", "kam")
    }
    assert state.connectors["kam"].lag_seconds == 1.5


def test_a_connector_changing_state_appearing_or_going_redraws_the_section_and_summary() -> None:
    state = StateView()
    state.connectors_snapshot([connector("kam", "connected")])
    both = {Part("connectors"), Part("summary")}
    assert state.connector_changed(connector("kam", "failed")) == both
    assert state.connector_changed(connector("teams")) == both
    assert [c.name for c in state.connector_rows()] == ["kam", "teams"]
    assert state.connector_deleted(connector("kam")) == both
    assert state.connector_deleted(connector("kam")) == set()
    assert state.counts()["bridges_not_connected"] == 1


def test_a_connectors_snapshot_replaces_what_the_view_held() -> None:
    state = StateView()
    state.connectors_snapshot([connector("old")])
    state.connectors_snapshot([connector("new", "connected")])
    assert list(state.connectors) == ["new"]
    assert state.counts()["bridges_connected"] == 1
