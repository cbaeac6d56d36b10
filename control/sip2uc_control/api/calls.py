"""CallService: live calls, history and call control."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from sip2uc.v1 import calls_pb2, calls_pb2_grpc

from ..core import ControlCore
from ..errors import NotFound
from .convert import call_to_pb
from .paging import decode_token, encode_token, page_size
from .status import streaming, unary

Ctx = grpc.aio.ServicerContext[Any, Any]


class CallServicer(calls_pb2_grpc.CallServiceServicer):
    def __init__(self, core: ControlCore) -> None:
        self.core = core

    def _user_id(self, ref: str, field: str) -> str | None:
        return self.core.resolve_user(ref, field).id if ref else None

    @unary
    async def ListCalls(
        self, request: calls_pb2.ListCallsRequest, context: Ctx
    ) -> calls_pb2.ListCallsResponse:
        uid = self._user_id(request.user, "user")
        calls = [c for c in self.core.calls.live() if uid is None or c.involves(uid)]
        return calls_pb2.ListCallsResponse(
            calls=[call_to_pb(c, self.core.users.get) for c in calls]
        )

    @unary
    async def GetCall(
        self, request: calls_pb2.GetCallRequest, context: Ctx
    ) -> calls_pb2.GetCallResponse:
        # Live, just ended (history row not written yet) or from the history: no await until
        # the history read, so a call ending meanwhile is in one of the three.
        call = (
            self.core.calls.get(request.name)
            or self.core.calls.ended(request.name)
            or await self.core.call_history.get(request.name.removeprefix("calls/"))
        )
        if call is None:
            raise NotFound("call", request.name)
        return calls_pb2.GetCallResponse(call=call_to_pb(call, self.core.users.get))

    @streaming
    async def WatchCalls(
        self, request: calls_pb2.WatchCallsRequest, context: Ctx
    ) -> AsyncIterator[calls_pb2.WatchCallsResponse]:
        uid = self._user_id(request.user, "user")
        queue = self.core.calls.watch()
        try:
            for call in self.core.calls.live():
                if uid is None or call.involves(uid):
                    yield calls_pb2.WatchCallsResponse(call=call_to_pb(call, self.core.users.get))
            yield calls_pb2.WatchCallsResponse(snapshot_complete=True)
            while True:
                changed = await queue.get()
                if changed is None:
                    return
                if uid is None or changed.involves(uid):
                    yield calls_pb2.WatchCallsResponse(
                        call=call_to_pb(changed, self.core.users.get)
                    )
        finally:
            self.core.calls.unwatch(queue)

    @unary
    async def EndCall(
        self, request: calls_pb2.EndCallRequest, context: Ctx
    ) -> calls_pb2.EndCallResponse:
        return calls_pb2.EndCallResponse(
            call=call_to_pb(await self.core.calls.end_call(request.name), self.core.users.get)
        )

    @unary
    async def SendDtmf(
        self, request: calls_pb2.SendDtmfRequest, context: Ctx
    ) -> calls_pb2.SendDtmfResponse:
        towards = self.core.resolve_user(request.towards, "towards") if request.towards else None
        await self.core.calls.send_dtmf(request.name, request.digits, towards)
        return calls_pb2.SendDtmfResponse()

    @unary
    async def PlaceCall(
        self, request: calls_pb2.PlaceCallRequest, context: Ctx
    ) -> calls_pb2.PlaceCallResponse:
        caller = self.core.resolve_user(getattr(request, "from"), "from")
        call = await self.core.calls.place_call(caller, request.to)
        return calls_pb2.PlaceCallResponse(call=call_to_pb(call, self.core.users.get))

    @unary
    async def ListCallHistory(
        self, request: calls_pb2.ListCallHistoryRequest, context: Ctx
    ) -> calls_pb2.ListCallHistoryResponse:
        size = page_size(request.page_size)
        offset = decode_token(request.page_token)
        uid = self._user_id(request.user, "user")
        calls = await self.core.call_history.page(uid, offset, size + 1)
        return calls_pb2.ListCallHistoryResponse(
            calls=[call_to_pb(c, self.core.users.get) for c in calls[:size]],
            next_page_token=encode_token(offset + size) if len(calls) > size else "",
        )
