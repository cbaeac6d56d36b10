"""A canned `SidecarService` for unit tests: verifies digests against a fixed user table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
from sip2uc.v1 import sidecar_pb2, sidecar_pb2_grpc
from sip2uc_core.sip.digest import Algorithm, Credentials, compute_ha1, verify_response

REALM = "test.realm"


class FakeControl(sidecar_pb2_grpc.SidecarServiceServicer):
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.register_calls: list[sidecar_pb2.RegisterRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.hellos: list[sidecar_pb2.SidecarHello] = []
        self.results: list[sidecar_pb2.CommandResult] = []
        self.heartbeats = 0
        self.outcome_override: sidecar_pb2.RegisterResponse | None = None
        self.send_command: sidecar_pb2.ConnectResponse | None = None
        self.settings = sidecar_pb2.SidecarSettings(realm=REALM, ban_threshold=3)

    async def Connect(
        self,
        request_iterator: AsyncIterator[sidecar_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext[sidecar_pb2.ConnectRequest, sidecar_pb2.ConnectResponse],
    ) -> AsyncIterator[sidecar_pb2.ConnectResponse]:
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        first = await anext(aiter(request_iterator))
        self.hellos.append(first.hello)
        yield sidecar_pb2.ConnectResponse(
            welcome=sidecar_pb2.SidecarWelcome(settings=self.settings)
        )
        if self.send_command is not None:
            yield self.send_command
        async for message in request_iterator:
            kind = message.WhichOneof("payload")
            if kind == "heartbeat":
                self.heartbeats += 1
            elif kind == "result":
                self.results.append(message.result)

    async def Register(
        self,
        request: sidecar_pb2.RegisterRequest,
        context: grpc.aio.ServicerContext[
            sidecar_pb2.RegisterRequest, sidecar_pb2.RegisterResponse
        ],
    ) -> sidecar_pb2.RegisterResponse:
        self.register_calls.append(request)
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})
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

    async def _unimplemented(self, context: Any) -> NoReturn:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")
        raise AssertionError("abort returned")

    async def RegisterStream(self, request_iterator: Any, context: Any) -> Any:
        # Like a control plane that predates the stream: the link falls back to unary calls.
        await self._unimplemented(context)
        yield  # an async generator, as stream handlers are

    async def CallStream(self, request_iterator: Any, context: Any) -> Any:
        # Likewise for call requests.
        await self._unimplemented(context)
        yield

    async def Invite(self, request: Any, context: Any) -> Any:
        await self._unimplemented(context)

    async def Cancel(self, request: Any, context: Any) -> Any:
        await self._unimplemented(context)

    async def Bye(self, request: Any, context: Any) -> Any:
        await self._unimplemented(context)

    async def ReportLeg(self, request: Any, context: Any) -> Any:
        await self._unimplemented(context)

    async def Message(self, request: Any, context: Any) -> Any:
        await self._unimplemented(context)

    async def Subscribe(self, request: Any, context: Any) -> Any:
        await self._unimplemented(context)


async def serve(servicer: FakeControl, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    sidecar_pb2_grpc.add_SidecarServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound
