"""Registration bindings: in memory for lookups, persisted by group commit."""

from __future__ import annotations

import heapq
from dataclasses import asdict

from sqlalchemy import text

from ..bindings import Binding
from .db import Database

_COLUMNS = (
    "id, user_id, device_id, aor, contact_uri, source_host, source_port, transport, sidecar, "
    "user_agent, q_milli, call_id, cseq, instance_id, expire_time, create_time, refresh_time"
)
_INSERT = text(
    f"INSERT INTO bindings ({_COLUMNS}) VALUES (:id, :user_id, :device_id, :aor, :contact_uri, "  # noqa: S608
    ":source_host, :source_port, :transport, :sidecar, :user_agent, :q_milli, :call_id, :cseq, "
    ":instance_id, :expire_time, :create_time, :refresh_time)"
)
_UPDATE = text(
    "UPDATE bindings SET contact_uri=:contact_uri, source_host=:source_host, "
    "source_port=:source_port, transport=:transport, sidecar=:sidecar, user_agent=:user_agent, "
    "q_milli=:q_milli, call_id=:call_id, cseq=:cseq, instance_id=:instance_id, "
    "expire_time=:expire_time, refresh_time=:refresh_time WHERE id=:id"
)
_DELETE = text("DELETE FROM bindings WHERE id=:id")


class BindingStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.by_id: dict[str, Binding] = {}
        self.by_user: dict[str, dict[str, Binding]] = {}
        self._expiry: list[tuple[float, str]] = []

    async def load(self) -> None:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text(f"SELECT {_COLUMNS} FROM bindings"))).all()  # noqa: S608
        for row in rows:
            self._index(Binding(**row._asdict()))

    def _index(self, binding: Binding) -> None:
        self.by_id[binding.id] = binding
        self.by_user.setdefault(binding.user_id, {})[binding.id] = binding
        heapq.heappush(self._expiry, (binding.expire_time, binding.id))

    def _unindex(self, binding: Binding) -> None:
        self.by_id.pop(binding.id, None)
        per_user = self.by_user.get(binding.user_id)
        if per_user is not None:
            per_user.pop(binding.id, None)
            if not per_user:
                del self.by_user[binding.user_id]

    def for_user(self, user_id: str) -> list[Binding]:
        return sorted(
            self.by_user.get(user_id, {}).values(), key=lambda b: (-b.q_milli, b.create_time)
        )

    def count_user(self, user_id: str) -> int:
        return len(self.by_user.get(user_id, ()))

    def all(self) -> list[Binding]:
        return sorted(self.by_id.values(), key=lambda b: (b.user_id, b.create_time, b.id))

    async def apply(self, upserts: list[Binding], removals: list[Binding]) -> None:
        """Persist a REGISTER's effect in one group commit, then update the index."""
        inserts = [asdict(b) for b in upserts if b.id not in self.by_id]
        updates = [asdict(b) for b in upserts if b.id in self.by_id]
        deletes = [{"id": b.id} for b in removals]

        statements = [
            (clause, rows)
            for clause, rows in ((_INSERT, inserts), (_UPDATE, updates), (_DELETE, deletes))
            if rows
        ]
        if statements:
            await self.db.submit_rows(statements)
        for b in removals:
            self._unindex(b)
        for b in upserts:
            self._index(b)

    def due(self, now: float) -> list[Binding]:
        """Bindings whose expiry has passed (stale heap entries of refreshed bindings are skipped)."""
        out: list[Binding] = []
        while self._expiry and self._expiry[0][0] <= now:
            _, bid = heapq.heappop(self._expiry)
            b = self.by_id.get(bid)
            if b is not None and b.expire_time <= now:
                out.append(b)
        return out

    def forget_user(self, user_id: str) -> None:
        for b in list(self.by_user.get(user_id, {}).values()):
            self._unindex(b)
