"""Connectors: rows in the database, an index in memory; and each bridge's saved state.

The connector rows (configuration, secrets, last status, watch cursor) are few and read often
(`sip2uc connector list`, every status report), so they are indexed in memory like users. A
bridge's saved state (`connector_state`, one row per key: a publication's ETag, a session id)
is read only when a process claims the connector and is written in batches by the bridge.

Every change of a connector row (created, updated, a status report that says something new,
deleted) is offered to the watch streams (`watch`), so ConnectorService.WatchConnectors follows
the reports as they arrive instead of reading the table again.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..connectors import Connector, ConnectorKind, ConnectorStatus
from ..errors import AlreadyExists, NotFound
from ..watchers import Watchers, WatchQueue
from .db import Database

_INSERT = text(
    "INSERT INTO connectors (id, kind, display_name, settings, secrets, external, disabled, "
    "watch_cursor, status, create_time, update_time) VALUES (:id, :kind, :display_name, :settings, "
    ":secrets, :external, :disabled, '', :status, :create_time, :update_time)"
)
_UPDATE = text(
    "UPDATE connectors SET kind=:kind, display_name=:display_name, settings=:settings, "
    "secrets=:secrets, external=:external, disabled=:disabled, status=:status, "
    "update_time=:update_time WHERE id=:id"
)
_UPSERT_ENTRY = text(
    "INSERT INTO connector_state (connector_id, key, value) VALUES (:c, :k, :v) "
    "ON CONFLICT (connector_id, key) DO UPDATE SET value = excluded.value"
)
_DELETE_ENTRY = text("DELETE FROM connector_state WHERE connector_id = :c AND key = :k")


@dataclass(frozen=True, slots=True)
class ConnectorChange:
    """A connector as it is now (its last state when `deleted`), for the watch streams."""

    connector: Connector
    deleted: bool = False


def _same_report(a: ConnectorStatus, b: ConnectorStatus) -> bool:
    """Whether two status reports say the same thing (only the time of the report differs)."""
    return replace(a, report_time=0.0) == replace(b, report_time=0.0)


def _row(connector: Connector) -> dict[str, Any]:
    return {
        "id": connector.id,
        "kind": connector.kind.value,
        "display_name": connector.display_name,
        "settings": json.dumps(dict(connector.settings), sort_keys=True),
        "secrets": json.dumps(dict(connector.secrets), sort_keys=True),
        "external": connector.external,
        "disabled": connector.disabled,
        "status": json.dumps(connector.status.to_dict()),
        "create_time": connector.create_time,
        "update_time": connector.update_time,
    }


def _from_row(row: Any) -> Connector:
    return Connector(
        id=row.id,
        kind=ConnectorKind(row.kind),
        display_name=row.display_name,
        settings=json.loads(row.settings),
        secrets=json.loads(row.secrets),
        external=bool(row.external),
        disabled=bool(row.disabled),
        status=ConnectorStatus.from_dict(json.loads(row.status)),
        create_time=row.create_time,
        update_time=row.update_time,
    )


class ConnectorStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._by_id: dict[str, Connector] = {}
        self._cursors: dict[str, str] = {}
        self._watchers: Watchers[ConnectorChange] = Watchers()

    async def load(self) -> None:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM connectors"))).all()
        for row in rows:
            self._by_id[row.id] = _from_row(row)
            self._cursors[row.id] = row.watch_cursor

    # --- reads ---------------------------------------------------------------------------------

    def get(self, connector_id: str) -> Connector | None:
        return self._by_id.get(connector_id)

    def require(self, connector_id: str) -> Connector:
        found = self._by_id.get(connector_id)
        if found is None:
            raise NotFound("connector", f"connectors/{connector_id}")
        return found

    def all(self) -> list[Connector]:
        return sorted(self._by_id.values(), key=lambda c: c.id)

    def cursor(self, connector_id: str) -> str:
        return self._cursors.get(connector_id, "")

    async def entries(self, connector_id: str) -> dict[str, bytes]:
        async with self.db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT key, value FROM connector_state WHERE connector_id = :c"),
                    {"c": connector_id},
                )
            ).all()
        return {row.key: base64.b64decode(row.value) for row in rows}

    # --- watching ------------------------------------------------------------------------------

    def watch(self) -> WatchQueue[ConnectorChange]:
        return self._watchers.watch()

    def unwatch(self, queue: WatchQueue[ConnectorChange]) -> None:
        self._watchers.unwatch(queue)

    def touched(self, connector_id: str) -> None:
        """Tell watchers that what the connector shows changed without a write (a process
        claimed or released its session)."""
        found = self._by_id.get(connector_id)
        if found is not None:
            self._watchers.offer(ConnectorChange(found))

    def close(self) -> None:
        """End every watch stream (server shutdown)."""
        self._watchers.end_all()

    # --- writes --------------------------------------------------------------------------------

    async def create(self, connector: Connector) -> Connector:
        if connector.id in self._by_id:
            raise AlreadyExists("connector_id", connector.id, connector.name)
        row = _row(connector)

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(_INSERT, row)

        try:
            await self.db.submit(write)
        except IntegrityError as exc:
            raise AlreadyExists("connector_id", connector.id, connector.name) from exc
        self._by_id[connector.id] = connector
        self._cursors[connector.id] = ""
        self._watchers.offer(ConnectorChange(connector))
        return connector

    async def save(self, connector: Connector) -> Connector:
        row = _row(connector)

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(_UPDATE, row)

        await self.db.submit(write)
        self._by_id[connector.id] = connector
        self._watchers.offer(ConnectorChange(connector))
        return connector

    async def save_status(self, connector_id: str, status: ConnectorStatus) -> Connector:
        current = self.require(connector_id)
        updated = replace(current, status=status)
        payload = {"id": connector_id, "status": json.dumps(status.to_dict())}

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(text("UPDATE connectors SET status=:status WHERE id=:id"), payload)

        await self.db.submit(write)
        if connector_id in self._by_id:  # not deleted meanwhile
            self._by_id[connector_id] = updated
            if not _same_report(current.status, status):
                self._watchers.offer(ConnectorChange(updated))
        return updated

    async def save_state(
        self,
        connector_id: str,
        cursor: str | None,
        upserts: Mapping[str, bytes],
        deletes: list[str],
    ) -> None:
        """Cursor and entry changes in one transaction: a restart sees both or neither."""

        async def write(conn: AsyncConnection) -> None:
            if cursor is not None:
                await conn.execute(
                    text("UPDATE connectors SET watch_cursor=:cursor WHERE id=:id"),
                    {"id": connector_id, "cursor": cursor},
                )
            if deletes:
                await conn.execute(_DELETE_ENTRY, [{"c": connector_id, "k": k} for k in deletes])
            if upserts:
                await conn.execute(
                    _UPSERT_ENTRY,
                    [
                        {"c": connector_id, "k": k, "v": base64.b64encode(v).decode("ascii")}
                        for k, v in upserts.items()
                    ],
                )

        await self.db.submit(write)
        if cursor is not None and connector_id in self._by_id:
            self._cursors[connector_id] = cursor

    async def delete(self, connector_id: str) -> None:
        async def write(conn: AsyncConnection) -> None:
            await conn.execute(
                text("DELETE FROM connector_state WHERE connector_id=:id"), {"id": connector_id}
            )
            await conn.execute(text("DELETE FROM connectors WHERE id=:id"), {"id": connector_id})

        await self.db.submit(write)
        gone = self._by_id.pop(connector_id, None)
        self._cursors.pop(connector_id, None)
        if gone is not None:
            self._watchers.offer(ConnectorChange(gone, deleted=True))
