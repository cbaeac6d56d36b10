"""RegistrationService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from sip2uc.v1 import common_pb2, registrations_pb2, registrations_pb2_grpc

from ..core import ControlCore
from ..errors import FieldViolation, InvalidArgument, NotFound
from .convert import binding_to_pb, ts
from .paging import decode_token, encode_token, page_size
from .status import streaming, unary

Ctx = grpc.aio.ServicerContext[Any, Any]

_EVENT_TYPES = {
    "added": registrations_pb2.REGISTRATION_EVENT_TYPE_ADDED,
    "refreshed": registrations_pb2.REGISTRATION_EVENT_TYPE_REFRESHED,
    "removed": registrations_pb2.REGISTRATION_EVENT_TYPE_REMOVED,
}


class RegistrationServicer(registrations_pb2_grpc.RegistrationServiceServicer):
    def __init__(self, core: ControlCore) -> None:
        self.core = core

    @unary
    async def ListRegistrations(
        self, request: registrations_pb2.ListRegistrationsRequest, context: Ctx
    ) -> registrations_pb2.ListRegistrationsResponse:
        size = page_size(request.page_size)
        offset = decode_token(request.page_token)
        if request.user:
            bindings = self.core.bindings.for_user(self.core.resolve_user(request.user, "user").id)
        else:
            bindings = self.core.bindings.all()
        if request.sidecar:
            bindings = [b for b in bindings if b.sidecar == request.sidecar]
        page = bindings[offset : offset + size]
        return registrations_pb2.ListRegistrationsResponse(
            registrations=[binding_to_pb(b) for b in page],
            next_page_token=encode_token(offset + size) if offset + size < len(bindings) else "",
        )

    @unary
    async def ListSubscriptions(
        self, request: registrations_pb2.ListSubscriptionsRequest, context: Ctx
    ) -> registrations_pb2.ListSubscriptionsResponse:
        size = page_size(request.page_size)
        offset = decode_token(request.page_token)
        uid = self.core.resolve_user(request.user, "user").id if request.user else None
        held = self.core.subscriptions.listing(uid, self.core.clock())
        page = held[offset : offset + size]
        return registrations_pb2.ListSubscriptionsResponse(
            subscriptions=[
                registrations_pb2.Subscription(
                    name=f"subscriptions/{h.id}",
                    watcher=f"users/{h.watcher}",
                    event=h.event,
                    resource_uri=h.resource_uri,
                    users=[f"users/{u}" for u in h.users],
                    sidecar=h.sidecar,
                    source=common_pb2.SocketAddress(host=h.source_host, port=h.source_port),
                    expire_time=ts(h.expires_at),
                )
                for h in page
            ],
            next_page_token=encode_token(offset + size) if offset + size < len(held) else "",
        )

    @unary
    async def GetRegistration(
        self, request: registrations_pb2.GetRegistrationRequest, context: Ctx
    ) -> registrations_pb2.GetRegistrationResponse:
        binding = self.core.bindings.by_id.get(request.name.removeprefix("registrations/"))
        if binding is None:
            raise NotFound("registration", request.name)
        return registrations_pb2.GetRegistrationResponse(registration=binding_to_pb(binding))

    @unary
    async def DeleteRegistration(
        self, request: registrations_pb2.DeleteRegistrationRequest, context: Ctx
    ) -> registrations_pb2.DeleteRegistrationResponse:
        name = request.name.strip()
        if not name:
            raise InvalidArgument(
                FieldViolation("name", "required: registrations/{id} or <user>/registrations/-")
            )
        if name.endswith("/registrations/-"):
            user = self.core.resolve_user(name.removesuffix("/registrations/-"), "name")
            removed = await self.core.remove_bindings(
                self.core.bindings.for_user(user.id), "deleted"
            )
        else:
            binding = self.core.bindings.by_id.get(name.removeprefix("registrations/"))
            if binding is None:
                raise NotFound("registration", name)
            removed = await self.core.remove_bindings([binding], "deleted")
        return registrations_pb2.DeleteRegistrationResponse(removed=removed)

    @streaming
    async def WatchRegistrations(
        self, request: registrations_pb2.WatchRegistrationsRequest, context: Ctx
    ) -> AsyncIterator[registrations_pb2.WatchRegistrationsResponse]:
        user_id = self.core.resolve_user(request.user, "user").id if request.user else None
        queue = self.core.watch_bindings()
        try:
            current = self.core.bindings.for_user(user_id) if user_id else self.core.bindings.all()
            for b in current:
                yield registrations_pb2.WatchRegistrationsResponse(
                    type=registrations_pb2.REGISTRATION_EVENT_TYPE_EXISTING,
                    registration=binding_to_pb(b),
                )
            yield registrations_pb2.WatchRegistrationsResponse(snapshot_complete=True)
            while True:
                change = await queue.get()
                if change is None:
                    return
                if user_id and change.binding.user_id != user_id:
                    continue
                yield registrations_pb2.WatchRegistrationsResponse(
                    type=_EVENT_TYPES[change.kind],
                    registration=binding_to_pb(change.binding),
                    reason=change.reason,
                )
        finally:
            self.core.unwatch_bindings(queue)
