"""How a call moves its parties' presence: ringing, then in a call, then back to what it was.

The record changes at once (routing reads it: busy, in a call); its commit and the watchers'
update follow in the hub's next batch, so no answer to a sidecar and no command waits for a
database commit. The call remembers whose presence it moved, so its end restores exactly those.
"""

from __future__ import annotations

from .model import Call
from .ports import PresenceRecords, UserLookup


class PartyPresence:
    def __init__(self, users: UserLookup, presence: PresenceRecords) -> None:
        self.users = users
        self.presence = presence

    def started(self, call: Call, user_id: str, *, ringing: bool) -> None:
        if self.users.get(user_id) is not None:
            engine = self.presence.engine
            self.presence.apply(
                user_id, lambda r, now: engine.on_call_started(r, call.id, ringing, now)
            )
        call.presence_users.add(user_id)

    def answered(self, call: Call, user_id: str) -> None:
        if self.users.get(user_id) is not None:
            engine = self.presence.engine
            self.presence.apply(user_id, lambda r, now: engine.on_call_answered(r, call.id, now))

    def ended(self, call: Call, user_id: str) -> None:
        """The call no longer involves `user_id` (forwarded away, or the call ended)."""
        if user_id in call.presence_users:
            self._end(call.id, user_id)
            call.presence_users.discard(user_id)

    def ended_all(self, call: Call) -> None:
        for user_id in sorted(call.presence_users):
            self._end(call.id, user_id)
        call.presence_users.clear()

    def _end(self, call_id: str, user_id: str) -> None:
        if self.users.get(user_id) is not None:
            engine = self.presence.engine
            self.presence.apply(user_id, lambda r, now: engine.on_call_ended(r, call_id, now))
