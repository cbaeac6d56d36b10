"""A sidecar's half of the SidecarService contract, driven by tests over real gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
from sip2uc.v1 import common_pb2, sidecar_pb2, sidecar_pb2_grpc
from sip2uc_core.sip.digest import Algorithm, compute_ha1, compute_response

REALM = "sip2uc"
ReplyT = TypeVar("ReplyT", sidecar_pb2.RegisterReply, sidecar_pb2.CallStreamReply)


class CallFailedError(Exception):
    """A streamed call answered with an error status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


async def _one_call(
    open_stream: Callable[[AsyncIterator[Any]], Any], message: Any, cls: type[ReplyT]
) -> ReplyT:
    """Send one stream message holding one call and return its answer."""

    async def requests() -> AsyncIterator[Any]:
        yield message

    stream = open_stream(requests())
    try:
        async for response in stream:
            for reply in response.replies:
                assert isinstance(reply, cls)
                if reply.error_code:
                    raise CallFailedError(reply.error_code, reply.error_message)
                return reply
    finally:
        stream.cancel()
    raise AssertionError("the stream ended without an answer")


async def register_once(
    stub: sidecar_pb2_grpc.SidecarServiceStub, request: sidecar_pb2.RegisterRequest
) -> sidecar_pb2.RegisterResponse:
    """One REGISTER on a RegisterStream of its own."""
    message = sidecar_pb2.RegisterStreamRequest(
        calls=[sidecar_pb2.RegisterCall(correlation_id=1, request=request)]
    )
    reply = await _one_call(stub.RegisterStream, message, sidecar_pb2.RegisterReply)
    return reply.response


async def call_once(
    stub: sidecar_pb2_grpc.SidecarServiceStub, call: sidecar_pb2.CallStreamCall
) -> sidecar_pb2.CallStreamReply:
    """One call (Invite, Cancel, Bye, ReportLeg) on a CallStream of its own."""
    call.correlation_id = 1
    message = sidecar_pb2.CallStreamRequest(calls=[call])
    return await _one_call(stub.CallStream, message, sidecar_pb2.CallStreamReply)


def digest(username: str, password: str, method: str, nc: int = 1) -> sidecar_pb2.DigestCredentials:
    ha1 = compute_ha1(Algorithm.MD5, username, REALM, password)
    nc_text = f"{nc:08x}"
    uri = "sip:sip2uc.local"
    response = compute_response(
        Algorithm.MD5, ha1, nonce="n", method=method, uri=uri, qop="auth", nc=nc_text, cnonce="c"
    )
    return sidecar_pb2.DigestCredentials(
        username=username,
        realm=REALM,
        nonce="n",
        uri=uri,
        response=response,
        algorithm="MD5",
        cnonce="c",
        nc=nc_text,
        qop="auth",
        method=method,
    )


def media(port: int, *codecs: tuple[str, int]) -> common_pb2.MediaEndpoint:
    return common_pb2.MediaEndpoint(
        rtp=common_pb2.SocketAddress(host="127.0.0.1", port=port),
        codecs=[common_pb2.Codec(name=n, payload_type=pt, clock_rate=8000) for n, pt in codecs],
    )


