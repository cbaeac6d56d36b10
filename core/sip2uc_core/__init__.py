"""What both servers (and the UC bridges) share: the sans-IO SIP core (`sip/`), digest included.

Imports nothing but the standard library; no sockets, no clocks, no generated API types.
"""
