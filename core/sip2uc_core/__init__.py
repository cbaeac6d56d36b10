"""What both servers (and the UC bridges) share: the sans-IO SIP core (`sip/`, digest, transport
endpoints and REGISTER contacts included), the event-package documents (`events/`: PIDF,
dialog-info, RLMI) and the RTP statistics record (`stream_stats`).

Imports nothing but the standard library and ``defusedxml`` (untrusted XML); no sockets, no
clocks, no generated API types.
"""
