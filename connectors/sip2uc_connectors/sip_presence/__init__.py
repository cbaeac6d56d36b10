"""The bridge to SIP SIMPLE presence servers: PUBLISH (RFC 3903) and SUBSCRIBE/NOTIFY (RFC 6665).

Sans-IO: `publication` and `subscription` (one state machine each), `agent` (the user agent
keeping thousands of them in step over the core's transaction layer), `mapping`, `pidf` and
`dialog_info` (the documents). asyncio: `transport` (UDP/TCP/TLS towards the server) and
`bridge` (the `Bridge` the runner drives).
"""
