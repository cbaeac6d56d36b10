"""The presence engine: merges a user's presence layers and reports every change.

Layers, highest precedence first::

    MANUAL / EXTERNAL   an override set by a presence code, the API or a UC connector;
                        of the two, the more recently set wins (a tie goes to MANUAL,
                        the person at the handset); either may carry an expiry
    CALL                a connected call -> IN_A_CALL; a ringing call is reported as
                        activity RINGING and only shows IN_A_CALL when the engine is
                        configured with ``ringing_is_in_a_call``
    REGISTRATION        at least one binding -> AVAILABLE, none -> OFFLINE

Each layer is kept separately in the :class:`PresenceRecord`, so removing a higher layer shows
whatever the lower layers say at that moment: that is how the state before a call comes back when
the call ends, and how the lower layers show again when a manual state is cleared or lapses.

Every transition function takes the record and ``now`` and returns ``(new_record, change)``.
``change`` is None when the effective presence did not change (no spurious events) even though
the record may have (a second binding, a second call, a refreshed override). Overrides whose
expiry has passed are lapsed before any transition, so a late timer cannot resurrect them; the
caller still arms a timer for :meth:`PresenceEngine.next_deadline` and calls
:meth:`PresenceEngine.expire` to publish the lapse on time.

Decisions taken here:

- Manual OFFLINE is allowed ("appear offline"); manual IN_A_CALL is not, because that state is
  derived from real calls. An EXTERNAL source may report IN_A_CALL: the UC side can know the
  user is in a call elsewhere (a meeting on a laptop).
- Manual AVAILABLE is a valid override (it hides the call layer: shown available while on the
  phone). The presence-code table's reset code clears the manual state instead of setting
  AVAILABLE, so the handset's real state shows again; see ``routing.codes``.
- An EXTERNAL state reported again unchanged (same availability, note, expiry and connector) is
  a no-op: precedence between MANUAL and EXTERNAL goes by when a state was *set*, and a bridge
  restarting or refreshing its subscription does not set anything new.
- A call answered that was never reported as started (the control plane restarted mid-ring) is
  added as connected; ending an unknown call changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace

from .model import (
    Activity,
    Availability,
    CallEntry,
    CallPhase,
    EffectivePresence,
    Override,
    PresenceChange,
    PresenceError,
    PresenceRecord,
    Reason,
    Source,
    check_note,
)

__all__ = ["OVERRIDE_SOURCES", "PresenceEngine", "Transition"]

Transition = tuple[PresenceRecord, PresenceChange | None]

# Which layer each input belongs to; PresenceChange.source is taken from here.
_REASON_SOURCE: dict[Reason, Source] = {
    Reason.REGISTERED: Source.REGISTRATION,
    Reason.UNREGISTERED: Source.REGISTRATION,
    Reason.CALL_STARTED: Source.CALL,
    Reason.CALL_ANSWERED: Source.CALL,
    Reason.CALL_ENDED: Source.CALL,
    Reason.CALLS_RECONCILED: Source.CALL,
    Reason.MANUAL_SET: Source.MANUAL,
    Reason.MANUAL_CLEARED: Source.MANUAL,
    Reason.MANUAL_EXPIRED: Source.MANUAL,
    Reason.EXTERNAL_SET: Source.EXTERNAL,
    Reason.EXTERNAL_CLEARED: Source.EXTERNAL,
    Reason.EXTERNAL_EXPIRED: Source.EXTERNAL,
}

OVERRIDE_SOURCES = frozenset({Source.MANUAL, Source.EXTERNAL})

# Availabilities each override source may set (see the module docstring for why).
_ALLOWED: dict[Source, frozenset[Availability]] = {
    Source.MANUAL: frozenset(Availability) - {Availability.IN_A_CALL},
    Source.EXTERNAL: frozenset(Availability),
}

_SET_REASON = {Source.MANUAL: Reason.MANUAL_SET, Source.EXTERNAL: Reason.EXTERNAL_SET}
_CLEAR_REASON = {Source.MANUAL: Reason.MANUAL_CLEARED, Source.EXTERNAL: Reason.EXTERNAL_CLEARED}
_EXPIRE_REASON = {Source.MANUAL: Reason.MANUAL_EXPIRED, Source.EXTERNAL: Reason.EXTERNAL_EXPIRED}


def _override(record: PresenceRecord, source: Source) -> Override | None:
    return record.manual if source is Source.MANUAL else record.external


def _with_override(
    record: PresenceRecord, source: Source, value: Override | None
) -> PresenceRecord:
    if source is Source.MANUAL:
        return replace(record, manual=value)
    return replace(record, external=value)


def _winning_override(record: PresenceRecord) -> tuple[Source, Override] | None:
    manual, external = record.manual, record.external
    if manual is not None and (external is None or manual.set_at >= external.set_at):
        return Source.MANUAL, manual
    if external is not None:
        return Source.EXTERNAL, external
    return None


def _lapsed(override: Override | None, now: float) -> bool:
    return override is not None and override.expires_at is not None and override.expires_at <= now


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceEngine:
    """Pure presence rules; holds configuration only, never per-user state."""

    ringing_is_in_a_call: bool = False

    # -- reading -------------------------------------------------------------------------------

    def resolve(self, record: PresenceRecord) -> EffectivePresence:
        """The effective presence of ``record`` by layer precedence."""
        phases = {entry.phase for entry in record.calls}
        if CallPhase.CONNECTED in phases:
            activity = Activity.IN_A_CALL
        elif CallPhase.RINGING in phases:
            activity = Activity.RINGING
        else:
            activity = Activity.NONE

        availability = Availability.AVAILABLE if record.registered else Availability.OFFLINE
        source = Source.REGISTRATION
        if activity is Activity.IN_A_CALL or (
            activity is Activity.RINGING and self.ringing_is_in_a_call
        ):
            availability, source = Availability.IN_A_CALL, Source.CALL

        winner = _winning_override(record)
        if winner is None:
            return EffectivePresence(
                availability=availability,
                activity=activity,
                source=source,
                since=record.changed_at,
            )
        override_source, override = winner
        return EffectivePresence(
            availability=override.availability,
            activity=activity,
            source=override_source,
            since=record.changed_at,
            note=override.note,
            expires_at=override.expires_at,
            origin=override.origin,
        )

    def next_deadline(self, record: PresenceRecord) -> float | None:
        """When :meth:`expire` next has work to do, or None if no override expires."""
        deadlines = [
            override.expires_at
            for override in (record.manual, record.external)
            if override is not None and override.expires_at is not None
        ]
        return min(deadlines, default=None)

    # -- registration layer --------------------------------------------------------------------

    def on_registered(self, record: PresenceRecord, now: float) -> Transition:
        """The user has at least one binding (call on every binding added or refreshed)."""
        return self._apply(record, now, Reason.REGISTERED, lambda r: replace(r, registered=True))

    def on_unregistered(self, record: PresenceRecord, now: float) -> Transition:
        """The user's last binding expired or was removed."""
        return self._apply(record, now, Reason.UNREGISTERED, lambda r: replace(r, registered=False))

    def on_bindings(self, record: PresenceRecord, count: int, now: float) -> Transition:
        """Convenience for the registrar: pass the user's current number of bindings."""
        if count < 0:
            raise PresenceError("count", f"a binding count cannot be negative, got {count}")
        if count:
            return self.on_registered(record, now)
        return self.on_unregistered(record, now)

    # -- call layer ----------------------------------------------------------------------------

    def on_call_started(
        self, record: PresenceRecord, call_id: str, ringing: bool, now: float
    ) -> Transition:
        """A call involving the user began.

        ``ringing`` is True for a call alerting at the user's handsets; a call the user places
        counts as connected from the start (the user is on the phone while it rings out).
        """
        if not call_id:
            raise PresenceError("call_id", "must not be empty")
        phase = CallPhase.RINGING if ringing else CallPhase.CONNECTED
        # A repeated start (a retransmitted INVITE, a second fork) must not undo an answer.
        if record.call(call_id) is not None:
            return self._apply(record, now, Reason.CALL_STARTED, lambda r: r)
        return self._apply(
            record, now, Reason.CALL_STARTED, lambda r: _set_call(r, call_id, phase, now)
        )

    def on_call_answered(self, record: PresenceRecord, call_id: str, now: float) -> Transition:
        if not call_id:
            raise PresenceError("call_id", "must not be empty")
        return self._apply(
            record,
            now,
            Reason.CALL_ANSWERED,
            lambda r: _set_call(r, call_id, CallPhase.CONNECTED, now),
        )

    def on_call_ended(self, record: PresenceRecord, call_id: str, now: float) -> Transition:
        return self._apply(
            record,
            now,
            Reason.CALL_ENDED,
            lambda r: replace(r, calls=tuple(e for e in r.calls if e.call_id != call_id)),
        )

    def on_calls_reconciled(
        self, record: PresenceRecord, live: Collection[str], now: float
    ) -> Transition:
        """Keep only the calls that exist (``live``): the call layer is derived from real calls,
        and a call the control plane no longer knows (it restarted, the call's sidecar was lost)
        must not keep the user in a call."""
        return self._apply(
            record,
            now,
            Reason.CALLS_RECONCILED,
            lambda r: replace(r, calls=tuple(e for e in r.calls if e.call_id in live)),
        )

    # -- override layers -----------------------------------------------------------------------

    def set_manual(
        self,
        record: PresenceRecord,
        availability: Availability,
        now: float,
        expires_at: float | None = None,
        note: str | None = None,
    ) -> Transition:
        """A presence code or the API set the user's state (until cleared or ``expires_at``)."""
        return self._set_override(record, Source.MANUAL, availability, now, expires_at, note)

    def set_external(
        self,
        record: PresenceRecord,
        availability: Availability,
        now: float,
        expires_at: float | None = None,
        note: str | None = None,
        origin: str | None = None,
    ) -> Transition:
        """A UC connector (``origin``, if known) reported the user's state on the UC side."""
        return self._set_override(
            record, Source.EXTERNAL, availability, now, expires_at, note, origin
        )

    def clear(
        self, record: PresenceRecord, source: Source, now: float, origin: str | None = None
    ) -> Transition:
        """Remove the MANUAL or EXTERNAL override; the lower layers show again.

        With ``origin``, an EXTERNAL override is removed only when that connector reported it:
        one connector clearing its state must not remove what another one reported.
        """
        if source not in OVERRIDE_SOURCES:
            raise PresenceError(
                "source", f"only manual or external state can be cleared, not {source}"
            )

        def remove(r: PresenceRecord) -> PresenceRecord:
            current = _override(r, source)
            if origin is not None and current is not None and current.origin != origin:
                return r
            return _with_override(r, source, None)

        return self._apply(record, now, _CLEAR_REASON[source], remove)

    def expire(self, record: PresenceRecord, now: float) -> Transition:
        """Lapse overrides whose expiry is at or before ``now``."""
        lapsed = _lapse(record, now)
        if lapsed == record:
            return record, None
        winner = _winning_override(record)
        reason = _EXPIRE_REASON[winner[0] if winner else Source.MANUAL]
        return self._commit(record, lapsed, reason, now)

    # -- internals -----------------------------------------------------------------------------

    def _set_override(
        self,
        record: PresenceRecord,
        source: Source,
        availability: Availability,
        now: float,
        expires_at: float | None,
        note: str | None,
        origin: str | None = None,
    ) -> Transition:
        if availability not in _ALLOWED[source]:
            raise PresenceError(
                "availability", f"{availability} cannot be set as {source} presence"
            )
        if expires_at is not None and expires_at <= now:
            raise PresenceError("expires_at", f"{expires_at} is not after now ({now})")
        check_note(note)
        current = _override(record, source)
        if (
            source is Source.EXTERNAL
            and current is not None
            and not _lapsed(current, now)
            and (current.availability, current.expires_at, current.note, current.origin)
            == (availability, expires_at, note, origin)
        ):
            # A connector re-reporting what it reported before (after a restart, on a refresh)
            # must not make its state "more recent" than a manual state set since.
            return record, None
        value = Override(
            availability=availability, set_at=now, expires_at=expires_at, note=note, origin=origin
        )
        return self._apply(
            record, now, _SET_REASON[source], lambda r: _with_override(r, source, value)
        )

    def _apply(
        self,
        record: PresenceRecord,
        now: float,
        reason: Reason,
        update: Callable[[PresenceRecord], PresenceRecord],
    ) -> Transition:
        lapsed = _lapse(record, now)
        updated = update(lapsed)
        if updated == lapsed and lapsed != record:
            # The input itself was a no-op; what changed is an override lapsing.
            return self.expire(record, now)
        return self._commit(record, updated, reason, now)

    def _commit(
        self, before: PresenceRecord, after: PresenceRecord, reason: Reason, now: float
    ) -> Transition:
        previous = self.resolve(before)
        if previous.same_state(self.resolve(after)):
            return replace(after, changed_at=before.changed_at), None
        after = replace(after, changed_at=now)
        source = _REASON_SOURCE[reason]
        origin: str | None = None
        if source is Source.EXTERNAL:
            # set: the new override's; cleared or lapsed: the one that went away.
            reported = after.external if after.external is not None else before.external
            origin = reported.origin if reported is not None else None
        change = PresenceChange(
            user=after.user,
            previous=previous,
            current=self.resolve(after),
            source=source,
            reason=reason,
            at=now,
            origin=origin,
        )
        return after, change


def _set_call(record: PresenceRecord, call_id: str, phase: CallPhase, now: float) -> PresenceRecord:
    existing = record.call(call_id)
    if existing is not None and existing.phase is phase:
        return record
    entry = CallEntry(call_id=call_id, phase=phase, since=now)
    if existing is None:
        return replace(record, calls=(*record.calls, entry))
    return replace(record, calls=tuple(entry if e.call_id == call_id else e for e in record.calls))


def _lapse(record: PresenceRecord, now: float) -> PresenceRecord:
    if _lapsed(record.manual, now):
        record = replace(record, manual=None)
    if _lapsed(record.external, now):
        record = replace(record, external=None)
    return record
