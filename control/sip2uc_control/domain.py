"""Users and their devices as the control plane holds them (no generated code here)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from ipaddress import ip_network
from typing import Any

# Re-exported: the digest algorithms and trunk transports are the types both servers share.
from sip2uc_core.sip.digest import Algorithm as Algorithm
from sip2uc_core.sip.endpoint import Transport as Transport

from .errors import FieldViolation

E164_RE = re.compile(r"^\+[1-9][0-9]{1,14}$")
EXTENSION_RE = re.compile(r"^[0-9]{2,10}$")
# RFC 3261 §25.1 user part characters (unreserved / escaped / user-unreserved), kept simple.
SIP_URI_RE = re.compile(r"^sips?:[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+@[A-Za-z0-9.\-\[\]:]+$")
DIGEST_USERNAME_RE = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/%@]{1,64}$")
DEVICE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9\-_]{0,62}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
# An Entra (Azure AD) object id is a GUID; a UPN is an RFC 822-style name@suffix.
ENTRA_OBJECT_ID_RE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE
)
UPN_RE = re.compile(r"^[^@\s\x00-\x1f]{1,64}@[A-Za-z0-9.\-]{1,255}$")
MAX_DISPLAY_NAME = 128
MAX_PASSWORD = 128
MIN_PASSWORD = 4
#: What a device may be challenged with (RFC 8760): the algorithms whose HA1 the store keeps.
DIGEST_ALGORITHMS = (Algorithm.MD5, Algorithm.SHA_256)


@dataclass(frozen=True)
class Forwarding:
    enabled: bool = False
    target: str = ""


@dataclass(frozen=True)
class UserSettings:
    dnd_allowed: bool = True
    forward_always: Forwarding = Forwarding()
    forward_busy: Forwarding = Forwarding()
    forward_no_answer: Forwarding = Forwarding()
    no_answer_timeout_seconds: int = 0
    call_waiting: bool = True
    #: User references (extension, SIP URI, users/{id}) on the user's buddy list.
    buddies: tuple[str, ...] = ()
    #: Who may watch this user: "everyone" (also when empty), "same-sidecar", "allow-list".
    watch_policy: str = ""
    #: With the allow-list policy: user references allowed to watch.
    allowed_watchers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        def fwd(f: Forwarding) -> dict[str, Any]:
            return {"enabled": f.enabled, "target": f.target}

        return {
            "dnd_allowed": self.dnd_allowed,
            "forward_always": fwd(self.forward_always),
            "forward_busy": fwd(self.forward_busy),
            "forward_no_answer": fwd(self.forward_no_answer),
            "no_answer_timeout_seconds": self.no_answer_timeout_seconds,
            "call_waiting": self.call_waiting,
            "buddies": list(self.buddies),
            "watch_policy": self.watch_policy,
            "allowed_watchers": list(self.allowed_watchers),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserSettings:
        def fwd(d: dict[str, Any] | None) -> Forwarding:
            d = d or {}
            return Forwarding(bool(d.get("enabled", False)), str(d.get("target", "")))

        return cls(
            dnd_allowed=bool(data.get("dnd_allowed", True)),
            forward_always=fwd(data.get("forward_always")),
            forward_busy=fwd(data.get("forward_busy")),
            forward_no_answer=fwd(data.get("forward_no_answer")),
            no_answer_timeout_seconds=int(data.get("no_answer_timeout_seconds", 0)),
            call_waiting=bool(data.get("call_waiting", True)),
            buddies=tuple(str(b) for b in data.get("buddies", ())),
            watch_policy=str(data.get("watch_policy", "")),
            allowed_watchers=tuple(str(w) for w in data.get("allowed_watchers", ())),
        )


@dataclass(frozen=True)
class RegisteringDevice:
    digest_username: str
    ha1_md5: str = ""
    ha1_sha256: str = ""
    max_bindings: int = 0
    #: What the device is challenged with, most preferred first; empty: the sidecar's default.
    #: A response computed with any other algorithm is refused.
    digest_algorithms: tuple[Algorithm, ...] = ()

    def allows(self, algorithm: Algorithm) -> bool:
        return not self.digest_algorithms or algorithm.base in self.digest_algorithms

    @property
    def has_password(self) -> bool:
        return bool(self.ha1_md5 and self.ha1_sha256)


@dataclass(frozen=True)
class TrunkDevice:
    source_network: str
    source_port: int = 0
    request_uri_user: str = ""
    target: str = ""
    transport: Transport = Transport.UDP
    sidecar: str = ""


@dataclass(frozen=True)
class Device:
    id: str
    label: str = ""
    registering: RegisteringDevice | None = None
    trunk: TrunkDevice | None = None


@dataclass(frozen=True)
class DirectoryOrigin:
    source: str = ""
    source_id: str = ""
    overridden_fields: tuple[str, ...] = ()
    import_time: float = 0.0


@dataclass(frozen=True)
class User:
    id: str
    sip_uri: str
    display_name: str = ""
    extension: str = ""
    e164: str = ""
    email: str = ""
    disabled: bool = False
    devices: tuple[Device, ...] = ()
    settings: UserSettings = field(default_factory=UserSettings)
    origin: DirectoryOrigin = field(default_factory=DirectoryOrigin)
    create_time: float = 0.0
    update_time: float = 0.0
    #: The user in Microsoft Entra ID, for the Teams connector (lower-case GUID).
    entra_object_id: str = ""
    #: The user principal name in Entra ID / Active Directory, for the Teams connector.
    user_principal_name: str = ""

    @property
    def name(self) -> str:
        return f"users/{self.id}"

    @property
    def alias(self) -> str:
        """The user part of the SIP identity."""
        return self.sip_uri.split(":", 1)[1].split("@", 1)[0]

    def device(self, device_id: str) -> Device | None:
        return next((d for d in self.devices if d.id == device_id), None)

    def with_changes(self, **changes: Any) -> User:
        return replace(self, **changes)


def validate_user_fields(user: User, prefix: str = "user") -> list[FieldViolation]:
    """Syntax checks of every user field; uniqueness is the store's job."""
    out: list[FieldViolation] = []
    if not user.sip_uri:
        out.append(FieldViolation(f"{prefix}.sip_uri", "required, like sip:alice@example.com"))
    elif not SIP_URI_RE.match(user.sip_uri):
        out.append(
            FieldViolation(f"{prefix}.sip_uri", "must be a SIP URI like sip:alice@example.com")
        )
    if user.extension and not EXTENSION_RE.match(user.extension):
        out.append(FieldViolation(f"{prefix}.extension", "must be 2-10 digits"))
    if user.e164 and not E164_RE.match(user.e164):
        out.append(
            FieldViolation(
                f"{prefix}.e164", "must be E.164: '+', country code and number, like +4989123456"
            )
        )
    if len(user.display_name) > MAX_DISPLAY_NAME:
        out.append(
            FieldViolation(f"{prefix}.display_name", f"at most {MAX_DISPLAY_NAME} characters")
        )
    if any(ch in user.display_name for ch in '\r\n"<>'):
        out.append(
            FieldViolation(f"{prefix}.display_name", "must not contain CR, LF, quotes or <>")
        )
    if user.email and not EMAIL_RE.match(user.email):
        out.append(FieldViolation(f"{prefix}.email", "must be an e-mail address"))
    if user.entra_object_id and not ENTRA_OBJECT_ID_RE.match(user.entra_object_id):
        out.append(
            FieldViolation(
                f"{prefix}.entra_object_id",
                "must be a GUID like 2b7b4c1e-8f2d-4e57-9c1a-3f5d6e7a8b9c",
            )
        )
    if user.user_principal_name and not UPN_RE.match(user.user_principal_name):
        out.append(
            FieldViolation(
                f"{prefix}.user_principal_name", "must be a name@domain like alice@example.com"
            )
        )
    timeout = user.settings.no_answer_timeout_seconds
    if timeout != 0 and not 5 <= timeout <= 300:
        out.append(
            FieldViolation(
                f"{prefix}.settings.no_answer_timeout_seconds", "must be 5-300 (0: server default)"
            )
        )
    seen: set[str] = set()
    for i, dev in enumerate(user.devices):
        path = f"{prefix}.devices[{i}]"
        if not DEVICE_ID_RE.match(dev.id):
            out.append(
                FieldViolation(f"{path}.id", "lowercase letters, digits, '-' or '_', max 63")
            )
        if dev.id in seen:
            out.append(FieldViolation(f"{path}.id", f"duplicate device id {dev.id!r}"))
        seen.add(dev.id)
        if (dev.registering is None) == (dev.trunk is None):
            out.append(FieldViolation(path, "exactly one of registering or trunk must be set"))
        if dev.registering is not None:
            reg = dev.registering
            if not DIGEST_USERNAME_RE.match(reg.digest_username):
                out.append(
                    FieldViolation(
                        f"{path}.registering.digest_username", "1-64 URI user characters"
                    )
                )
            if reg.max_bindings < 0 or reg.max_bindings > 100:
                out.append(FieldViolation(f"{path}.registering.max_bindings", "must be 0-100"))
            algorithms = reg.digest_algorithms
            if any(a not in DIGEST_ALGORITHMS for a in algorithms) or len(set(algorithms)) != len(
                algorithms
            ):
                out.append(
                    FieldViolation(
                        f"{path}.registering.digest_algorithms",
                        "MD5 and SHA-256, each at most once, most preferred first (empty: the "
                        "sidecar's default)",
                    )
                )
        if dev.trunk is not None:
            try:
                ip_network(dev.trunk.source_network, strict=False)
            except ValueError:
                out.append(
                    FieldViolation(
                        f"{path}.trunk.source_network", "must be a CIDR like 10.0.0.5/32"
                    )
                )
            if dev.trunk.source_port > 65535:
                out.append(FieldViolation(f"{path}.trunk.source_port", "must be 0-65535"))
    return out


def validate_password(password: str, path: str) -> list[FieldViolation]:
    if len(password) < MIN_PASSWORD or len(password) > MAX_PASSWORD:
        return [FieldViolation(path, f"must be {MIN_PASSWORD}-{MAX_PASSWORD} characters")]
    if any(ord(c) < 0x20 for c in password):
        return [FieldViolation(path, "must not contain control characters")]
    return []
