"""AdminService."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import grpc
from sip2uc.v1 import admin_pb2, admin_pb2_grpc, common_pb2

from .. import __version__
from ..core import ControlCore
from ..errors import FieldViolation, InvalidArgument
from ..settings import ServerSettings
from .convert import (
    AVAILABILITY_TO_PB,
    server_settings_field_from_pb,
    server_settings_to_pb,
    sidecar_to_pb,
    ts,
)
from .status import unary

Ctx = grpc.aio.ServicerContext[Any, Any]
_SETTINGS_FIELDS = {f.name for f in fields(ServerSettings)}


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, core: ControlCore, on_settings_changed: Any = None) -> None:
        self.core = core
        self.on_settings_changed = on_settings_changed

    @unary
    async def GetSettings(
        self, request: admin_pb2.GetSettingsRequest, context: Ctx
    ) -> admin_pb2.GetSettingsResponse:
        return admin_pb2.GetSettingsResponse(
            settings=server_settings_to_pb(self.core.settings.current)
        )

    @unary
    async def UpdateSettings(
        self, request: admin_pb2.UpdateSettingsRequest, context: Ctx
    ) -> admin_pb2.UpdateSettingsResponse:
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(
                FieldViolation("update_mask", "name at least one field to update")
            )
        unknown = [p for p in paths if p not in _SETTINGS_FIELDS]
        if unknown:
            raise InvalidArgument(
                [FieldViolation("update_mask", f"unknown settings field {p!r}") for p in unknown]
            )
        changes: dict[str, Any] = {
            p: server_settings_field_from_pb(p, request.settings) for p in paths
        }
        saved = await self.core.update_settings(replace(self.core.settings.current, **changes))
        if self.on_settings_changed is not None:
            self.on_settings_changed()
        return admin_pb2.UpdateSettingsResponse(settings=server_settings_to_pb(saved))

    @unary
    async def ListSidecars(
        self, request: admin_pb2.ListSidecarsRequest, context: Ctx
    ) -> admin_pb2.ListSidecarsResponse:
        counts: dict[str, int] = {}
        for b in self.core.bindings.by_id.values():
            counts[b.sidecar] = counts.get(b.sidecar, 0) + 1
        return admin_pb2.ListSidecarsResponse(
            sidecars=[
                sidecar_to_pb(s, counts.get(s.name, 0))
                for s in sorted(self.core.sidecars.sidecars.values(), key=lambda s: s.name)
            ]
        )

    @unary
    async def GetStatus(
        self, request: admin_pb2.GetStatusRequest, context: Ctx
    ) -> admin_pb2.GetStatusResponse:
        core = self.core
        user_ids = list(core.users.index.by_id)
        presence = {
            common_pb2.Availability.Name(AVAILABILITY_TO_PB[a]): n
            for a, n in core.presence.counts(user_ids).items()
        }
        sidecars = core.sidecars.sidecars.values()
        return admin_pb2.GetStatusResponse(
            users=len(user_ids),
            registered_users=len(core.bindings.by_user),
            bindings=len(core.bindings.by_id),
            active_calls=core.calls.active_count(),
            sidecars_connected=sum(1 for s in sidecars if s.connected),
            sidecars_lost=sum(1 for s in sidecars if not s.connected),
            presence=presence,
            version=__version__,
            start_time=ts(core.start_time),
        )
