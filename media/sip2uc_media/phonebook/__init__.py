"""The shared address book served to handsets over HTTP(S).

`model` holds the entries and answers searches, `formats` renders a page of them in each
handset vendor's remote-phonebook format, `queries` reads a request's parameters, `http_auth`
checks HTTP Digest credentials (RFC 7616) and per-site tokens; all four are pure. `server` is
the thin aiohttp adapter that the sidecar runs.
"""