class SidecarSession:
    """Connects as a named sidecar and collects the commands the control plane sends it."""

    def __init__(self, channel: grpc.aio.Channel, name: str) -> None:
        self.name = name
        self.stub = sidecar_pb2_grpc.SidecarServiceStub(channel)
        self.commands: asyncio.Queue[sidecar_pb2.ConnectResponse] = asyncio.Queue()
        self._outgoing: asyncio.Queue[sidecar_pb2.ConnectRequest | None] = asyncio.Queue()
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._cseq = 0
        self.welcome = sidecar_pb2.SidecarWelcome()

    async def __aenter__(self) -> SidecarSession:
        await self._outgoing.put(
            sidecar_pb2.ConnectRequest(hello=sidecar_pb2.SidecarHello(name=self.name))
        )

        async def requests() -> Any:
            while (item := await self._outgoing.get()) is not None:
                yield item

        self._call = self.stub.Connect(requests())
        welcome = await self._call.read()
        assert welcome.WhichOneof("payload") == "welcome"
        self.welcome = welcome.welcome

        async def read() -> None:
            # read() and async iteration cannot be mixed on one call: keep using read().
            while (message := await self._call.read()) is not grpc.aio.EOF:
                await self.commands.put(message)

        self._reader = asyncio.create_task(read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._outgoing.put(None)
        if self._reader is not None:
            self._reader.cancel()
        self._call.cancel()

    async def next(self, kind: str, timeout: float = 5.0) -> Any:
        message = await asyncio.wait_for(self.commands.get(), timeout)
        assert message.WhichOneof("payload") == kind, message
        return getattr(message, kind)

    async def send(self, message: sidecar_pb2.ConnectRequest) -> None:
        """Send a message on the session (a heartbeat, results, the bans in force)."""
        await self._outgoing.put(message)

    def pending(self) -> int:
        return self.commands.qsize()

    def origin(self, port: int = 40000) -> sidecar_pb2.RequestOrigin:
        return sidecar_pb2.RequestOrigin(
            sidecar=self.name,
            source=common_pb2.SocketAddress(host="127.0.0.1", port=port),
            transport=common_pb2.TRANSPORT_UDP,
            call_id=f"c-{port}",
        )

    async def register(self, ext: str, password: str, contact_port: int, nc: int = 1) -> None:
        self._cseq += 1  # a refresh on the same Call-ID needs a higher CSeq (RFC 3261 §10.3)
        resp = await register_once(
            self.stub,
            sidecar_pb2.RegisterRequest(
                cseq=self._cseq,
                origin=self.origin(contact_port),
                credentials=digest(ext, password, "REGISTER", nc),
                aor=f"sip:{ext}@sip2uc.local",
                contacts=[
                    sidecar_pb2.ContactBinding(
                        uri=f"sip:{ext}@127.0.0.1:{contact_port}", expires=600
                    )
                ],
            ),
        )
        assert resp.outcome == sidecar_pb2.REGISTER_OUTCOME_OK

    async def invite(
        self, ext: str, password: str, dialled: str, leg_id: str, port: int = 30000
    ) -> sidecar_pb2.InviteResponse:
        return await self.send_invite(
            sidecar_pb2.InviteRequest(
                origin=self.origin(),
                credentials=digest(ext, password, "INVITE"),
                leg_id=leg_id,
                request_uri=f"sip:{dialled}@sip2uc.local",
                from_uri=f"sip:{ext}@sip2uc.local",
                to_uri=f"sip:{dialled}@sip2uc.local",
                offer=media(port, ("PCMU", 0), ("telephone-event", 101)),
            )
        )

    async def send_invite(self, request: sidecar_pb2.InviteRequest) -> sidecar_pb2.InviteResponse:
        return (await call_once(self.stub, sidecar_pb2.CallStreamCall(invite=request))).invite

    async def report(self, call_id: str, leg_id: str, state: int, **fields: Any) -> None:
        report = sidecar_pb2.ReportLegRequest(
            sidecar=self.name, call_id=call_id, leg_id=leg_id, state=state, **fields
        )
        await call_once(self.stub, sidecar_pb2.CallStreamCall(report_leg=report))

    async def bye(self, leg_id: str, reason: str = "", **fields: Any) -> None:
        bye = sidecar_pb2.ByeRequest(origin=self.origin(), leg_id=leg_id, reason=reason, **fields)
        await call_once(self.stub, sidecar_pb2.CallStreamCall(bye=bye))

    async def cancel(self, leg_id: str) -> None:
        cancel = sidecar_pb2.CancelRequest(origin=self.origin(), leg_id=leg_id)
        await call_once(self.stub, sidecar_pb2.CallStreamCall(cancel=cancel))
