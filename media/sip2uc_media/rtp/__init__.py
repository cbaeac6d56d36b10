"""The sidecar's media plane: G.711, RFC 4733 DTMF, RTP statistics and the relay.

Everything except :mod:`.aio` is sans-IO (bytes and ``now`` in, bytes and events out);
:mod:`.aio` binds the sockets and drives the core from an asyncio loop.
"""
