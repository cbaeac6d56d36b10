"""What both servers (and the UC bridges) share: the sans-IO SIP core (`sip/`, digest, transport
endpoints and REGISTER contacts included) and the RTP statistics record (`stream_stats`).

Imports nothing but the standard library; no sockets, no clocks, no generated API types.
"""
