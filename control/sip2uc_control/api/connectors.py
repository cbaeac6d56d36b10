"""ConnectorService: connector resources, and the calls of the process that runs a bridge."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from sip2uc.v1 import connectors_pb2, connectors_pb2_grpc

from ..connectors import (
    Connector,
    ConnectorKind,
    ConnectorState,
    ConnectorStatus,
    connector_id,
    validate_connector,
    validate_state_changes,
)
from ..core import ControlCore
from ..errors import FieldViolation, InvalidArgument, check
from .convert import (
    CONNECTOR_SECRETS,
    connector_config_from_pb,
    connector_status_from_pb,
    connector_to_pb,
)
from .paging import decode_token, encode_token, page_size
from .status import streaming, unary

Ctx = grpc.aio.ServicerContext[Any, Any]
log = logging.getLogger(__name__)

_TOP_FIELDS = ("display_name", "external", "disabled")
_WAITING = (
    "waiting for a process to run it: `sip2uc up`, or `sip2uc connector run ID` on the host "
    "meant to run it"
)


class ConnectorServicer(connectors_pb2_grpc.ConnectorServiceServicer):
    def __init__(self, core: ControlCore) -> None:
        self.core = core

    # --- reading -------------------------------------------------------------------------------

    def _effective_status(self, connector: Connector) -> ConnectorStatus:
        """What the bridge reported, or why nothing runs it."""
        now = self.core.clock()
        status = connector.status
        if connector.disabled:
            return replace(status, state=ConnectorState.FAILED, last_error="disabled")
        if self.core.connector_sessions.holder(connector.id, now) is not None:
            return status
        if not status.report_time:
            return replace(status, state=ConnectorState.CONNECTING, last_error=_WAITING)
        silent = now - status.report_time
        return replace(
            status,
            state=ConnectorState.FAILED,
            last_error=f"no report from its bridge for {silent:.0f}s (last run by "
            f"{status.runner or 'an unknown process'})",
        )

    def _to_pb(self, connector: Connector) -> connectors_pb2.Connector:
        return connector_to_pb(connector, self._effective_status(connector))

    def _require(self, ref: str, field: str = "name") -> Connector:
        if not ref.strip():
            raise InvalidArgument(FieldViolation(field, "required: connectors/{id} or the id"))
        return self.core.connectors.require(connector_id(ref))

    @unary
    async def GetConnector(
        self, request: connectors_pb2.GetConnectorRequest, context: Ctx
    ) -> connectors_pb2.GetConnectorResponse:
        return connectors_pb2.GetConnectorResponse(
            connector=self._to_pb(self._require(request.name))
        )

    @unary
    async def ListConnectors(
        self, request: connectors_pb2.ListConnectorsRequest, context: Ctx
    ) -> connectors_pb2.ListConnectorsResponse:
        size = page_size(request.page_size)
        offset = decode_token(request.page_token)
        found = self.core.connectors.all()
        page = found[offset : offset + size]
        return connectors_pb2.ListConnectorsResponse(
            connectors=[self._to_pb(c) for c in page],
            next_page_token=encode_token(offset + size) if offset + size < len(found) else "",
        )

    @streaming
    async def WatchConnectors(
        self, request: connectors_pb2.WatchConnectorsRequest, context: Ctx
    ) -> AsyncIterator[connectors_pb2.WatchConnectorsResponse]:
        store = self.core.connectors
        queue = store.watch()
        # What this watcher was last sent: a change that shows nothing new is not sent again.
        sent: dict[str, connectors_pb2.Connector] = {}
        try:
            for connector in store.all():
                sent[connector.id] = self._to_pb(connector)
                yield connectors_pb2.WatchConnectorsResponse(connector=sent[connector.id])
            yield connectors_pb2.WatchConnectorsResponse(snapshot_complete=True)
            while (change := await queue.get()) is not None:
                shown = self._to_pb(change.connector)
                if change.deleted:
                    sent.pop(change.connector.id, None)
                    yield connectors_pb2.WatchConnectorsResponse(connector=shown, deleted=True)
                elif sent.get(change.connector.id) != shown:
                    sent[change.connector.id] = shown
                    yield connectors_pb2.WatchConnectorsResponse(connector=shown)
        finally:
            store.unwatch(queue)

    # --- changing ------------------------------------------------------------------------------

    @unary
    async def CreateConnector(
        self, request: connectors_pb2.CreateConnectorRequest, context: Ctx
    ) -> connectors_pb2.CreateConnectorResponse:
        if not request.HasField("connector"):
            raise InvalidArgument(FieldViolation("connector", "required"))
        pb = request.connector
        kind, settings, secrets = connector_config_from_pb(pb, "connector")
        now = self.core.clock()
        connector = Connector(
            id=request.connector_id.strip(),
            kind=kind,
            settings=settings,
            secrets=secrets,
            display_name=pb.display_name.strip(),
            external=pb.external,
            disabled=pb.disabled,
            create_time=now,
            update_time=now,
        )
        check(validate_connector(connector))
        created = await self.core.connectors.create(connector)
        log.info("connector %s created (%s)", created.name, created.kind.value)
        return connectors_pb2.CreateConnectorResponse(connector=self._to_pb(created))

    @unary
    async def UpdateConnector(
        self, request: connectors_pb2.UpdateConnectorRequest, context: Ctx
    ) -> connectors_pb2.UpdateConnectorResponse:
        if not request.HasField("connector"):
            raise InvalidArgument(FieldViolation("connector", "required"))
        previous = self._require(request.connector.name, "connector.name")
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(FieldViolation("update_mask", "name at least one field"))
        pb = request.connector
        changes: dict[str, Any] = {}
        settings = dict(previous.settings)
        secrets = dict(previous.secrets)
        violations: list[FieldViolation] = []
        for path in paths:
            top, _, sub = path.partition(".")
            if top in _TOP_FIELDS and not sub:
                value = getattr(pb, top)
                changes[top] = value.strip() if isinstance(value, str) else value
            elif top == previous.kind.value:
                if pb.WhichOneof("config") != top:
                    violations.append(FieldViolation(f"connector.{top}", "required by the mask"))
                    continue
                _, given, given_secrets = connector_config_from_pb(pb, "connector")
                secret_names = CONNECTOR_SECRETS[previous.kind]
                if not sub:
                    settings = dict(given)
                    # An empty secret keeps the stored one, as device passwords do.
                    secrets.update({k: v for k, v in given_secrets.items() if v})
                elif sub in secret_names:
                    secrets[sub] = given_secrets.get(sub, "")
                    if not secrets[sub]:
                        del secrets[sub]
                elif sub in settings or sub in given or _is_field(pb, top, sub):
                    if sub in given:
                        settings[sub] = given[sub]
                    else:
                        settings.pop(sub, None)
                else:
                    violations.append(FieldViolation("update_mask", f"unknown field {path!r}"))
            elif top in {k.value for k in ConnectorKind}:
                violations.append(
                    FieldViolation(
                        "update_mask",
                        f"{path!r}: the kind of a connector cannot change "
                        f"(it is {previous.kind.value}); delete it and add a new one",
                    )
                )
            else:
                violations.append(FieldViolation("update_mask", f"unknown field {path!r}"))
        check(violations)
        # Re-check the merged configuration as a whole.
        merged_pb = connector_to_pb(
            replace(previous, settings=settings, secrets=secrets), previous.status
        )
        connector_config_from_pb(merged_pb, "connector")
        updated = replace(
            previous,
            settings=settings,
            secrets=secrets,
            update_time=self.core.clock(),
            **changes,
        )
        check(validate_connector(updated))
        saved = await self.core.connectors.save(updated)
        # The running bridge must pick the new configuration up: its session ends, its next
        # call fails, and it claims again.
        self.core.connector_sessions.end(saved.id)
        log.info("connector %s updated: %s", saved.name, ", ".join(paths))
        return connectors_pb2.UpdateConnectorResponse(connector=self._to_pb(saved))

    @unary
    async def DeleteConnector(
        self, request: connectors_pb2.DeleteConnectorRequest, context: Ctx
    ) -> connectors_pb2.DeleteConnectorResponse:
        connector = self._require(request.name)
        self.core.connector_sessions.end(connector.id)
        await self.core.connectors.delete(connector.id)
        cleared = await self.core.clear_external_presence_from(connector.name)
        log.info(
            "connector %s deleted (%d external presence states it had set cleared)",
            connector.name,
            cleared,
        )
        return connectors_pb2.DeleteConnectorResponse(name=connector.name)

    # --- the bridge's process ------------------------------------------------------------------

    @unary
    async def ClaimConnector(
        self, request: connectors_pb2.ClaimConnectorRequest, context: Ctx
    ) -> connectors_pb2.ClaimConnectorResponse:
        connector = self._require(request.name)
        runner = request.runner.strip()[:200] or context.peer() or "unknown"
        if connector.disabled:
            raise InvalidArgument(FieldViolation("name", f"{connector.name} is disabled"))
        now = self.core.clock()
        session = self.core.connector_sessions.claim(connector.id, runner, now)
        self.core.connectors.touched(connector.id)
        entries = await self.core.connectors.entries(connector.id)
        log.info("connector %s claimed by %s", connector.name, runner)
        secrets = connector.secrets
        return connectors_pb2.ClaimConnectorResponse(
            connector=self._to_pb(connector),
            secrets=connectors_pb2.ConnectorSecrets(
                password=secrets.get("password", ""),
                client_secret=secrets.get("client_secret", ""),
            ),
            session=session.token,
            cursor=self.core.connectors.cursor(connector.id),
            entries=[
                connectors_pb2.ConnectorStateEntry(key=k, value=v) for k, v in entries.items()
            ],
            lease=_duration(self.core.connector_sessions.lease),
        )

    @unary
    async def SaveConnectorState(
        self, request: connectors_pb2.SaveConnectorStateRequest, context: Ctx
    ) -> connectors_pb2.SaveConnectorStateResponse:
        connector = self._require(request.name)
        self.core.connector_sessions.check(connector.id, request.session, self.core.clock())
        upserts = {e.key: e.value for e in request.upserts}
        deletes = list(request.deletes)
        check(validate_state_changes(upserts, deletes))
        if len(request.cursor) > 100:
            raise InvalidArgument(FieldViolation("cursor", "not a cursor of WatchPresence"))
        await self.core.connectors.save_state(
            connector.id, request.cursor or None, upserts, deletes
        )
        return connectors_pb2.SaveConnectorStateResponse()

    @unary
    async def ReportConnectorStatus(
        self, request: connectors_pb2.ReportConnectorStatusRequest, context: Ctx
    ) -> connectors_pb2.ReportConnectorStatusResponse:
        connector = self._require(request.name)
        now = self.core.clock()
        session = self.core.connector_sessions.renew(connector.id, request.session, now)
        status = replace(
            connector_status_from_pb(request.status), runner=session.runner, report_time=now
        )
        if status.state is not connector.status.state:
            log.info(
                "connector %s is %s%s",
                connector.name,
                status.state.value,
                f": {status.last_error}" if status.last_error else "",
            )
        await self.core.connectors.save_status(connector.id, status)
        return connectors_pb2.ReportConnectorStatusResponse()

    @unary
    async def ReleaseConnector(
        self, request: connectors_pb2.ReleaseConnectorRequest, context: Ctx
    ) -> connectors_pb2.ReleaseConnectorResponse:
        connector = self._require(request.name)
        self.core.connector_sessions.check(connector.id, request.session, self.core.clock())
        self.core.connector_sessions.end(connector.id)
        self.core.connectors.touched(connector.id)
        log.info("connector %s released", connector.name)
        return connectors_pb2.ReleaseConnectorResponse()


def _is_field(pb: connectors_pb2.Connector, kind: str, name: str) -> bool:
    return name in getattr(pb, kind).DESCRIPTOR.fields_by_name


def _duration(seconds: float) -> Duration:
    out = Duration()
    out.FromNanoseconds(int(seconds * 1e9))
    return out
