"""The state view: a read-only web page that shows a sip2uc control plane live.

It is a client of the public admin API. Its feeds follow the API's watch streams
(`WatchSidecars`, `WatchRegistrations`, `WatchPresence`, `WatchCalls`, `WatchLogEntries`) into
an in-memory view of the state; the page is rendered on the server (Jinja2) and kept current in
the browser by server-sent events that carry re-rendered fragments (htmx and its SSE extension).
`sip2uc up --web-listen` runs it in the server's process, `sip2uc web` on its own.
"""
