"""CallService: the live call registry arrives with call routing; until then every method says so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
from sip2uc.v1 import calls_pb2, calls_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]
_WHY = "calls are not routed by this control plane version"


async def _unimplemented(context: Ctx) -> NoReturn:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, _WHY)
    raise AssertionError("unreachable")


class CallServicer(calls_pb2_grpc.CallServiceServicer):
    async def ListCalls(
        self, request: calls_pb2.ListCallsRequest, context: Ctx
    ) -> calls_pb2.ListCallsResponse:
        # No call can exist without routing: an empty list is the truth, not a placeholder.
        return calls_pb2.ListCallsResponse()

    async def GetCall(
        self, request: calls_pb2.GetCallRequest, context: Ctx
    ) -> calls_pb2.GetCallResponse:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"call {request.name!r} not found")
        raise AssertionError("unreachable")

    async def WatchCalls(
        self, request: calls_pb2.WatchCallsRequest, context: Ctx
    ) -> AsyncIterator[calls_pb2.WatchCallsResponse]:
        await _unimplemented(context)
        yield calls_pb2.WatchCallsResponse()

    async def EndCall(
        self, request: calls_pb2.EndCallRequest, context: Ctx
    ) -> calls_pb2.EndCallResponse:
        await _unimplemented(context)

    async def SendDtmf(
        self, request: calls_pb2.SendDtmfRequest, context: Ctx
    ) -> calls_pb2.SendDtmfResponse:
        await _unimplemented(context)

    async def PlaceCall(
        self, request: calls_pb2.PlaceCallRequest, context: Ctx
    ) -> calls_pb2.PlaceCallResponse:
        await _unimplemented(context)

    async def ListCallHistory(
        self, request: calls_pb2.ListCallHistoryRequest, context: Ctx
    ) -> calls_pb2.ListCallHistoryResponse:
        return calls_pb2.ListCallHistoryResponse()
