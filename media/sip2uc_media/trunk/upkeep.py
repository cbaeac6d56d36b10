"""One trunk's upkeep, sans-IO: outbound registration (RFC 3261 §10.2) and OPTIONS keep-alive
(RFC 3261 §11).

Driven from outside like the transaction layer: `poll(now)` returns the requests due,
`response`/`timeout` feed what happened to them, `next_deadline()` says when to poll again.
It makes requests and keeps state; sending them (through the sidecar's transaction layer) and
the clock belong to the adapter (`carrier.py`).

Registration: REGISTER with the trunk's credentials (digest, answered once per challenge and
again only for a ``stale`` nonce, `ClientAuth`), refreshed when 80% of the granted time has
passed, a 423 answered with its Min-Expires, and after a failure retried with a backoff that
doubles from 5 s to 5 minutes. Keep-alive: an OPTIONS every interval; a response of any kind
but 408/503 within `RESPONSE_TIMEOUT` means up (a 401 or 404 still proves a live SIP peer),
none means down. A 200 to REGISTER means up as well.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from sip2uc_core.sip.client_auth import ClientAuth
from sip2uc_core.sip.endpoint import Transport
from sip2uc_core.sip.message import SipRequest, SipResponse
from sip2uc_core.sip.transaction import MAGIC_COOKIE
from sip2uc_core.sip.uri import parse_uri

__all__ = ["RESPONSE_TIMEOUT", "Outgoing", "Purpose", "TrunkConfig", "TrunkUpkeep"]

#: Without a response this long after an OPTIONS or REGISTER went out, the trunk is down (the
#: transaction itself goes on until its timer F).
RESPONSE_TIMEOUT = 4.0
BACKOFF_FIRST = 5.0
BACKOFF_MAX = 300.0
#: A registration is refreshed when this share of the granted time has passed.
REFRESH_SHARE = 0.8
DOWN_STATUSES = frozenset({408, 503})


class Purpose(enum.Enum):
    OPTIONS = "options"
    REGISTER = "register"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkConfig:
    """A trunk as its sidecar needs it (`SidecarTrunk` of the sidecar API)."""

    id: str
    address: str
    port: int = 0
    transport: Transport = Transport.UDP
    username: str = ""
    password: str = field(default="", repr=False)
    register: bool = False
    register_expires: int = 600
    options_interval: float = 30.0
    contact_user: str = "sip2uc"
    tls_ca_pem: str = ""

    @property
    def domain(self) -> str:
        """The trunk's host as it goes into URIs."""
        return f"[{self.address}]" if ":" in self.address else self.address


@dataclass(frozen=True, slots=True)
class Outgoing:
    purpose: Purpose
    request: SipRequest


@dataclass(slots=True)
class _InFlight:
    sent_at: float
    retried_auth: bool = False


