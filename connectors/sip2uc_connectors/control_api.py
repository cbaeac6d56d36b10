"""The admin API as a bridge's process uses it: async stubs with the CLI's token and TLS rules.

A bridge is a client of the public API only. The rules are the `sip2uc` command's
(`sip2uc.client`): TLS unless the control plane is on loopback, a bearer token from the option,
``SIP2UC_TOKEN`` or — on loopback only — the data directory's ``admin-token`` file.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from sip2uc.client import discover_token, is_loopback, join_target, split_target
from sip2uc.v1 import connectors_pb2_grpc, messages_pb2_grpc, presence_pb2_grpc, users_pb2_grpc

__all__ = ["ControlApi"]

# Unary calls get a deadline so that a hung control plane cannot hang a bridge.
CALL_TIMEOUT = 15.0


class ControlApi:
    def __init__(
        self,
        target: str,
        token: str | None = None,
        *,
        tls: bool | None = None,
        ca_file: Path | None = None,
        data_dir: Path | None = None,
    ) -> None:
        host, port = split_target(target)
        self.target = join_target(host, port)
        self.tls = (not is_loopback(self.target)) if tls is None else tls
        secret = discover_token(token, self.target, data_dir)
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        if self.tls:
            roots = ca_file.read_bytes() if ca_file is not None else None
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            self.channel = grpc.aio.secure_channel(self.target, credentials, options=options)
        else:
            self.channel = grpc.aio.insecure_channel(self.target, options=options)
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {secret}"),) if secret else ()
        )
        self.timeout = CALL_TIMEOUT
        self.presence = presence_pb2_grpc.PresenceServiceStub(self.channel)
        self.users = users_pb2_grpc.UserServiceStub(self.channel)
        self.connectors = connectors_pb2_grpc.ConnectorServiceStub(self.channel)
        self.messages = messages_pb2_grpc.MessageServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close(None)
