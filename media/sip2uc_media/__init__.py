"""sip2uc media sidecar: SIP edge and B2BUA, RTP/DTMF relay and their thin asyncio adapters."""
