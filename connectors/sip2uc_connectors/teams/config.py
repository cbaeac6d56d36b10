"""A Teams connector's settings: the Entra application, where Graph and the identity platform are,
the mapping tables and the timing. Secrets never appear in a repr or a message."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .mapping import TeamsMapping
from .sync import SyncTiming

GRAPH_URL = "https://graph.microsoft.com"
LOGIN_URL = "https://login.microsoftonline.com"
_GRANT_PATH = "/oauth2/v2.0/token"


class ConfigError(ValueError):
    pass


def _read_private_file(path: Path, what: str) -> str:
    """A secret file must not be readable by group or others (as the CLI writes them, 0600)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{what} {path} is readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it"
        )
    return path.read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class ClientSecret:
    value: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.value:
            raise ConfigError("the client secret is empty")

    @classmethod
    def from_file(cls, path: str | Path) -> ClientSecret:
        return cls(_read_private_file(Path(path), "client secret file").strip())


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A certificate credential: the private key (PEM) and its certificate (PEM), whose public
    part is uploaded to the app registration."""

    private_key_pem: str = field(repr=False)
    certificate_pem: str

    def __post_init__(self) -> None:
        if "PRIVATE KEY-----" not in self.private_key_pem:
            raise ConfigError("the certificate credential has no PEM private key")
        if "-----BEGIN CERTIFICATE-----" not in self.certificate_pem:
            raise ConfigError("the certificate credential has no PEM certificate")

    @classmethod
    def from_file(cls, path: str | Path) -> ClientCertificate:
        """One PEM file holding the private key and the certificate."""
        text = _read_private_file(Path(path), "client certificate file")
        return cls(private_key_pem=text, certificate_pem=text)


def _https_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"{name} {value!r} must be an https:// URL without query or fragment")
    return value.rstrip("/")


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamsConfig:
    tenant_id: str
    """The directory (tenant) id of the Microsoft Entra tenant."""
    client_id: str
    """The application (client) id of the app registration; also the presence session id."""
    credential: ClientSecret | ClientCertificate
    graph_url: str = GRAPH_URL
    """Graph's service root without version (national clouds: https://graph.microsoft.us,
    https://dod-graph.microsoft.us, https://microsoftgraph.chinacloudapi.cn)."""
    token_url: str = LOGIN_URL
    """The identity platform: either its base URL (https://login.microsoftonline.us) or the full
    token endpoint (https://login.microsoftonline.us/TENANT/oauth2/v2.0/token)."""
    ca_file: str | None = None
    """A CA bundle to trust instead of the system's (a TLS-inspecting proxy, the tests)."""
    request_timeout: float = 15.0
    mapping: TeamsMapping = field(default_factory=TeamsMapping)
    timing: SyncTiming = field(default_factory=SyncTiming)

    def __post_init__(self) -> None:
        for name in ("tenant_id", "client_id"):
            value = getattr(self, name)
            if not value or any(c in value for c in "/?#@ ") or not value.isascii():
                raise ConfigError(f"{name} {value!r} is not a directory or application id")
        graph = _https_url("graph_url", self.graph_url)
        if graph.endswith("/v1.0"):
            graph = graph[: -len("/v1.0")]
        object.__setattr__(self, "graph_url", graph)
        object.__setattr__(self, "token_url", _https_url("token_url", self.token_url))
        self.authority()  # validates
        if self.request_timeout <= 0:
            raise ConfigError("request_timeout must be positive")

    @property
    def graph_root(self) -> str:
        """The versioned service root requests go to."""
        return f"{self.graph_url}/v1.0"

    @property
    def scope(self) -> str:
        """`<resource>/.default`: every application permission granted to the app for Graph.
        The resource is Graph's host in the cloud used (graph.microsoft.us in GCC High, ...)."""
        parts = urlsplit(self.graph_url)
        return f"{parts.scheme}://{parts.netloc}/.default"

    def authority(self) -> str:
        """The identity platform authority for the tenant (`https://host/TENANT`)."""
        parts = urlsplit(self.token_url)
        base = f"{parts.scheme}://{parts.netloc}"
        path = parts.path.rstrip("/")
        if not path:
            return f"{base}/{self.tenant_id}"
        if path.endswith(_GRANT_PATH):
            tenant = path[: -len(_GRANT_PATH)].strip("/")
            if tenant.lower() != self.tenant_id.lower():
                raise ConfigError(f"token_url names tenant {tenant!r}, not {self.tenant_id!r}")
            return f"{base}/{tenant}"
        raise ConfigError(
            f"token_url {self.token_url!r} is neither a login host nor a .../oauth2/v2.0/token endpoint"
        )
