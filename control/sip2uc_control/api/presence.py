"""PresenceService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from sip2uc.v1 import common_pb2, presence_pb2, presence_pb2_grpc

from ..connectors import connector_id
from ..core import ControlCore
from ..domain import User
from ..errors import FieldViolation, InvalidArgument
from ..presence import Source
from .convert import AVAILABILITY_FROM_PB, SOURCE_FROM_PB, change_to_pb, from_ts, presence_to_pb
from .status import streaming, unary

Ctx = grpc.aio.ServicerContext[Any, Any]
MAX_TTL = 30 * 86400
MAX_BATCH = 1000


class PresenceServicer(presence_pb2_grpc.PresenceServiceServicer):
    def __init__(self, core: ControlCore) -> None:
        self.core = core

    def _presence(self, user: User) -> presence_pb2.Presence:
        record = self.core.presence.record(user.id)
        return presence_to_pb(
            user,
            user.id,
            self.core.presence.engine.resolve(record),
            self.core.bindings.count_user(user.id) > 0,
            len(record.calls),
        )

    @staticmethod
    def _override_source(value: int, field: str) -> Source:
        if value == common_pb2.PRESENCE_SOURCE_UNSPECIFIED:
            return Source.MANUAL
        source = SOURCE_FROM_PB.get(value)  # type: ignore[call-overload]
        if source not in (Source.MANUAL, Source.EXTERNAL):
            raise InvalidArgument(
                FieldViolation(field, "only MANUAL or EXTERNAL can be set or cleared")
            )
        return Source(source)

    def _origin(self, origin: str, source: Source) -> str | None:
        """The connector an EXTERNAL state comes from (checked to exist), or None."""
        if not origin:
            return None
        if source is not Source.EXTERNAL:
            raise InvalidArgument(FieldViolation("origin", "only an EXTERNAL state has an origin"))
        connector = self.core.connectors.get(connector_id(origin))
        if connector is None:
            raise InvalidArgument(
                FieldViolation("origin", f"{origin!r} is not a connector (connectors/{{id}})")
            )
        return connector.name

    @unary
    async def GetPresence(
        self, request: presence_pb2.GetPresenceRequest, context: Ctx
    ) -> presence_pb2.GetPresenceResponse:
        user = self.core.resolve_user(request.user, "user")
        return presence_pb2.GetPresenceResponse(presence=self._presence(user))

    @unary
    async def BatchGetPresence(
        self, request: presence_pb2.BatchGetPresenceRequest, context: Ctx
    ) -> presence_pb2.BatchGetPresenceResponse:
        if not 1 <= len(request.users) <= MAX_BATCH:
            raise InvalidArgument(FieldViolation("users", f"give 1-{MAX_BATCH} user references"))
        users = [self.core.resolve_user(ref, f"users[{i}]") for i, ref in enumerate(request.users)]
        return presence_pb2.BatchGetPresenceResponse(presences=[self._presence(u) for u in users])

    @unary
    async def SetPresence(
        self, request: presence_pb2.SetPresenceRequest, context: Ctx
    ) -> presence_pb2.SetPresenceResponse:
        user = self.core.resolve_user(request.user, "user")
        availability = AVAILABILITY_FROM_PB.get(request.availability)
        if availability is None:
            raise InvalidArgument(FieldViolation("availability", "required"))
        source = self._override_source(request.source, "source")
        now = self.core.clock()
        expires_at: float | None = None
        which = request.WhichOneof("expiry")
        if which == "ttl":
            seconds = request.ttl.ToNanoseconds() / 1e9
            if not 1 <= seconds <= MAX_TTL:
                raise InvalidArgument(FieldViolation("ttl", "must be 1 second to 30 days"))
            expires_at = now + seconds
        elif which == "expire_time":
            expires_at = from_ts(request.expire_time)
            if not now < expires_at <= now + MAX_TTL:
                raise InvalidArgument(
                    FieldViolation("expire_time", "must be in the future, at most 30 days ahead")
                )
        origin = self._origin(request.origin, source)
        await self.core.set_presence(
            user, availability, source, expires_at, request.note or None, origin
        )
        return presence_pb2.SetPresenceResponse(presence=self._presence(user))

    @unary
    async def ClearPresence(
        self, request: presence_pb2.ClearPresenceRequest, context: Ctx
    ) -> presence_pb2.ClearPresenceResponse:
        user = self.core.resolve_user(request.user, "user")
        source = self._override_source(request.source, "source")
        await self.core.clear_presence(user, source, self._origin(request.origin, source))
        return presence_pb2.ClearPresenceResponse(presence=self._presence(user))

    @streaming
    async def WatchPresence(
        self, request: presence_pb2.WatchPresenceRequest, context: Ctx
    ) -> AsyncIterator[presence_pb2.WatchPresenceResponse]:
        if len(request.users) > MAX_BATCH:
            # Each watched id is held for the stream's life: the same cap as BatchGetPresence.
            raise InvalidArgument(
                FieldViolation("users", f"give at most {MAX_BATCH} user references")
            )
        users = [self.core.resolve_user(ref, f"users[{i}]") for i, ref in enumerate(request.users)]
        ids = frozenset(u.id for u in users) if users else None
        cursor: int | None = None
        if request.cursor:
            if not request.cursor.isdigit():
                raise InvalidArgument(
                    FieldViolation("cursor", "not a cursor from a previous response")
                )
            cursor = int(request.cursor)

        def snapshot_ids() -> list[str]:
            return sorted(ids) if ids is not None else [u.id for u in self.core.users.all()]

        # Accepted: say so now rather than with the first change, which may be hours away (a
        # watcher that reconnects learns at once that it is back).
        await context.send_initial_metadata(())
        async for item in self.core.presence.watch(ids, cursor, snapshot_ids):
            if item.snapshot is not None:
                presences = [
                    self._presence(u)
                    for uid in item.snapshot
                    if (u := self.core.users.get(uid)) is not None
                ]
                yield presence_pb2.WatchPresenceResponse(
                    snapshot=presence_pb2.PresenceSnapshot(
                        presences=presences, cursor_expired=item.cursor_expired
                    ),
                    cursor=str(item.cursor),
                )
            elif item.change is not None:
                user = self.core.users.get(item.change.user)
                change = change_to_pb(user, item.change)
                if user is not None:
                    change.current.registered = self.core.bindings.count_user(user.id) > 0
                yield presence_pb2.WatchPresenceResponse(change=change, cursor=str(item.cursor))