class TrunkUpkeep:
    def __init__(
        self,
        config: TrunkConfig,
        *,
        local_host: str,
        local_port: int,
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self.config = config
        self.local_host = local_host
        self.local_port = local_port
        self._random = random_bytes
        self.auth = ClientAuth(config.username, config.password, random_bytes)
        self._call_id = f"{random_bytes(10).hex()}@{local_host}"
        self._from_tag = random_bytes(6).hex()
        self._cseq = 0
        self._options_call_id = f"{random_bytes(10).hex()}@{local_host}"
        self._options_cseq = 0
        self._in_flight: dict[Purpose, _InFlight] = {}
        self._next: dict[Purpose, float] = {Purpose.OPTIONS: 0.0}
        if config.register:
            self._next[Purpose.REGISTER] = 0.0
        self._expires = config.register_expires
        self._failures = 0
        #: Whether the trunk answered the last OPTIONS or REGISTER.
        self.reachable = False
        #: Until when the trunk holds our registration (0: it does not).
        self.registered_until = 0.0
        #: Why it is down or unregistered, for status and logs; "" when fine.
        self.error = ""
        #: Bumped on every change of what `state` returns.
        self.version = 0

    # --- state ---------------------------------------------------------------------------------

    def registered(self, now: float) -> bool:
        return self.registered_until > now

    def state(self, now: float) -> tuple[bool, bool, str]:
        return self.reachable, self.registered(now), self.error

    def next_deadline(self) -> float | None:
        times = list(self._next.values())
        times.extend(f.sent_at + RESPONSE_TIMEOUT for f in self._in_flight.values())
        if self.registered_until:
            times.append(self.registered_until)
        return min(times) if times else None

    # --- inputs --------------------------------------------------------------------------------

    def poll(self, now: float) -> list[Outgoing]:
        """The requests due now; also notices responses that never came and lapsed bindings."""
        out: list[Outgoing] = []
        for purpose, flight in list(self._in_flight.items()):
            if now >= flight.sent_at + RESPONSE_TIMEOUT:
                self._set(False, f"no response to {purpose.value.upper()}")
        if self.registered_until and now >= self.registered_until:
            self.registered_until = 0.0
            self._changed()
        for purpose, at in list(self._next.items()):
            if now >= at and purpose not in self._in_flight:
                del self._next[purpose]
                out.append(self._send(purpose, now))
        return out

    def response(self, purpose: Purpose, response: SipResponse, now: float) -> list[Outgoing]:
        """A final response to our `purpose` request; maybe the request again with credentials."""
        flight = self._in_flight.pop(purpose, None)
        if flight is None or response.status < 200:
            if flight is not None:
                self._in_flight[purpose] = flight
            return []
        status = response.status
        if purpose is Purpose.OPTIONS:
            self._options_done(status, now)
            return []
        if status in (401, 407):
            if self.auth.challenged(response, retried=flight.retried_auth):
                again = self._send(purpose, now)
                self._in_flight[purpose].retried_auth = True
                return [again]
            self._register_failed(self.auth.error or f"{status} to REGISTER", now)
            return []
        if status == 423:
            minimum = response.headers.get("Min-Expires") or ""
            if minimum.isdigit() and int(minimum) > self._expires and int(minimum) <= 86400:
                self._expires = int(minimum)
                return [self._send(purpose, now)]
        if 200 <= status < 300:
            self._registered(response, now)
            return []
        if status in DOWN_STATUSES:
            self._set(False, f"{status} to REGISTER")
        self._register_failed(f"{status} {response.reason} to REGISTER", now)
        return []

    def timeout(self, purpose: Purpose, now: float) -> None:
        """The transaction of our `purpose` request ended without a final response."""
        if self._in_flight.pop(purpose, None) is None:
            return
        self._set(False, f"no response to {purpose.value.upper()}")
        if purpose is Purpose.OPTIONS:
            self._next[Purpose.OPTIONS] = now + self.config.options_interval
        else:
            self._register_failed("no response to REGISTER", now)

    def unregister(self, now: float) -> list[Outgoing]:
        """REGISTER with Expires 0 (the trunk is going away); nothing if not registered."""
        if not self.registered(now):
            return []
        self._expires = 0
        self._in_flight.pop(Purpose.REGISTER, None)
        return [self._send(Purpose.REGISTER, now)]

    # --- what happens --------------------------------------------------------------------------

    def _options_done(self, status: int, now: float) -> None:
        if status in DOWN_STATUSES:
            self._set(False, f"{status} to OPTIONS")
        else:
            self._set(True, self.error if self.error.endswith("to REGISTER") else "")
        self._next[Purpose.OPTIONS] = now + self.config.options_interval

    def _registered(self, response: SipResponse, now: float) -> None:
        granted = self._granted(response)
        self._failures = 0
        self.registered_until = now + granted if granted else 0.0
        self._set(True, "")
        if granted:
            self._next[Purpose.REGISTER] = now + max(granted * REFRESH_SHARE, 1.0)
        self._changed()

    def _register_failed(self, why: str, now: float) -> None:
        delay = min(BACKOFF_FIRST * 2**self._failures, BACKOFF_MAX)
        self._failures += 1
        self._next[Purpose.REGISTER] = now + delay
        if self.error != why:
            self.error = why
            self._changed()

    def _granted(self, response: SipResponse) -> int:
        """The expiry the registrar granted our contact (RFC 3261 §10.2.4)."""
        ours = f"@{self.local_host}:{self.local_port}"
        for contact in response.contact:
            if ours in str(contact.uri):
                value = dict(contact.params).get("expires")
                if value is not None and value.isdigit():
                    return int(value)
        expires = response.expires
        return expires if expires is not None else self._expires

    def _set(self, reachable: bool, error: str) -> None:
        if (reachable, error) != (self.reachable, self.error):
            self.reachable = reachable
            self.error = error
            self._changed()

    def _changed(self) -> None:
        self.version += 1

    # --- requests ------------------------------------------------------------------------------

    def _send(self, purpose: Purpose, now: float) -> Outgoing:
        request = self._register() if purpose is Purpose.REGISTER else self._options()
        self.auth.authorize(request)
        self._in_flight[purpose] = _InFlight(now)
        return Outgoing(purpose, request)

    def _base(self, method: str, uri: str, to: str, call_id: str, cseq: int) -> SipRequest:
        c = self.config
        request = SipRequest(method, parse_uri(uri))
        h = request.headers
        branch = MAGIC_COOKIE + self._random(12).hex()
        h.add(
            "Via",
            f"SIP/2.0/{c.transport.via_name} {self.local_host}:{self.local_port};"
            f"branch={branch};rport",
        )
        h.add("Max-Forwards", "70")
        h.add("From", f"<sip:{c.username or c.contact_user}@{c.domain}>;tag={self._from_tag}")
        h.add("To", f"<{to}>")
        h.add("Call-ID", call_id)
        h.add("CSeq", f"{cseq} {method}")
        h.add("User-Agent", "sip2uc")
        return request

    def _target(self) -> str:
        c = self.config
        port = f":{c.port}" if c.port else ""
        transport = f";transport={c.transport.value}" if c.transport is not Transport.UDP else ""
        return f"sip:{c.domain}{port}{transport}"

    def _contact(self) -> str:
        c = self.config
        transport = f";transport={c.transport.value}" if c.transport is not Transport.UDP else ""
        return f"<sip:{c.contact_user}@{self.local_host}:{self.local_port}{transport}>"

    def _register(self) -> SipRequest:
        c = self.config
        self._cseq += 1
        aor = f"sip:{c.username or c.contact_user}@{c.domain}"
        request = self._base("REGISTER", self._target(), aor, self._call_id, self._cseq)
        request.headers.add("Contact", self._contact())
        request.headers.add("Expires", str(self._expires))
        request.headers.add("Content-Length", "0")
        return request

    def _options(self) -> SipRequest:
        self._options_cseq += 1
        target = self._target()
        request = self._base("OPTIONS", target, target, self._options_call_id, self._options_cseq)
        request.headers.add("Accept", "application/sdp")
        request.headers.add("Content-Length", "0")
        return request
