"""The HTTP side of Graph calls: sends a `GraphCall` with a bearer token and returns a `GraphReply`.

Thin on purpose: what to send and what a status means is decided in `sync.py`. This module adds
the token (renewed once when Graph answers 401), reads Retry-After and Graph's error body
(`{"error": {"code", "message"}}`), bounds the reply size and turns network failures into
`TransportError`. The Authorization header never leaves this module.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid

import aiohttp

from .auth import TokenSource
from .graph_calls import GraphCall, GraphReply
from .retry import parse_retry_after

# 650 presences are well under this; anything bigger is not a presence reply.
MAX_REPLY_BYTES = 4 << 20


class TransportError(Exception):
    """No HTTP answer: connection, TLS, timeout, an oversized or undecodable reply."""


class GraphHttp:
    def __init__(
        self,
        *,
        graph_root: str,
        tokens: TokenSource,
        timeout: float,
        ca_file: str | None = None,
    ) -> None:
        self._root = graph_root
        self._tokens = tokens
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl = (
            ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        )
        self._session: aiohttp.ClientSession | None = None

    async def send(self, call: GraphCall) -> GraphReply:
        """Raises `TransportError`, or `auth.TokenError` when no token can be had."""
        token = await self._tokens.token()
        reply = await self._request(call, token)
        if reply.status == 401:
            reply = await self._request(call, await self._tokens.renew(token))
        return reply

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, call: GraphCall, token: str) -> GraphReply:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(ssl=self._ssl)
            )
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "client-request-id": str(uuid.uuid4()),
        }
        try:
            async with self._session.request(
                call.method,
                self._root + call.path,
                json=call.body if call.method == "POST" else None,
                headers=headers,
                allow_redirects=False,
            ) as response:
                status = response.status
                data = await _read_bounded(response, status)
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), now_epoch=time.time()
                )
                is_json = response.content_type == "application/json"
        except TimeoutError:
            raise TransportError(f"no answer within {self._timeout.total:g} s") from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"{type(exc).__name__}: {_safe(exc)}") from None
        body: object = None
        if data and is_json:
            try:
                body = json.loads(data)
            except ValueError:
                if 200 <= status < 300:
                    raise TransportError(f"HTTP {status} with a body that is not JSON") from None
        code, message = _graph_error(body)
        return GraphReply(
            status=status,
            retry_after=retry_after,
            body=body,
            error_code=code,
            error_message=message,
        )


async def _read_bounded(response: aiohttp.ClientResponse, status: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise TransportError(f"reply larger than {MAX_REPLY_BYTES} bytes (HTTP {status})")
        chunks.append(chunk)
    return b"".join(chunks)


def _graph_error(body: object) -> tuple[str | None, str | None]:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (code if isinstance(code, str) else None, message if isinstance(message, str) else None)


def _safe(exc: BaseException) -> str:
    # aiohttp's connection errors name host and OS error; keep the first line, bounded.
    text = str(exc).splitlines()
    return text[0][:200] if text else ""
