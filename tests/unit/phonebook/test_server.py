"""The aiohttp adapter's decisions, with the sidecar around it replaced by plain functions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp
import defusedxml.ElementTree as SafeET
import pytest
from sip2uc_core.sip.digest import Credentials, NonceCountTracker, NonceIssuer
from sip2uc_media.phonebook.http_auth import HttpDigest
from sip2uc_media.phonebook.model import Entry, EntryKind, Phonebook
from sip2uc_media.phonebook.server import ControlUnreachable, PhonebookServer, ServerHooks

TOKEN = "t0k3n-for-the-site"
BOOK = Phonebook.of(
    1, [Entry(key="u1", kind=EntryKind.USER, display_name="Alice Smith", extension="1001")]
)


class Sidecar:
    """What the server asks of the sidecar, recorded."""

    def __init__(self) -> None:
        self.book: Phonebook | None = BOOK
        self.reachable = True
        self.banned: set[str] = set()
        self.failures: list[tuple[str, str]] = []
        self.refusals: list[tuple[str, str]] = []
        self.served: list[tuple[str, int]] = []

    async def verify(self, credentials: Credentials, method: str, source: str) -> bool:
        if not self.reachable:
            raise ControlUnreachable("link down")
        return credentials.username == "1001"


@pytest.fixture
async def running() -> AsyncIterator[tuple[Sidecar, str]]:
    sidecar = Sidecar()
    server = PhonebookServer(
        ServerHooks(
            book=lambda: sidecar.book,
            digest=HttpDigest(NonceIssuer(b"s" * 32, 300), NonceCountTracker(100), realm="r"),
            verify=sidecar.verify,
            clock=lambda: 100.0,
            token=TOKEN,
            admits=lambda source: source not in sidecar.banned,
            failed=lambda source, user: sidecar.failures.append((source, user)),
            refused=lambda source, reason: sidecar.refusals.append((source, reason)),
            served=lambda fmt, status: sidecar.served.append((fmt, status)),
        )
    )
    host, port = await server.start("127.0.0.1", 0)
    try:
        yield sidecar, f"http://{host}:{port}"
    finally:
        await server.stop()


async def get(url: str) -> tuple[int, bytes, Mapping[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read(), response.headers


async def test_every_answer_is_counted_with_its_format(running: tuple[Sidecar, str]) -> None:
    sidecar, base = running
    await get(f"{base}/phonebook/snom.xml?token={TOKEN}")
    await get(f"{base}/phonebook/snom.xml")
    await get(f"{base}/nothing")
    assert sidecar.served == [("snom", 200), ("snom", 401), ("", 404)]


async def test_a_wrong_token_counts_towards_the_ban_and_a_banned_source_is_refused(
    running: tuple[Sidecar, str],
) -> None:
    sidecar, base = running
    status, _, headers = await get(f"{base}/phonebook/snom.xml?token=nope")
    assert status == 401 and "WWW-Authenticate" in headers
    assert sidecar.failures == [("127.0.0.1", "(site token)")]
    sidecar.banned.add("127.0.0.1")
    status, body, _ = await get(f"{base}/phonebook/snom.xml?token={TOKEN}")
    assert (status, b"Alice" in body) == (403, False)


async def test_digest_waits_for_the_control_plane_and_says_when_it_cannot(
    running: tuple[Sidecar, str],
) -> None:
    sidecar, base = running
    sidecar.reachable = False
    auth = aiohttp.DigestAuthMiddleware("1001", "pw")
    async with (
        aiohttp.ClientSession(middlewares=(auth,)) as session,
        session.get(f"{base}/phonebook/yealink.xml") as response,
    ):
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
    # The token does not need the control plane: the last book is still served.
    status, body, _ = await get(f"{base}/phonebook/yealink.xml?token={TOKEN}")
    assert status == 200 and b"<Name>Alice Smith</Name>" in body


async def test_before_the_first_snapshot_the_book_is_unavailable(
    running: tuple[Sidecar, str],
) -> None:
    sidecar, base = running
    sidecar.book = None
    status, _, headers = await get(f"{base}/phonebook/yealink.xml?token={TOKEN}")
    assert (status, headers.get("Retry-After")) == (503, "5")
    status, body, _ = await get(f"{base}/phonebook/gigaset?command=get_list&type=pb&token={TOKEN}")
    # Gigaset bases read errors in the protocol's own document: 6 is "service not available".
    assert status == 200
    assert SafeET.fromstring(body).findtext("errorid") == "6"


async def test_a_made_up_nonce_is_reported_but_not_counted_towards_a_ban(
    running: tuple[Sidecar, str],
) -> None:
    sidecar, base = running
    made_up = (
        'Digest username="1001", realm="r", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAA", '
        'uri="/phonebook/snom.xml", response="00", qop=auth, nc=00000001, cnonce="c"'
    )
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/phonebook/snom.xml", headers={"Authorization": made_up}) as response,
    ):
        assert response.status == 401
    assert (sidecar.failures, sidecar.refusals) == ([], [("127.0.0.1", "invalid_nonce")])
