"""sip2uc media sidecar: sans-IO SIP core, RTP/DTMF relay and their thin asyncio adapters."""
