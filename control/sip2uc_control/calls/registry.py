"""The live calls: found by call id or by any of their legs, and watched (`CallService.WatchCalls`)."""

from __future__ import annotations

import secrets
from collections import OrderedDict

from ..watchers import WATCH_QUEUE_LIMIT, Watchers, WatchQueue
from .model import Call, Leg

#: How many ended calls the registry remembers as ended here (a sidecar that was away while one
#: of them ended must not have its leg taken back as a lost call).
ENDED_MEMORY = 10_000


def new_id() -> str:
    """A call or leg id: 64 random bits in hex."""
    return secrets.token_hex(8)


class CallRegistry:
    def __init__(self) -> None:
        self.calls: dict[str, Call] = {}
        self.by_leg: dict[str, str] = {}
        # Ended calls whose history row is still being written: no longer live, not yet stored.
        self.ending: dict[str, Call] = {}
        self._ended_here: OrderedDict[str, None] = OrderedDict()
        self.watchers: Watchers[Call] = Watchers()

    def add(self, call: Call) -> None:
        self.calls[call.id] = call
        for leg_id in call.legs:
            self.by_leg[leg_id] = call.id

    def add_leg(self, call: Call, leg: Leg) -> None:
        call.legs[leg.id] = leg
        self.by_leg[leg.id] = call.id

    def remove(self, call: Call) -> None:
        """The call is no longer live; `ended(name)` finds it until `stored(call)`."""
        self.calls.pop(call.id, None)
        for leg_id in call.legs:
            self.by_leg.pop(leg_id, None)
        self.ending[call.id] = call
        self._ended_here[call.id] = None
        while len(self._ended_here) > ENDED_MEMORY:
            self._ended_here.popitem(last=False)

    def ended_here(self, call_id: str) -> bool:
        """The call was live in this control plane and has ended (recently)."""
        return call_id in self._ended_here

    def stored(self, call: Call) -> None:
        """The ended call's history row is written (or given up): the history finds it now."""
        self.ending.pop(call.id, None)

    def ended(self, name: str) -> Call | None:
        """An ended call whose history row is still being written."""
        return self.ending.get(name.removeprefix("calls/"))

    def get(self, name: str) -> Call | None:
        """A live call by id or resource name (`calls/{id}`)."""
        return self.calls.get(name.removeprefix("calls/"))

    def of_leg(self, leg_id: str) -> Call | None:
        return self.calls.get(self.by_leg.get(leg_id, ""))

    def live(self) -> list[Call]:
        """Oldest first."""
        return sorted(self.calls.values(), key=lambda c: c.start_time)

    def snapshot(self) -> list[Call]:
        """The live calls in no particular order, safe to iterate while calls end."""
        return list(self.calls.values())

    def count(self) -> int:
        return len(self.calls)

    def publish(self, call: Call) -> None:
        self.watchers.offer(call)

    def watch(self, limit: int = WATCH_QUEUE_LIMIT) -> WatchQueue[Call]:
        return self.watchers.watch(limit)

    def unwatch(self, q: WatchQueue[Call]) -> None:
        self.watchers.unwatch(q)
