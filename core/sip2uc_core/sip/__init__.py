"""Sans-IO SIP core: messages, URIs, headers, stream framing and SDP.

Nothing in this package touches sockets, clocks or the event loop; adapters feed it bytes.
"""

from .errors import SipParseError
from .headers import CSeq, Headers, NameAddr, Via
from .message import SipRequest, SipResponse, make_response, parse_message
from .uri import AbsoluteUri, SipUri, parse_uri

__all__ = [
    "AbsoluteUri",
    "CSeq",
    "Headers",
    "NameAddr",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "Via",
    "make_response",
    "parse_message",
    "parse_uri",
]
