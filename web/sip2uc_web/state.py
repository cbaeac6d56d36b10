"""The state view's picture of the control plane, fed by the watch streams.

Sans-IO: the feeds call one method per stream message; each returns the parts of the page that
changed (`Part`), which the hub re-renders and sends to the browsers. A part is a whole section
(`Part("calls")`) or one table row (`Part("presence", "users/…")`) when only that row changed
and it is on the page; rows that appear, disappear or move make their whole section change.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from .model import (
    CallView,
    ConnectorView,
    FeedStatus,
    LogEntryView,
    PresenceView,
    RegistrationView,
    SidecarView,
)

# The sections of the page, in page order.
SECTIONS = (
    "summary",
    "feeds",
    "sidecars",
    "presence",
    "registrations",
    "calls",
    "history",
    "connectors",
    "warnings",
)
# Rows a table shows at most (the API and the CLI list the rest): the page stays usable and a
# change costs the browser a bounded amount of work however large the installation.
ROW_LIMIT = 1000
HISTORY_LIMIT = 25
WARNINGS_LIMIT = 50
AVAILABILITIES = (
    "available",
    "busy",
    "in a call",
    "do not disturb",
    "be right back",
    "away",
    "offline",
)


@dataclass(frozen=True, slots=True, order=True)
class Part:
    """A piece of the page to render again: a section, or one row of it (`key`)."""

    section: str
    key: str = ""


def _section(*names: str) -> set[Part]:
    return {Part(name) for name in names}


def extension_order(extension: str, sip_uri: str) -> tuple[bool, int, str, str]:
    """Numeric extensions in numeric order, then the others, then users without one."""
    numeric = extension.isdigit()
    return (not numeric, int(extension) if numeric else 0, extension or "\uffff", sip_uri)


class StateView:
    def __init__(
        self,
        row_limit: int = ROW_LIMIT,
        history_limit: int = HISTORY_LIMIT,
        warnings_limit: int = WARNINGS_LIMIT,
    ) -> None:
        self.row_limit = row_limit
        self.history_limit = history_limit
        self.sidecars: dict[str, SidecarView] = {}
        self.registrations: dict[str, RegistrationView] = {}
        self.presence: dict[str, PresenceView] = {}
        self.calls: dict[str, CallView] = {}
        self.history: list[CallView] = []  # newest first
        self.warnings: deque[LogEntryView] = deque(maxlen=warnings_limit)  # oldest first
        self.connectors: dict[str, ConnectorView] = {}
        self.feeds: dict[str, FeedStatus] = {}
        self._presence_rows: list[PresenceView] | None = None
        self._registration_rows: list[RegistrationView] | None = None
        # Positions of the rows in the cached orders, and which of them the page shows.
        self._presence_at: dict[str, int] = {}
        self._registration_at: dict[str, int] = {}

    # --- what the templates read ---------------------------------------------------------------

    def presence_rows(self) -> list[PresenceView]:
        """Every user's presence in extension order (the table shows the first `row_limit`)."""
        if self._presence_rows is None:
            self._presence_rows = sorted(
                self.presence.values(), key=lambda p: extension_order(p.extension, p.sip_uri)
            )
            self._presence_at = {p.user: i for i, p in enumerate(self._presence_rows)}
        return self._presence_rows

    def registration_rows(self) -> list[RegistrationView]:
        """Bindings by their user's extension, then contact."""
        if self._registration_rows is None:

            def order(r: RegistrationView) -> tuple[tuple[bool, int, str, str], str, str]:
                user = self.presence.get(r.user)
                key = extension_order(user.extension, user.sip_uri) if user else (True, 0, "", "")
                return key, r.contact_uri, r.name

            self._registration_rows = sorted(self.registrations.values(), key=order)
            self._registration_at = {r.name: i for i, r in enumerate(self._registration_rows)}
        return self._registration_rows

    def live_calls(self) -> list[CallView]:
        return sorted(self.calls.values(), key=lambda c: (c.start_time or 0.0, c.name))

    def sidecar_rows(self) -> list[SidecarView]:
        return [self.sidecars[name] for name in sorted(self.sidecars)]

    def connector_rows(self) -> list[ConnectorView]:
        return [self.connectors[name] for name in sorted(self.connectors)]

    def bindings_per_sidecar(self) -> dict[str, int]:
        """Bindings by the sidecar they registered through (live, unlike the API's figure,
        which is as of the sidecar's last heartbeat)."""
        counts: dict[str, int] = {}
        for r in self.registrations.values():
            counts[r.sidecar] = counts.get(r.sidecar, 0) + 1
        return counts

    def recent_warnings(self) -> list[LogEntryView]:
        """Newest first."""
        return list(reversed(self.warnings))

    def user_label(self, ref: str) -> str:
        """A user reference as people know the user: the extension, else the SIP URI."""
        user = self.presence.get(ref)
        if user is None:
            return ref
        return user.extension or user.sip_uri

    def counts(self) -> dict[str, int]:
        """The figures of the summary."""
        registered = sum(1 for p in self.presence.values() if p.registered)
        connected = sum(1 for s in self.sidecars.values() if s.connected)
        return {
            "users": len(self.presence),
            "registered": registered,
            "bindings": len(self.registrations),
            "calls": len(self.calls),
            "sidecars_connected": connected,
            "sidecars_lost": len(self.sidecars) - connected,
            "bridges_connected": sum(1 for c in self.connectors.values() if c.state == "connected"),
            "bridges_not_connected": sum(
                1 for c in self.connectors.values() if c.state != "connected"
            ),
        }

    def availability_counts(self) -> list[tuple[str, int]]:
        """(availability, users) for every availability some user has, in a fixed order."""
        found: dict[str, int] = {}
        for p in self.presence.values():
            found[p.availability] = found.get(p.availability, 0) + 1
        known = [(a, found.pop(a)) for a in AVAILABILITIES if a in found]
        return known + sorted(found.items())

    def problems(self) -> list[FeedStatus]:
        """Feeds that are not following the control plane, by name."""
        return [f for _, f in sorted(self.feeds.items()) if f.offered and f.problem]

    def waiting(self) -> list[str]:
        """Feeds that have not delivered their first snapshot yet (and have no problem)."""
        return [
            n for n, f in sorted(self.feeds.items()) if f.offered and not f.live and not f.problem
        ]

    def offered(self, feed: str) -> bool:
        """False once the control plane said it has no such stream."""
        status = self.feeds.get(feed)
        return status is None or status.offered

    # --- sidecars ------------------------------------------------------------------------------

    def sidecars_snapshot(self, sidecars: Iterable[SidecarView]) -> set[Part]:
        self.sidecars = {s.name: s for s in sidecars}
        return _section("sidecars", "summary")

    def sidecar_changed(self, sidecar: SidecarView) -> set[Part]:
        before = self.sidecars.get(sidecar.name)
        self.sidecars[sidecar.name] = sidecar
        if before is None or before.connected != sidecar.connected:
            return _section("sidecars", "summary")
        return _section("sidecars")

    # --- registrations -------------------------------------------------------------------------

    def registrations_snapshot(self, registrations: Iterable[RegistrationView]) -> set[Part]:
        self.registrations = {r.name: r for r in registrations}
        self._registration_rows = None
        return _section("registrations", "summary", "sidecars")

    def registration_added(self, registration: RegistrationView) -> set[Part]:
        if registration.name in self.registrations:
            return self.registration_refreshed(registration)
        self.registrations[registration.name] = registration
        self._registration_rows = None
        return _section("registrations", "summary", "sidecars")

    def registration_refreshed(self, registration: RegistrationView) -> set[Part]:
        before = self.registrations.get(registration.name)
        if before is None:
            return self.registration_added(registration)
        self.registrations[registration.name] = registration
        if (before.user, before.contact_uri) != (registration.user, registration.contact_uri):
            self._registration_rows = None  # it moves
            return _section("registrations")
        rows = self.registration_rows()
        at = self._registration_at[registration.name]
        rows[at] = registration
        return {Part("registrations", registration.name)} if at < self.row_limit else set()

    def registration_removed(self, registration: RegistrationView) -> set[Part]:
        if self.registrations.pop(registration.name, None) is None:
            return set()
        self._registration_rows = None
        return _section("registrations", "summary", "sidecars")

    # --- presence ------------------------------------------------------------------------------

    def presence_snapshot(self, presences: Iterable[PresenceView]) -> set[Part]:
        self.presence = {p.user: p for p in presences}
        self._presence_rows = None
        self._registration_rows = None  # ordered by extension
        return _section("presence", "summary", "registrations", "calls", "history")

    def presence_changed(self, presence: PresenceView) -> set[Part]:
        before = self.presence.get(presence.user)
        self.presence[presence.user] = presence
        parts = {Part("summary")}
        if before is None or (before.extension, before.sip_uri) != (
            presence.extension,
            presence.sip_uri,
        ):
            # A new user, or one whose name moves the row and relabels calls and bindings.
            self._presence_rows = None
            self._registration_rows = None
            return parts | _section("presence", "registrations", "calls", "history")
        rows = self.presence_rows()
        at = self._presence_at[presence.user]
        rows[at] = presence  # same place: only its row changes
        if at < self.row_limit:
            parts.add(Part("presence", presence.user))
        return parts

    # --- calls ---------------------------------------------------------------------------------

    def calls_snapshot(self, calls: Iterable[CallView]) -> set[Part]:
        self.calls = {c.name: c for c in calls if not c.ended}
        return _section("calls", "summary")

    def call_changed(self, call: CallView) -> set[Part]:
        if not call.ended:
            known = call.name in self.calls
            self.calls[call.name] = call
            return _section("calls") if known else _section("calls", "summary")
        was_live = self.calls.pop(call.name, None) is not None
        self._remember([call])
        return _section("calls", "history", "summary") if was_live else _section("history")

    def history_loaded(self, calls: Iterable[CallView]) -> set[Part]:
        self._remember(calls)
        return _section("history")

    def _remember(self, ended: Iterable[CallView]) -> None:
        by_name = {c.name: c for c in self.history}
        by_name.update((c.name, c) for c in ended)
        newest = sorted(
            by_name.values(), key=lambda c: (c.end_time or 0.0, c.start_time or 0.0), reverse=True
        )
        self.history = newest[: self.history_limit]

    # --- connectors (UC bridges) ---------------------------------------------------------------

    def connectors_snapshot(self, connectors: Iterable[ConnectorView]) -> set[Part]:
        self.connectors = {c.name: c for c in connectors}
        return _section("connectors", "summary")

    def connector_changed(self, connector: ConnectorView) -> set[Part]:
        before = self.connectors.get(connector.name)
        self.connectors[connector.name] = connector
        if before is not None and before.state == connector.state:
            return {Part("connectors", connector.name)}
        return _section("connectors", "summary")

    def connector_deleted(self, connector: ConnectorView) -> set[Part]:
        if self.connectors.pop(connector.name, None) is None:
            return set()
        return _section("connectors", "summary")

    # --- warnings ------------------------------------------------------------------------------

    def warnings_snapshot(self, entries: Iterable[LogEntryView]) -> set[Part]:
        self.warnings.clear()
        self.warnings.extend(entries)
        return _section("warnings")

    def warning_logged(self, entry: LogEntryView) -> set[Part]:
        self.warnings.append(entry)
        return _section("warnings")

    # --- the feeds themselves ------------------------------------------------------------------

    def feed_changed(self, status: FeedStatus) -> set[Part]:
        if self.feeds.get(status.name) == status:
            return set()
        self.feeds[status.name] = status
        return _section("feeds")
