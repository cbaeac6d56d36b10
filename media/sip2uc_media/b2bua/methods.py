"""The methods a sidecar answers: the one source of every ``Allow`` header it sends.

RFC 3261 §20.5: ``Allow`` lists the methods the user agent supports, so a 405 to a SUBSCRIBE,
the 200 to an in-dialog OPTIONS and our INVITEs all say the same thing.  A method this sidecar
knows but does not serve (yet) gets 405 with that list; a method it does not know gets 501.
"""

from __future__ import annotations

__all__ = ["ALLOW", "ALLOW_REGISTRAR", "NOT_SERVED", "allow"]

#: A sidecar always registers handsets and answers OPTIONS.
REGISTRAR_METHODS = ("REGISTER", "OPTIONS")
#: What the B2BUA adds: calls, and INFO within them (answered 200; DTMF travels as RFC 4733).
CALL_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "INFO")
#: Known methods a sidecar does not serve: 405 with ``Allow``.  REFER is among them until
#: transfer exists; RFC 5057 §5.1 gives a 405 to a request within a dialog a transaction-only
#: impact, so the call carries on.
NOT_SERVED = frozenset({"MESSAGE", "SUBSCRIBE", "NOTIFY", "PUBLISH", "REFER", "UPDATE", "PRACK"})


def allow(*, calls: bool) -> str:
    """The ``Allow`` value of a sidecar with (or without) its B2BUA."""
    return ", ".join(REGISTRAR_METHODS + CALL_METHODS if calls else REGISTRAR_METHODS)


ALLOW = allow(calls=True)
ALLOW_REGISTRAR = allow(calls=False)
