"""AdminService."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from dataclasses import fields, replace
from typing import Any

import grpc
from sip2uc.v1 import admin_pb2, admin_pb2_grpc, common_pb2

from .. import __version__
from ..core import ControlCore
from ..errors import FieldViolation, InvalidArgument, NotFound
from ..recent_log import RecentLog
from ..settings import ServerSettings
from ..sidecars import SidecarInfo
from .convert import (
    AVAILABILITY_TO_PB,
    account_lock_to_pb,
    enrollment_to_pb,
    log_entry_to_pb,
    log_level_from_pb,
    server_settings_field_from_pb,
    server_settings_to_pb,
    sidecar_ban_to_pb,
    sidecar_to_pb,
    ts,
)
from .status import streaming, unary

Ctx = grpc.aio.ServicerContext[Any, Any]
_SETTINGS_FIELDS = {f.name for f in fields(ServerSettings)}


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self,
        core: ControlCore,
        on_settings_changed: Any = None,
        recent_log: RecentLog | None = None,
    ) -> None:
        self.core = core
        self.on_settings_changed = on_settings_changed
        self.recent_log = recent_log if recent_log is not None else RecentLog()

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
        # Channel limits come from the settings: sidecar watchers see the new ones.
        self.core.sidecars.publish_all()
        return admin_pb2.UpdateSettingsResponse(settings=server_settings_to_pb(saved))

    def _binding_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for b in self.core.bindings.by_id.values():
            counts[b.sidecar] = counts.get(b.sidecar, 0) + 1
        return counts

    def _sidecar(self, info: SidecarInfo, counts: dict[str, int]) -> admin_pb2.Sidecar:
        limit = self.core.settings.current.channel_limit(info.name)
        enrolled = self.core.enrollments.get(info.name) is not None
        return sidecar_to_pb(info, counts.get(info.name, 0), limit, enrolled=enrolled)

    @unary
    async def ListSidecars(
        self, request: admin_pb2.ListSidecarsRequest, context: Ctx
    ) -> admin_pb2.ListSidecarsResponse:
        counts = self._binding_counts()
        return admin_pb2.ListSidecarsResponse(
            sidecars=[
                self._sidecar(s, counts)
                for s in sorted(self.core.sidecars.sidecars.values(), key=lambda s: s.name)
            ]
        )

    @streaming
    async def WatchSidecars(
        self, request: admin_pb2.WatchSidecarsRequest, context: Ctx
    ) -> AsyncIterator[admin_pb2.WatchSidecarsResponse]:
        registry = self.core.sidecars
        queue = registry.watch()
        try:
            counts = self._binding_counts()
            for info in sorted(registry.sidecars.values(), key=lambda s: s.name):
                yield admin_pb2.WatchSidecarsResponse(sidecar=self._sidecar(info, counts))
            yield admin_pb2.WatchSidecarsResponse(snapshot_complete=True)
            while (changed := await queue.get()) is not None:
                yield admin_pb2.WatchSidecarsResponse(
                    sidecar=self._sidecar(changed, self._binding_counts())
                )
        finally:
            registry.unwatch(queue)

    @unary
    async def ListLogEntries(
        self, request: admin_pb2.ListLogEntriesRequest, context: Ctx
    ) -> admin_pb2.ListLogEntriesResponse:
        level = log_level_from_pb(request.min_severity)
        return admin_pb2.ListLogEntriesResponse(
            entries=[log_entry_to_pb(e) for e in self.recent_log.entries(level)]
        )

    @streaming
    async def WatchLogEntries(
        self, request: admin_pb2.WatchLogEntriesRequest, context: Ctx
    ) -> AsyncIterator[admin_pb2.WatchLogEntriesResponse]:
        level = log_level_from_pb(request.min_severity)
        queue = self.recent_log.watch()
        try:
            for entry in self.recent_log.entries(level):
                yield admin_pb2.WatchLogEntriesResponse(entry=log_entry_to_pb(entry))
            yield admin_pb2.WatchLogEntriesResponse(snapshot_complete=True)
            while (new := await queue.get()) is not None:
                if new.level >= level:
                    yield admin_pb2.WatchLogEntriesResponse(entry=log_entry_to_pb(new))
        finally:
            self.recent_log.unwatch(queue)

    @unary
    async def ListBans(
        self, request: admin_pb2.ListBansRequest, context: Ctx
    ) -> admin_pb2.ListBansResponse:
        core = self.core
        now = core.clock()
        sources = sorted(
            core.sidecars.bans(now), key=lambda item: (item[1].source, item[1].user, item[0])
        )
        return admin_pb2.ListBansResponse(
            bans=[
                *(account_lock_to_pb(lock) for lock in core.lockout.active(now)),
                *(sidecar_ban_to_pb(name, ban) for name, ban in sources),
            ],
            unreported=core.sidecars.unreported_bans(),
        )

    @unary
    async def LiftBans(
        self, request: admin_pb2.LiftBansRequest, context: Ctx
    ) -> admin_pb2.LiftBansResponse:
        source = request.source.strip()
        account = request.account.strip()
        sidecar = request.sidecar.strip().removeprefix("sidecars/")
        if bool(source) == bool(account):
            raise InvalidArgument(
                FieldViolation("source", "give exactly one of source and account")
            )
        if account:
            if sidecar:
                raise InvalidArgument(
                    FieldViolation("sidecar", "accounts are locked by the control plane")
                )
            lock = self.core.lift_lock(account)
            return admin_pb2.LiftBansResponse(
                bans=[account_lock_to_pb(lock)] if lock is not None else []
            )
        try:
            ipaddress.ip_address(source)
        except ValueError:
            raise InvalidArgument(
                FieldViolation("source", f"{source!r} is not an IP address")
            ) from None
        if sidecar and sidecar not in self.core.sidecars.sidecars:
            raise NotFound("sidecar", f"sidecars/{sidecar}")
        lifted = self.core.sidecars.lift_bans(source, sidecar, self.core.clock())
        return admin_pb2.LiftBansResponse(bans=[sidecar_ban_to_pb(n, b) for n, b in lifted])

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
            bans=len(core.sidecars.bans(core.clock())) + core.sidecars.unreported_bans(),
            locked_accounts=len(core.lockout.active(core.clock())),
        )

    @unary
    async def EnrollSidecar(
        self, request: admin_pb2.EnrollSidecarRequest, context: Ctx
    ) -> admin_pb2.EnrollSidecarResponse:
        name = request.sidecar.strip().removeprefix("sidecars/")
        enrollment, token = await self.core.enroll_sidecar(name, replace=request.replace)
        self._publish_sidecar(name)
        return admin_pb2.EnrollSidecarResponse(enrollment=enrollment_to_pb(enrollment), token=token)

    @unary
    async def ListSidecarEnrollments(
        self, request: admin_pb2.ListSidecarEnrollmentsRequest, context: Ctx
    ) -> admin_pb2.ListSidecarEnrollmentsResponse:
        return admin_pb2.ListSidecarEnrollmentsResponse(
            enrollments=[enrollment_to_pb(e) for e in self.core.enrollments.all()]
        )

    @unary
    async def RevokeSidecarEnrollment(
        self, request: admin_pb2.RevokeSidecarEnrollmentRequest, context: Ctx
    ) -> admin_pb2.RevokeSidecarEnrollmentResponse:
        name = request.sidecar.strip().removeprefix("sidecars/")
        if not name:
            raise InvalidArgument(FieldViolation("sidecar", "required: sidecars/{name} or a name"))
        enrollment, ended = await self.core.revoke_sidecar(name)
        self._publish_sidecar(name)
        return admin_pb2.RevokeSidecarEnrollmentResponse(
            enrollment=enrollment_to_pb(enrollment), disconnected=ended
        )

    def _publish_sidecar(self, name: str) -> None:
        """Sidecar watchers see the enrollment change."""
        info = self.core.sidecars.sidecars.get(name)
        if info is not None:
            self.core.sidecars.publish(info)
