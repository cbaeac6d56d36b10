"""TrunkService: trunk resources, with the state their sidecars report."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import grpc
from sip2uc.v1 import trunks_pb2, trunks_pb2_grpc

from ..core import ControlCore
from ..errors import FieldViolation, InvalidArgument, check
from ..trunks import Trunk, trunk_id, validate_trunk
from .convert import trunk_from_pb, trunk_to_pb
from .paging import decode_token, encode_token, page_size
from .status import unary

Ctx = grpc.aio.ServicerContext[Any, Any]
log = logging.getLogger(__name__)

# Mask paths that name a field of the domain's Trunk of the same name.
_FIELDS = frozenset(
    {
        "display_name",
        "address",
        "port",
        "transport",
        "sidecar",
        "username",
        "password",
        "register",
        "register_expires",
        "outbound_pattern",
        "inbound_pattern",
        "priority",
        "number_format",
        "region",
        "codecs",
        "channel_limit",
        "allow_relay",
        "options_interval_seconds",
        "inbound_networks",
        "tls_ca_pem",
        "disabled",
    }
)
_IDENTITY = frozenset({"caller_e164", "p_asserted_identity", "diversion", "history_info"})


class TrunkServicer(trunks_pb2_grpc.TrunkServiceServicer):
    def __init__(self, core: ControlCore, push_settings: Callable[[], None]) -> None:
        self.core = core
        #: Tell the sidecars (the carrying one re-registers and re-checks its trunks).
        self.push_settings = push_settings

    def _to_pb(self, trunk: Trunk) -> trunks_pb2.Trunk:
        return trunk_to_pb(trunk, self.core.trunks.health(trunk))

    def _require(self, ref: str, field: str = "name") -> Trunk:
        if not ref.strip():
            raise InvalidArgument(FieldViolation(field, "required: trunks/{id} or the id"))
        return self.core.trunk_store.require(trunk_id(ref))

    @unary
    async def GetTrunk(
        self, request: trunks_pb2.GetTrunkRequest, context: Ctx
    ) -> trunks_pb2.GetTrunkResponse:
        return trunks_pb2.GetTrunkResponse(trunk=self._to_pb(self._require(request.name)))

    @unary
    async def ListTrunks(
        self, request: trunks_pb2.ListTrunksRequest, context: Ctx
    ) -> trunks_pb2.ListTrunksResponse:
        size = page_size(request.page_size)
        offset = decode_token(request.page_token)
        found = self.core.trunk_store.all()
        page = found[offset : offset + size]
        return trunks_pb2.ListTrunksResponse(
            trunks=[self._to_pb(t) for t in page],
            next_page_token=encode_token(offset + size) if offset + size < len(found) else "",
        )

    @unary
    async def CreateTrunk(
        self, request: trunks_pb2.CreateTrunkRequest, context: Ctx
    ) -> trunks_pb2.CreateTrunkResponse:
        if not request.HasField("trunk"):
            raise InvalidArgument(FieldViolation("trunk", "required"))
        now = self.core.clock()
        trunk = replace(
            trunk_from_pb(request.trunk_id.strip(), request.trunk),
            create_time=now,
            update_time=now,
        )
        check(validate_trunk(self._with_region(trunk)))
        created = await self.core.trunk_store.create(trunk)
        log.info(
            "trunk %s created (%s via sidecar %s)", created.id, created.hostport, created.sidecar
        )
        self.push_settings()
        return trunks_pb2.CreateTrunkResponse(trunk=self._to_pb(created))

    @unary
    async def UpdateTrunk(
        self, request: trunks_pb2.UpdateTrunkRequest, context: Ctx
    ) -> trunks_pb2.UpdateTrunkResponse:
        if not request.HasField("trunk"):
            raise InvalidArgument(FieldViolation("trunk", "required"))
        previous = self._require(request.trunk.name, "trunk.name")
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(FieldViolation("update_mask", "name at least one field"))
        given = trunk_from_pb(previous.id, request.trunk)
        changes: dict[str, Any] = {}
        identity = previous.identity
        violations: list[FieldViolation] = []
        for path in paths:
            top, _, sub = path.partition(".")
            if top in _FIELDS and not sub:
                changes[top] = getattr(given, top)
            elif top == "identity" and not sub:
                identity = given.identity
            elif top == "identity" and sub in _IDENTITY:
                identity = replace(identity, **{sub: getattr(given.identity, sub)})
            else:
                violations.append(FieldViolation("update_mask", f"unknown field {path!r}"))
        check(violations)
        updated = replace(previous, identity=identity, update_time=self.core.clock(), **changes)
        check(validate_trunk(self._with_region(updated)))
        saved = await self.core.trunk_store.save(updated)
        self.core.trunks.forget(saved.id)
        log.info("trunk %s updated: %s", saved.id, ", ".join(paths))
        self.push_settings()
        return trunks_pb2.UpdateTrunkResponse(trunk=self._to_pb(saved))

    @unary
    async def DeleteTrunk(
        self, request: trunks_pb2.DeleteTrunkRequest, context: Ctx
    ) -> trunks_pb2.DeleteTrunkResponse:
        trunk = self._require(request.name)
        await self.core.trunk_store.delete(trunk.id)
        self.core.trunks.forget(trunk.id)
        log.info("trunk %s deleted", trunk.id)
        self.push_settings()
        return trunks_pb2.DeleteTrunkResponse(name=trunk.name)

    def _with_region(self, trunk: Trunk) -> Trunk:
        """For validation: national numbers may use the server's default region."""
        if trunk.region:
            return trunk
        return replace(trunk, region=self.core.settings.current.default_region)
