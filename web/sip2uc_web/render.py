"""HTML of the state view: the whole page, and the fragments that update it (Jinja2).

A fragment for the browser is a list of elements marked `hx-swap-oob`: htmx replaces the element
with the same id. Sections go as they are; single table rows go inside `<template>`, because an
HTML parser drops a `<tr>` found outside a table.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from .model import CallView, StreamQuality
from .state import SECTIONS, Part, StateView

# The vendored front-end files in static/vendor (npm packages htmx.org and htmx-ext-sse).
HTMX_VERSION = "2.0.11"
SSE_VERSION = "2.2.4"
# Without JavaScript the page reloads itself this often (a snapshot of the in-memory view).
NO_SCRIPT_REFRESH_SECONDS = 15


def dom_id(prefix: str, key: str) -> str:
    """A stable element id for a resource name: ids must be usable in a CSS selector, which
    names such as "users/7eac…" are not."""
    return f"{prefix}-{hashlib.blake2s(key.encode(), digest_size=8).hexdigest()}"


def css_word(text: str) -> str:
    """A word of the page as a class name: "do not disturb" -> "do-not-disturb"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clock_text(t: float, now: float) -> str:
    """HH:MM:SS (UTC) on the day of `now`, with the date on any other day."""
    moment = datetime.fromtimestamp(t, UTC)
    if moment.date() == datetime.fromtimestamp(now, UTC).date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def lag_text(seconds: float | None) -> str:
    """A bridge's lag: "—" when it has not said, else seconds (under a minute) or m:ss."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return duration_text(seconds)


def loss_percent(q: StreamQuality) -> float:
    """Packets lost as a share of those expected (RFC 3550 counts can go negative: duplicates)."""
    lost = max(q.lost, 0)
    expected = q.packets + lost
    return 100.0 * lost / expected if expected else 0.0


def loss_text(q: StreamQuality) -> str:
    return f"{loss_percent(q):.1f}%"


@dataclass(frozen=True, slots=True)
class WorstQuality:
    mos: float
    loss_percent: float
    jitter_ms: float


def worst_quality(call: CallView) -> WorstQuality | None:
    """The worst figures over every stream of the call that carried packets (None: none did)."""
    streams = [q for leg in call.legs for q in leg.quality if q.packets or q.lost > 0]
    if not streams:
        return None
    return WorstQuality(
        mos=min(q.mos for q in streams),
        loss_percent=max(loss_percent(q) for q in streams),
        jitter_ms=max(q.jitter_ms for q in streams),
    )


class Renderer:
    def __init__(
        self,
        *,
        control: str,
        static_url: str = "/static",
        events_url: str = "/events",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.control = control
        self.static_url = static_url
        self.events_url = events_url
        self._clock = clock
        self._now = clock()
        env = Environment(
            loader=PackageLoader("sip2uc_web", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.filters.update(
            iso=iso,
            clock=lambda t: clock_text(t, self._now),
            dom_id=dom_id,
            css=css_word,
            duration=duration_text,
            lag=lag_text,
            loss_percent=loss_text,
            worst_quality=worst_quality,
        )
        self._env = env
        self._rows: Any = env.get_template("rows.html").module

    def page(self, state: StateView) -> str:
        """The whole page, complete without JavaScript."""
        self._now = self._clock()
        return self._env.get_template("page.html").render(
            sections=SECTIONS,
            state=state,
            oob=False,
            control=self.control,
            static=self.static_url,
            events_url=self.events_url,
            htmx_version=HTMX_VERSION,
            sse_version=SSE_VERSION,
            refresh_seconds=NO_SCRIPT_REFRESH_SECONDS,
            now=self._now,
        )

    def section(self, state: StateView, name: str, *, oob: bool = False) -> str:
        self._now = self._clock()
        return self._section(state, name, oob=oob)

    def _section(self, state: StateView, name: str, *, oob: bool) -> str:
        if name not in SECTIONS:
            raise ValueError(f"no section {name!r}")
        return self._env.get_template(f"sections/{name}.html").render(state=state, oob=oob)

    def update(self, state: StateView, parts: Iterable[Part]) -> str:
        """Out-of-band fragments for `parts`: changed sections whole, changed rows alone."""
        self._now = self._clock()
        chosen = set(parts)
        sections = {p.section for p in chosen if not p.key}
        out = [self._section(state, name, oob=True) for name in SECTIONS if name in sections]
        for part in sorted(p for p in chosen if p.key and p.section not in sections):
            row = self._row(state, part)
            if row is not None:
                out.append(f"<template>{row}</template>")
        return "\n".join(out)

    def full_update(self, state: StateView) -> str:
        """Every section, out of band: what a browser gets first on the event stream."""
        return self.update(state, [Part(name) for name in SECTIONS])

    def _row(self, state: StateView, part: Part) -> str | None:
        if part.section == "presence":
            presence = state.presence.get(part.key)
            return None if presence is None else str(self._rows.presence_row(presence, oob=True))
        if part.section == "registrations":
            registration = state.registrations.get(part.key)
            if registration is None:
                return None
            return str(self._rows.registration_row(registration, state.user_label, oob=True))
        if part.section == "connectors":
            connector = state.connectors.get(part.key)
            return None if connector is None else str(self._rows.connector_row(connector, oob=True))
        raise ValueError(f"section {part.section!r} has no row fragments")
