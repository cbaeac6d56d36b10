"""Sans-IO SIP core: messages, URIs, headers, stream framing, SDP, transactions, digest, and the
endpoint and contact records both servers exchange.

Nothing in this package touches sockets, clocks or the event loop; adapters feed it bytes.
"""

from .contact import Contact
from .endpoint import Endpoint, Transport
from .errors import SipParseError
from .headers import CSeq, Headers, NameAddr, Via
from .message import SipRequest, SipResponse, make_response, parse_message
from .uri import AbsoluteUri, SipUri, parse_uri

__all__ = [
    "AbsoluteUri",
    "CSeq",
    "Contact",
    "Endpoint",
    "Headers",
    "NameAddr",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "Transport",
    "Via",
    "make_response",
    "parse_message",
    "parse_uri",
]
