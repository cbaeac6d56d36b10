"""The shared address book fetched over HTTP(S) from a running sidecar, as handsets fetch it.

A control plane and a sidecar run in this process on loopback; the requests come from real
HTTP clients (aiohttp's client with its own RFC 7616 digest implementation, and curl), so the
digest exchange, TLS and the formats are exercised end to end.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp
import defusedxml.ElementTree as SafeET
import grpc
import pytest
from processes import free_rtp_ports
from sip2uc.v1 import contacts_pb2, contacts_pb2_grpc, directory_pb2, users_pb2, users_pb2_grpc
from sip2uc_control.app import ControlConfig, ControlPlane
from sip2uc_media.sidecar import Sidecar, SidecarConfig
from sip2uc_media.transport.tls import CERT_FILE

T = TypeVar("T")
PASSWORD = "handset-secret-1001"
TOKEN = "site-token-0123456789abcdef"
CURL = shutil.which("curl")


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while (value := await probe()) is None:
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value


@dataclass
class Site:
    control: ControlPlane
    channel: grpc.aio.Channel
    sidecar: Sidecar
    http: str
    https: str
    ca: Path

    async def add_user(self, ext: str, name: str, e164: str = "") -> None:
        await users_pb2_grpc.UserServiceStub(self.channel).CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(
                    display_name=name,
                    extension=ext,
                    e164=e164,
                    devices=[
                        users_pb2.Device(
                            registering=users_pb2.RegisteringDevice(
                                digest_username=ext, password=PASSWORD
                            )
                        )
                    ],
                )
            )
        )

    async def book_holds(self, count: int) -> None:
        async def probe() -> bool | None:
            book = self.sidecar.phonebook
            return True if book is not None and len(book.entries) == count else None

        await eventually(probe, f"the sidecar's book to hold {count} entries")


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    token_file = tmp_path / "phonebook-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    control = ControlPlane(
        ControlConfig(data_dir=tmp_path / "control", grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await control.start()
    sidecar = Sidecar(
        SidecarConfig(
            control=control.address,
            token=control.sidecar_credential("vlan10"),
            name="vlan10",
            sip_listen="127.0.0.1:0",
            data_dir=tmp_path / "sidecar",
            rtp_ports=free_rtp_ports(),
            phonebook_listen="127.0.0.1:0",
            phonebook_tls_listen="127.0.0.1:0",
            phonebook_token_file=token_file,
        )
    )
    try:
        await sidecar.start()
        assert sidecar.control is not None and sidecar.phonebook_server is not None
        await asyncio.wait_for(sidecar.control.wait_up(), 10)
        (http_host, http_port), (_tls_host, tls_port) = sidecar.phonebook_server.addresses
        async with grpc.aio.insecure_channel(control.address) as channel:
            yield Site(
                control,
                channel,
                sidecar,
                f"http://{http_host}:{http_port}",
                f"https://localhost:{tls_port}",
                tmp_path / "sidecar" / CERT_FILE,
            )
    finally:
        await sidecar.stop()
        await control.stop(0.5)


def digest(user: str = "1001", password: str = PASSWORD) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(middlewares=(aiohttp.DigestAuthMiddleware(user, password),))


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with session.get(url) as response:
        return response.status, await response.read()


async def test_a_handset_with_its_sip_credentials_reads_every_format(site: Site) -> None:
    await site.add_user("1001", "Alice Smith", "+4989123451001")
    await site.add_user("1002", "Bob Jones")
    await site.book_holds(2)
    async with digest() as session:
        status, body = await fetch(session, f"{site.http}/phonebook/yealink.xml")
        assert status == 200
        root = SafeET.fromstring(body)
        assert root.tag == "YealinkIPPhoneDirectory"
        assert [e.findtext("Name") for e in root] == ["Alice Smith", "Bob Jones"]
        status, body = await fetch(session, f"{site.http}/phonebook/snom.xml?q=bob")
        assert status == 200
        root = SafeET.fromstring(body)
        assert [e.findtext("Telephone") for e in root.findall("DirectoryEntry")] == ["1002"]
        status, body = await fetch(session, f"{site.http}/phonebook/grandstream/phonebook.xml")
        assert SafeET.fromstring(body).tag == "AddressBook"
        gigaset = "/phonebook/gigaset?command=get_list&type=pb&ln=Smi*&first=1&count=10"
        status, body = await fetch(session, site.http + gigaset)
        root = SafeET.fromstring(body)
        assert (root.tag, root.get("total"), root.findtext("entry/hm")) == ("list", "1", "1001")
        status, body = await fetch(session, f"{site.http}/phonebook/contacts.vcf")
        assert body.count(b"BEGIN:VCARD\r\n") == 2
        status, body = await fetch(session, f"{site.http}/phonebook/contacts.csv")
        assert body.splitlines()[1] == b"Alice Smith,1001,+4989123451001,,,,"


async def test_cisco_pages_link_to_the_next_page(site: Site) -> None:
    for n in range(40):
        await site.add_user(f"{2000 + n}", f"User {n:02d}")
    await site.book_holds(40)
    async with digest("2000") as session:
        status, body = await fetch(session, f"{site.http}/phonebook/cisco.xml")
        root = SafeET.fromstring(body)
        assert (status, len(root.findall("DirectoryEntry"))) == (200, 32)
        next_url = root.findtext("SoftKeyItem/URL")
        assert next_url == f"{site.http}/phonebook/cisco.xml?page=2"
        status, body = await fetch(session, next_url)
        root = SafeET.fromstring(body)
        names = [e.findtext("Name") for e in root.findall("DirectoryEntry")]
        assert names == [f"User {n:02d}" for n in range(32, 40)]
        assert root.find("SoftKeyItem") is None


async def test_wrong_password_and_unknown_user_look_alike(site: Site) -> None:
    await site.add_user("1001", "Alice Smith")
    await site.book_holds(1)
    answers = []
    for user, password in (("1001", "wrong"), ("9999", PASSWORD)):
        async with (
            digest(user, password) as session,
            session.get(f"{site.http}/phonebook/snom.xml") as response,
        ):
            challenges = response.headers.getall("WWW-Authenticate")
            answers.append(
                (response.status, [c.split("nonce=")[0] for c in challenges], await response.read())
            )
    # Same status, same challenges (but for the nonce), same body.
    assert answers[0] == answers[1]
    assert answers[0][0] == 401
    async with aiohttp.ClientSession() as anonymous:
        status, _ = await fetch(anonymous, f"{site.http}/phonebook/snom.xml")
        assert status == 401


async def test_the_site_token_reads_without_digest_and_a_wrong_one_does_not(site: Site) -> None:
    await site.add_user("1001", "Alice Smith")
    await site.book_holds(1)
    async with aiohttp.ClientSession() as session:
        status, body = await fetch(session, f"{site.http}/phonebook/yealink.xml?token={TOKEN}")
        assert status == 200 and b"Alice Smith" in body
        async with session.get(
            f"{site.http}/phonebook/yealink.xml", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as response:
            assert response.status == 200
        status, body = await fetch(session, f"{site.http}/phonebook/yealink.xml?token=guess")
        assert status == 401 and b"Alice" not in body


async def test_https_uses_the_sidecars_certificate(site: Site) -> None:
    await site.add_user("1001", "Alice Smith")
    await site.book_holds(1)
    context = ssl.create_default_context(cafile=str(site.ca))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context),
        middlewares=(aiohttp.DigestAuthMiddleware("1001", PASSWORD),),
    ) as session:
        status, body = await fetch(session, f"{site.https}/phonebook/yealink.xml")
        assert status == 200 and b"<Name>Alice Smith</Name>" in body


async def test_hostile_contact_names_are_escaped_and_cut(site: Site) -> None:
    await site.add_user("1001", "Alice Smith")
    contacts = contacts_pb2_grpc.ContactServiceStub(site.channel)
    long_name = "Wholesale & Retail <Depot> " + "X" * 100
    csv = f'display_name,phone,source_id\n"{long_name}",+4930123456,d1\n"A&B\x01\x1b[31m",+4930654321,d2\n'
    result = await contacts.ImportContacts(
        contacts_pb2.ImportContactsRequest(
            csv=directory_pb2.CsvSource(content=csv.encode(), filename="c.csv")
        )
    )
    assert (result.created, list(result.skipped)) == (2, [])
    await site.book_holds(3)
    async with digest() as session:
        for path, element, limit in (
            ("/phonebook/yealink.xml", "Name", 32),
            ("/phonebook/snom.xml", "Name", 32),
            ("/phonebook/grandstream/phonebook.xml", "LastName", 32),
        ):
            status, body = await fetch(session, site.http + path)
            assert status == 200
            assert b"<Depot>" not in body and b"\x1b" not in body and b"\x01" not in body
            names = [e.text or "" for e in SafeET.fromstring(body).iter(element)]
            assert "Wholesale & Retail <Depot> XXXXX" in names
            assert "A&B [31m" in names
            assert all(len(n) <= limit for n in names)


async def test_bad_requests_are_refused_and_other_paths_are_not_found(site: Site) -> None:
    async with aiohttp.ClientSession() as anonymous:
        if True:
            status, _ = await fetch(anonymous, f"{site.http}/admin")
            assert status == 404
            status, _ = await fetch(anonymous, f"{site.http}/phonebook/cisco.xml?page=0")
            assert status == 400
            status, body = await fetch(
                anonymous, f"{site.http}/phonebook/gigaset?command=drop_tables&type=pb"
            )
            assert SafeET.fromstring(body).findtext("errorid") == "2"
            async with anonymous.post(f"{site.http}/phonebook/yealink.xml", data=b"x") as response:
                assert response.status == 405


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
async def test_curl_with_digest_reads_the_book(site: Site) -> None:
    await site.add_user("1001", "Alice Smith")
    await site.book_holds(1)
    done = await asyncio.to_thread(
        subprocess.run,
        [CURL, "-sS", "--digest", "-u", f"1001:{PASSWORD}", f"{site.http}/phonebook/yealink.xml"],
        capture_output=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert b"<Name>Alice Smith</Name>" in done.stdout


@pytest.mark.slow
async def test_the_sidecar_watches_again_after_the_control_plane_restarts(tmp_path: Path) -> None:
    """The book the sidecar serves follows the control plane across a restart of the latter:
    the old book stays served meanwhile, the new one arrives on the new watch."""
    first = ControlPlane(
        ControlConfig(data_dir=tmp_path / "control", grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await first.start()
    address = first.address
    sidecar = Sidecar(
        SidecarConfig(
            # On loopback a sidecar whose name is not enrolled connects without a credential,
            # which lets it reconnect to the restarted control plane.
            control=address,
            name="vlan10",
            sip_listen="127.0.0.1:0",
            data_dir=tmp_path / "sidecar",
            rtp_ports=free_rtp_ports(),
            phonebook_listen="127.0.0.1:0",
        )
    )
    second: ControlPlane | None = None
    try:
        await sidecar.start()
        async with grpc.aio.insecure_channel(address) as channel:
            site = Site(first, channel, sidecar, "", "", tmp_path)
            await site.add_user("1001", "Alice Smith")
            await site.book_holds(1)
        await first.stop(0.5)
        assert sidecar.phonebook is not None and len(sidecar.phonebook.entries) == 1
        second = ControlPlane(
            ControlConfig(data_dir=tmp_path / "control", grpc_listen=address, metrics_listen=None)
        )
        await second.start()
        async with grpc.aio.insecure_channel(address) as channel:
            site = Site(second, channel, sidecar, "", "", tmp_path)
            await site.add_user("1002", "Bob Jones")
            await site.book_holds(2)
    finally:
        await sidecar.stop()
        if second is not None:
            await second.stop(0.5)
