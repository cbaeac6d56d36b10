"""Checks of each connector kind's configuration, so that a bad one is refused when it is given.

The configuration arrives as a JSON-able mapping with the API's field names (see
``api.convert.connector_config_from_pb``); only what a bridge could not work with is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from sip2uc_core.sip import SipParseError, SipUri, parse_uri

from .connectors import ConnectorKind
from .errors import FieldViolation

MIN_EXPIRES = 60
MAX_EXPIRES = 86_400
MAX_IN_FLIGHT = 10_000
MAX_NOTE = 280
MAX_PEM = 65_536
_RPID_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
_TRANSPORTS = ("udp", "tcp", "tls")
_GUID_RE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE
)
_TENANT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,252}$")

Settings = Mapping[str, object]


def validate_settings(kind: ConnectorKind, settings: Settings, prefix: str) -> list[FieldViolation]:
    return _CHECKS[kind](settings, prefix)


def check_sip_server(text: str) -> str | None:
    """Why ``text`` is not a usable `sip:HOST[:PORT][;transport=udp|tcp|tls]`, or None."""
    try:
        uri = parse_uri(text.strip())
    except SipParseError as exc:
        return f"not a SIP URI ({exc})"
    if not isinstance(uri, SipUri) or uri.scheme != "sip":
        return "must be a sip: URI, like sip:presence.example.com:5060;transport=tcp"
    if uri.user is not None:
        return "names the server only (no user part), like sip:presence.example.com"
    transport = (uri.transport or "udp").lower()
    if transport not in _TRANSPORTS:
        return f"transport must be udp, tcp or tls, not {transport!r}"
    if uri.port is not None and not 1 <= uri.port <= 65535:
        return "port must be 1-65535"
    return None


def _sip_presence(settings: Settings, prefix: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    server = settings.get("server")
    if not isinstance(server, str) or not server.strip():
        out.append(FieldViolation(f"{prefix}.server", "required, like sip:HOST:PORT;transport=tcp"))
    else:
        problem = check_sip_server(server)
        if problem is not None:
            out.append(FieldViolation(f"{prefix}.server", problem))
    expires = _int(settings, "expires")
    if expires and not MIN_EXPIRES <= expires <= MAX_EXPIRES:
        out.append(
            FieldViolation(f"{prefix}.expires", f"must be {MIN_EXPIRES}-{MAX_EXPIRES} (0: 600)")
        )
    if _int(settings, "max_in_flight") > MAX_IN_FLIGHT:
        out.append(FieldViolation(f"{prefix}.max_in_flight", f"at most {MAX_IN_FLIGHT}"))
    username = settings.get("username", "")
    if isinstance(username, str) and any(ord(c) < 0x20 or c == '"' for c in username):
        out.append(FieldViolation(f"{prefix}.username", "must not contain quotes or controls"))
    note = settings.get("dnd_note", "")
    if isinstance(note, str) and len(note) > MAX_NOTE:
        out.append(FieldViolation(f"{prefix}.dnd_note", f"at most {MAX_NOTE} characters"))
    pem = settings.get("tls_ca_pem", "")
    if isinstance(pem, str) and pem and (len(pem) > MAX_PEM or "BEGIN CERTIFICATE" not in pem):
        out.append(FieldViolation(f"{prefix}.tls_ca_pem", "must be PEM certificates (<= 64 KiB)"))
    seen: set[object] = set()
    for i, rule in enumerate(_list(settings, "publish_mapping")):
        path = f"{prefix}.publish_mapping[{i}]"
        availability = rule.get("availability")
        if availability in (None, "AVAILABILITY_UNSPECIFIED"):
            out.append(FieldViolation(f"{path}.availability", "required"))
        elif availability in seen:
            out.append(FieldViolation(f"{path}.availability", "given twice"))
        seen.add(availability)
        out += _rpid_name(rule.get("activity", ""), f"{path}.activity")
        text = rule.get("note", "")
        if isinstance(text, str) and len(text) > MAX_NOTE:
            out.append(FieldViolation(f"{path}.note", f"at most {MAX_NOTE} characters"))
    for i, rule in enumerate(_list(settings, "inbound_mapping")):
        path = f"{prefix}.inbound_mapping[{i}]"
        out += _rpid_name(rule.get("activity", ""), f"{path}.activity")
        if rule.get("availability") == "AVAILABILITY_OFFLINE":
            out.append(
                FieldViolation(
                    f"{path}.availability",
                    "offline cannot be brought in: a UC client's state never hides a handset",
                )
            )
    return out


def _teams(settings: Settings, prefix: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    tenant = settings.get("tenant_id", "")
    if not isinstance(tenant, str) or not (_GUID_RE.match(tenant) or _TENANT_NAME_RE.match(tenant)):
        out.append(
            FieldViolation(f"{prefix}.tenant_id", "required: the tenant's GUID or its domain name")
        )
    client = settings.get("client_id", "")
    if not isinstance(client, str) or not _GUID_RE.match(client):
        out.append(FieldViolation(f"{prefix}.client_id", "required: the application's GUID"))
    pem = settings.get("tls_ca_pem", "")
    if isinstance(pem, str) and pem and (len(pem) > MAX_PEM or "BEGIN CERTIFICATE" not in pem):
        out.append(FieldViolation(f"{prefix}.tls_ca_pem", "must be PEM certificates (<= 64 KiB)"))
    interval = settings.get("poll_interval")
    if interval is not None and not _duration_within(interval, 0.0, 3600.0):
        out.append(FieldViolation(f"{prefix}.poll_interval", "must be 0 (off) to 3600 s"))
    for name in ("graph_url", "token_url"):
        value = settings.get(name, "")
        if isinstance(value, str) and value:
            parts = urlsplit(value)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                out.append(FieldViolation(f"{prefix}.{name}", "must be an https:// URL"))
    return out


def _duration_within(value: object, low: float, high: float) -> bool:
    """A Duration in its JSON form ("30s", "1.5s") within [low, high]."""
    if not isinstance(value, str) or not value.endswith("s"):
        return False
    try:
        seconds = float(value[:-1])
    except ValueError:
        return False
    return low <= seconds <= high


def _int(settings: Settings, name: str) -> int:
    value = settings.get(name, 0)
    return value if isinstance(value, int) else 0


def _list(settings: Settings, name: str) -> list[Mapping[str, object]]:
    value = settings.get(name, [])
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _rpid_name(value: object, path: str) -> list[FieldViolation]:
    if value in ("", None):
        return []
    if not isinstance(value, str) or not _RPID_NAME_RE.match(value):
        return [FieldViolation(path, "an RPID element name like away, busy or on-the-phone")]
    return []


_CHECKS: dict[ConnectorKind, Callable[[Settings, str], list[FieldViolation]]] = {
    ConnectorKind.SIP_PRESENCE: _sip_presence,
    ConnectorKind.TEAMS: _teams,
}
