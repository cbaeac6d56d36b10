"""App-only access tokens for Graph: the OAuth 2.0 client-credentials grant through MSAL.

MSAL (the Microsoft Authentication Library) caches the token until shortly before it expires and
builds the signed client assertion for certificate credentials. It is synchronous (requests), so
its calls run in a worker thread. A token Graph refuses (401) is dropped from the cache and a new
one fetched once (`renew`). Tokens and secrets are never logged or put into messages.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol
from urllib.parse import urlsplit

import msal  # type: ignore[import-untyped]
import requests
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS  # type: ignore[import-untyped]

from .config import ClientCertificate, TeamsConfig


class TokenError(Exception):
    """No token. `transient`: the identity platform could not be reached (retry like a 5xx);
    otherwise it refused (wrong secret, unknown app or tenant, no consent)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class TokenSource(Protocol):
    async def token(self) -> str: ...

    async def renew(self, refused: str) -> str:
        """A token other than `refused` (which Graph rejected)."""
        ...

    async def close(self) -> None: ...


class _CaFileSession(requests.Session):
    """An HTTP session for MSAL that trusts only the configured CA file. Plain requests lets
    REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment override a session's `verify`
    (psf/requests#3829), which would silently ignore the connector's `ca_file`."""

    def __init__(self, ca_file: str, timeout: float) -> None:
        super().__init__()
        self.verify = ca_file
        self._timeout = timeout

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(*args, **kwargs)
        settings["verify"] = self.verify
        return settings

    def request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(*args, **kwargs)


class MsalTokenSource:
    def __init__(self, config: TeamsConfig) -> None:
        self._config = config
        self._app: msal.ConfidentialClientApplication | None = None
        self._current: str | None = None
        self._valid_until = 0.0
        self._lock = asyncio.Lock()

    def _build(self) -> msal.ConfidentialClientApplication:
        config = self._config
        credential: Any
        if isinstance(config.credential, ClientCertificate):
            # With the certificate MSAL signs with PS256 and names it by its SHA-256 thumbprint.
            credential = {
                "private_key": config.credential.private_key_pem,
                "public_certificate": config.credential.certificate_pem,
            }
        else:
            credential = config.credential.value
        return msal.ConfidentialClientApplication(
            config.client_id,
            client_credential=credential,
            authority=config.authority(),
            # MSAL checks an unknown login host, and looks up its aliases after a failed
            # request, by asking login.microsoftonline.com. A host that is not one of
            # Microsoft's (the contract stand-in, a private cloud) is taken as configured.
            instance_discovery=None if _is_microsoft_login_host(config.token_url) else False,
            http_client=_CaFileSession(config.ca_file, config.request_timeout)
            if config.ca_file
            else None,
            timeout=config.request_timeout,
            token_cache=msal.TokenCache(),
        )

    def _acquire(self) -> tuple[str, float]:
        try:
            if self._app is None:
                self._app = self._build()
            result = self._app.acquire_token_for_client(scopes=[self._config.scope])
        except ValueError as exc:
            # MSAL raises ValueError when the authority's discovery documents are refused.
            raise TokenError(
                f"identity platform refused the authority: {_first_line(exc)}", transient=False
            ) from None
        except Exception as exc:  # requests' connection and TLS errors
            host = urlsplit(self._config.token_url).netloc
            raise TokenError(
                f"identity platform {host} unreachable: {type(exc).__name__}", transient=True
            ) from None
        if "access_token" in result:
            token, lifetime = result["access_token"], result.get("expires_in", 0)
            assert isinstance(token, str)
            # Fetch again 5 minutes before expiry, as MSAL's cache itself does.
            return token, time.monotonic() + float(
                lifetime if isinstance(lifetime, int | float) else 0
            ) - 300
        error = result.get("error", "unknown error")
        description = _first_line(result.get("error_description", ""))
        raise TokenError(f"token refused: {error}: {description}", transient=False)

    async def token(self) -> str:
        async with self._lock:
            if self._current is not None and time.monotonic() < self._valid_until:
                return self._current
            current, self._valid_until = await asyncio.to_thread(self._acquire)
            self._current = current
            return current

    async def renew(self, refused: str) -> str:
        async with self._lock:
            if self._current is not None and self._current != refused:
                return self._current  # another request renewed it meanwhile
            if self._app is not None:
                self._app.remove_tokens_for_client()
            current, self._valid_until = await asyncio.to_thread(self._acquire)
            self._current = current
            return current

    async def close(self) -> None:
        self._app = None
        self._current = None


def _is_microsoft_login_host(url: str) -> bool:
    return (urlsplit(url).hostname or "") in WELL_KNOWN_AUTHORITY_HOSTS


def _first_line(value: object) -> str:
    text = str(value).strip().splitlines()
    return text[0][:200] if text else ""
