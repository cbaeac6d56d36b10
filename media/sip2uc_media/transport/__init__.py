"""Thin asyncio adapters (UDP, TCP, TLS) that feed whole SIP messages to the sidecar's core."""

from .base import MessageSink, Source

__all__ = ["MessageSink", "Source"]
