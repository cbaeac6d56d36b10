"""Fan-out of page updates: the full state first, coalesced changes after, bounded backlogs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import pytest
from sip2uc_web.hub import UpdateHub
from sip2uc_web.model import PresenceView
from sip2uc_web.render import Renderer
from sip2uc_web.state import Part, StateView

NOW = 1_800_000_000.0


def presence(user: str, extension: str, availability: str) -> PresenceView:
    return PresenceView(
        user, extension, f"sip:{extension}@x", availability, "", "registration", "", NOW, None, True
    )


def hub(**kwargs: float | int) -> UpdateHub:
    state = StateView()
    state.presence_snapshot([presence("users/a", "456", "offline")])
    return UpdateHub(state, Renderer(control="c", clock=lambda: NOW), **kwargs)  # type: ignore[arg-type]


async def test_a_new_stream_starts_with_the_whole_state() -> None:
    updates = hub()
    first = await updates.subscribe().get()
    assert first is not None
    head, _, body = first.decode().partition("data: ")
    assert head == "event: update\nretry: 2000\n"
    for section in ("summary", "feeds", "sidecars", "presence", "calls", "warnings"):
        assert f'data: <section id="{section}"' in "data: " + body


async def test_changes_within_the_window_go_out_as_one_update() -> None:
    updates = hub(coalesce_seconds=0.0)
    stream = updates.subscribe()
    await stream.get()  # the whole state
    updates.changed(updates.state.presence_changed(presence("users/a", "456", "available")))
    updates.changed(updates.state.presence_changed(presence("users/a", "456", "away")))
    frame = await asyncio.wait_for(stream.get(), 5)
    assert frame is not None
    text = frame.decode()
    assert text.startswith("event: update\ndata: ")
    assert text.count('<tr id="presence-') == 1
    assert ">away</span>" in text
    assert '<section id="summary"' in text


async def test_without_browsers_nothing_is_rendered() -> None:
    updates = hub()
    updates.changed({Part("presence")})
    updates.flush()
    stream = updates.subscribe()
    assert await stream.get() is not None  # the whole state, and nothing queued before it
    updates.flush()
    assert stream._queue.empty()


async def test_a_browser_that_stops_reading_is_cut_off_not_buffered() -> None:
    updates = hub(backlog=3)
    stuck = updates.subscribe()  # holds the whole state, unread
    for availability in ("available", "away"):
        updates.changed(updates.state.presence_changed(presence("users/a", "456", availability)))
        updates.flush()
    assert updates.subscribers == 1
    updates.changed(updates.state.presence_changed(presence("users/a", "456", "busy")))
    updates.flush()
    assert updates.subscribers == 0
    assert await stuck.get() is None  # what it had is dropped; it reconnects for a fresh state


async def test_closing_ends_every_stream_and_refuses_new_ones() -> None:
    updates = hub()
    stream = updates.subscribe()
    updates.close()
    assert await stream.get() is not None
    assert await stream.get() is None
    assert await updates.subscribe().get() is None


class BrokenRenderer(Renderer):
    broken = False

    def update(self, state: StateView, parts: Iterable[Part]) -> str:
        if self.broken:
            raise RuntimeError("template bug")
        return super().update(state, parts)


async def test_a_rendering_failure_is_logged_and_the_streams_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    renderer = BrokenRenderer(control="c", clock=lambda: NOW)
    updates = UpdateHub(StateView(), renderer)
    stream = updates.subscribe()
    renderer.broken = True
    updates.changed({Part("presence")})
    with caplog.at_level(logging.ERROR):
        updates.flush()
    assert "rendering an update of the state view failed" in caplog.text
    assert updates.subscribers == 1
    await stream.get()
    assert stream._queue.empty()
