"""Bridges that carry sip2uc presence to unified-communications platforms and back, as clients of
sip2uc's public API.

`bridge` defines what a bridge is, `runner` runs one connector's bridge against the control
plane, `supervisor` runs all configured connectors inside `sip2uc up`, and `kinds` names the
bridge of each connector kind (`sip_presence`: a SIP SIMPLE presence server; `teams`: Microsoft
Teams through Microsoft Graph).
"""
