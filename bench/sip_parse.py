"""Messages per second for parse + serialise of a typical REGISTER and INVITE (one core).

Run: .venv/bin/python bench/sip_parse.py [seconds-per-case]
Parse includes what the registrar/B2BUA touches on every message (Via, From/To tags, CSeq,
Contact); no assertions, just figures.
"""

from __future__ import annotations

import sys
import time

from sip2uc_core.sip.message import parse_message

REGISTER = (
    b"REGISTER sip:pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.10.0.21:5060;branch=z9hG4bK-524287-1---b3e0c3c6d4d2f1a1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'Contact: <sip:2001@10.10.0.21:5060;transport=udp>;expires=3600;+sip.instance="<urn:uuid:'
    b'00000000-0000-1000-8000-000B82A1B2C3>"\r\n'
    b"To: <sip:2001@pbx.example.com>\r\n"
    b"From: <sip:2001@pbx.example.com>;tag=b4e2a1f0\r\n"
    b"Call-ID: 1d2f3c4b5a69788796a5b4c3d2e1f001@10.10.0.21\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Expires: 3600\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n"
    b"Supported: replaces, path, timer, eventlist\r\n"
    b"User-Agent: Grandstream HT502 1.0.18.1\r\n"
    b'Authorization: Digest username="2001", realm="sip2uc", nonce="1717171717:abcdef0123456789",'
    b' uri="sip:pbx.example.com", response="0123456789abcdef0123456789abcdef", algorithm=MD5,'
    b' qop=auth, nc=00000001, cnonce="0a4f113b"\r\n'
    b"Content-Length: 0\r\n"
    b"\r\n"
)

SDP = (
    b"v=0\r\no=2001 8000 8000 IN IP4 10.10.0.21\r\ns=SIP Call\r\nc=IN IP4 10.10.0.21\r\nt=0 0\r\n"
    b"m=audio 5004 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:2002@pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.10.0.21:5060;branch=z9hG4bK-524287-1---a1b2c3d4e5f60718;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:2001@10.10.0.21:5060>\r\n"
    b'To: "Reception" <sip:2002@pbx.example.com>\r\n'
    b'From: "Desk 1" <sip:2001@pbx.example.com>;tag=9fa1b2c3\r\n'
    b"Call-ID: 6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d@10.10.0.21\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, OPTIONS, INFO\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: Mitel 6867i 5.1.1\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)


def run(name: str, data: bytes, seconds: float) -> None:
    count = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(200):
            msg = parse_message(data)
            _ = msg.top_via.branch, msg.from_.tag, msg.to.tag, msg.cseq, msg.contact
            bytes(msg)
        count += 200
    elapsed = time.perf_counter() - start
    print(f"{name:9} parse+serialise: {count / elapsed:10.0f} messages/s ({len(data)} octets)")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    run("REGISTER", REGISTER, seconds)
    run("INVITE", INVITE, seconds)


if __name__ == "__main__":
    main()
