"""A Contact of a REGISTER with its lifetime (RFC 3261 §10.2.1, §10.3).

The same record travels both ways: the sidecar's registrar reads it from a REGISTER (requested
lifetime), the control plane turns it into a binding, and answers with each binding as a Contact
again (remaining lifetime), which the sidecar lists in the 200.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Contact"]


@dataclass(frozen=True, slots=True)
class Contact:
    uri: str
    #: Seconds: requested (from the contact's expires parameter or the Expires header; 0 removes
    #: the binding) or, in an answer, remaining.
    expires: int
    #: q-value in thousandths (0-1000), RFC 3261 §20.10.
    q_milli: int = 1000
    #: +sip.instance (RFC 5626 §4.1) without its angle brackets, if any.
    instance_id: str = ""
