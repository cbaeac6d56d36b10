"""A canned `SidecarService` for unit tests: verifies digests against a fixed user table, answers
call requests as told, and sends the commands a test queues on the session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import grpc
from sip2uc.v1 import sidecar_pb2, sidecar_pb2_grpc
from sip2uc_core.sip.digest import Algorithm, Credentials, compute_ha1, verify_response

REALM = "test.realm"


class FakeControl(sidecar_pb2_grpc.SidecarServiceServicer):
    def __init__(self, users: dict[str, str], *, answer_registers: bool = True) -> None:
        self.users = users
        self.answer_registers = answer_registers
        self.metadata: list[dict[str, str]] = []
        self.hellos: list[sidecar_pb2.SidecarHello] = []
        self.results: list[sidecar_pb2.CommandResult] = []
        #: The messages that carried them, whole.
        self.result_messages: list[sidecar_pb2.ConnectRequest] = []
        self.heartbeats = 0
        #: The ban reports the sidecar sent, in order.
        self.bans: list[sidecar_pb2.SidecarBans] = []
        #: Set whenever the sidecar sent something.
        self.heard = asyncio.Event()
        self.settings = sidecar_pb2.SidecarSettings(realm=REALM, ban_threshold=3)
        #: Sent right after the welcome, if set.
        self.send_command: sidecar_pb2.ConnectResponse | None = None
        #: Sent on the session as the test puts them here.
        self.commands: asyncio.Queue[sidecar_pb2.ConnectResponse] = asyncio.Queue()
        self.register_messages: list[sidecar_pb2.RegisterStreamRequest] = []
        self.register_calls: list[sidecar_pb2.RegisterRequest] = []
        self.registered = asyncio.Event()
        self.outcome_override: sidecar_pb2.RegisterResponse | None = None
        self.call_messages: list[sidecar_pb2.CallStreamRequest] = []
        self.invites: list[sidecar_pb2.InviteRequest] = []
        self.reports: list[sidecar_pb2.ReportLegRequest] = []
        self.cancels: list[sidecar_pb2.CancelRequest] = []
        self.byes: list[sidecar_pb2.ByeRequest] = []
        self.invite_answer = sidecar_pb2.InviteResponse(
            disposition=sidecar_pb2.INVITE_DISPOSITION_ROUTING, call_id="call-1"
        )

    async def Connect(
        self,
        request_iterator: AsyncIterator[sidecar_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext[sidecar_pb2.ConnectRequest, sidecar_pb2.ConnectResponse],
    ) -> AsyncIterator[sidecar_pb2.ConnectResponse]:
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        first = await anext(aiter(request_iterator))
        self.hellos.append(first.hello)

        async def read() -> None:
            async for message in request_iterator:
                kind = message.WhichOneof("payload")
                if kind == "heartbeat":
                    self.heartbeats += 1
                elif kind == "result":
                    self.results.append(message.result)
                    self.result_messages.append(message)
                elif kind == "results":
                    self.results.extend(message.results.results)
                    self.result_messages.append(message)
                elif kind == "bans":
                    self.bans.append(message.bans)
                self.heard.set()

        reader = asyncio.create_task(read())
        try:
            yield sidecar_pb2.ConnectResponse(
                welcome=sidecar_pb2.SidecarWelcome(settings=self.settings)
            )
            if self.send_command is not None:
                yield self.send_command
            while True:
                yield await self.commands.get()
        finally:
            reader.cancel()

    async def until(self, condition: Callable[[], object], what: str) -> None:
        """Wait until `condition` holds, checking it each time the sidecar sends something."""
        while not condition():
            self.heard.clear()
            try:
                await asyncio.wait_for(self.heard.wait(), 5)
            except TimeoutError:
                raise AssertionError(f"timed out waiting for {what}") from None

    def register_response(
        self, request: sidecar_pb2.RegisterRequest
    ) -> sidecar_pb2.RegisterResponse:
        if self.outcome_override is not None:
            return self.outcome_override
        c = request.credentials
        password = self.users.get(c.username)
        algorithm = Algorithm.parse(c.algorithm or "MD5")
        ha1 = compute_ha1(algorithm, c.username, c.realm, password or "x-unknown-x")
        creds = Credentials(
            username=c.username,
            realm=c.realm,
            nonce=c.nonce,
            uri=c.uri,
            response=c.response,
            algorithm=algorithm,
            qop=c.qop or None,
            nc=c.nc or None,
            cnonce=c.cnonce or None,
        )
        if password is None or not verify_response(ha1, creds, c.method):
            return sidecar_pb2.RegisterResponse(outcome=sidecar_pb2.REGISTER_OUTCOME_UNAUTHORIZED)
        return sidecar_pb2.RegisterResponse(
            outcome=sidecar_pb2.REGISTER_OUTCOME_OK,
            bindings=[
                sidecar_pb2.ContactBinding(uri=b.uri, expires=b.expires, q_milli=1000)
                for b in request.contacts
                if b.expires
            ],
        )

    async def RegisterStream(
        self, request_iterator: AsyncIterator[sidecar_pb2.RegisterStreamRequest], context: Any
    ) -> AsyncIterator[sidecar_pb2.RegisterStreamResponse]:
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        async for message in request_iterator:
            self.register_messages.append(message)
            self.register_calls.extend(c.request for c in message.calls)
            self.registered.set()
            self.heard.set()
            if not self.answer_registers:
                continue
            replies = [
                sidecar_pb2.RegisterReply(
                    correlation_id=c.correlation_id, response=self.register_response(c.request)
                )
                for c in message.calls
            ]
            # Answer in reverse order: the link matches by correlation id, not by position.
            yield sidecar_pb2.RegisterStreamResponse(replies=replies[::-1])

    async def CallStream(
        self, request_iterator: AsyncIterator[sidecar_pb2.CallStreamRequest], context: Any
    ) -> AsyncIterator[sidecar_pb2.CallStreamResponse]:
        async for message in request_iterator:
            self.call_messages.append(message)
            replies = []
            for call in message.calls:
                reply = sidecar_pb2.CallStreamReply(correlation_id=call.correlation_id)
                kind = call.WhichOneof("request")
                if kind == "invite":
                    self.invites.append(call.invite)
                    reply.invite.CopyFrom(self.invite_answer)
                elif kind == "report_leg":
                    self.reports.append(call.report_leg)
                    reply.report_leg.SetInParent()
                elif kind == "cancel":
                    self.cancels.append(call.cancel)
                    reply.cancel.SetInParent()
                elif kind == "bye":
                    self.byes.append(call.bye)
                    reply.bye.SetInParent()
                replies.append(reply)
            self.heard.set()
            yield sidecar_pb2.CallStreamResponse(replies=replies)

    async def _unimplemented(self, context: Any) -> NoReturn:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")
        raise AssertionError("abort returned")

    async def Message(self, request: Any, context: Any) -> Any:
        await self._unimplemented(context)

    async def Subscribe(self, request: Any, context: Any) -> Any:
        await self._unimplemented(context)


class StreamlessControl(FakeControl):
    """A control plane whose request streams answer UNIMPLEMENTED."""

    async def RegisterStream(self, request_iterator: Any, context: Any) -> Any:
        await self._unimplemented(context)
        yield  # an async generator, as stream handlers are

    async def CallStream(self, request_iterator: Any, context: Any) -> Any:
        await self._unimplemented(context)
        yield


async def serve(servicer: FakeControl, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    sidecar_pb2_grpc.add_SidecarServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound
