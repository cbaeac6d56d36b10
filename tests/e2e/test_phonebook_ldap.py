"""External contacts from a real OpenLDAP server into the address book handsets fetch.

slapd (TLS required for binds) holds a few contacts; the control plane imports them over
StartTLS through ContactService, a sidecar serves them, and a Gigaset-style reverse search by
the caller's number finds the LDAP contact over HTTP. A re-import after the directory changed
deletes what is gone.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import defusedxml.ElementTree as SafeET
import grpc
import ldap3
import pytest
from processes import free_rtp_ports
from sip2uc.v1 import contacts_pb2, contacts_pb2_grpc, directory_pb2, users_pb2, users_pb2_grpc
from sip2uc_control.app import ControlConfig, ControlPlane
from sip2uc_media.sidecar import Sidecar, SidecarConfig

SLAPD = Path("/usr/sbin/slapd")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        not SLAPD.exists() or not Path("/usr/sbin/slapadd").exists(),
        reason="OpenLDAP server not installed (/usr/sbin/slapd, /usr/sbin/slapadd; Debian slapd)",
    ),
]


def _fixtures() -> tuple[ModuleType, ModuleType]:
    """Load tests/interop/ldap (the slapd fixture) as a package under a name no installed package can shadow."""
    name = "sip2uc_ldap_fixtures"
    if name not in sys.modules:
        folder = Path(__file__).parents[1] / "interop" / "ldap"
        spec = importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{name}.slapd"), importlib.import_module(f"{name}.ldif")


slapd, ldif = _fixtures()
CONTACTS_DN = f"ou=contacts,{ldif.BASE_DN}"


def contacts_ldif() -> str:
    blocks = [
        ldif.generate(0).ldif,
        ldif._entry(CONTACTS_DN, [("objectClass", "organizationalUnit"), ("ou", "contacts")]),
    ]
    for cn, display, pairs in (
        ("Taxi Central", "Taxi Central", [("telephoneNumber", "089 5555 0"), ("o", "Cabs & Co")]),
        (
            "Front Desk HH",
            "Front Desk <HH>",
            [("telephoneNumber", "+49 40 123456"), ("mobile", "+49 151 12345678")],
        ),
        ("Broken", "Broken", [("telephoneNumber", "call me")]),
    ):
        blocks.append(
            ldif._entry(
                f"cn={cn},{CONTACTS_DN}",
                [
                    ("objectClass", "inetOrgPerson"),
                    ("cn", cn),
                    ("sn", cn),
                    ("displayName", display),
                    *pairs,
                ],
            )
        )
    return "\n".join(blocks)


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = slapd.start_slapd(tmp_path_factory.mktemp("slapd-contacts"), contacts_ldif())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[grpc.aio.Channel, Sidecar]]:
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
        )
    )
    try:
        await sidecar.start()
        assert sidecar.control is not None
        await asyncio.wait_for(sidecar.control.wait_up(), 10)
        async with grpc.aio.insecure_channel(control.address) as channel:
            yield channel, sidecar
    finally:
        await sidecar.stop()
        await control.stop(0.5)


def source(server: Any) -> directory_pb2.LdapSource:
    return directory_pb2.LdapSource(
        url=server.ldap_url,
        bind_dn=server.service_dn,
        bind_password=server.service_password,
        base_dn=CONTACTS_DN,
        ca_pem=Path(server.ca_file).read_text(),
    )


async def import_ldap(
    channel: grpc.aio.Channel, server: Any
) -> contacts_pb2.ImportContactsResponse:
    return await contacts_pb2_grpc.ContactServiceStub(channel).ImportContacts(
        contacts_pb2.ImportContactsRequest(ldap=source(server), default_region="DE")
    )


async def reverse_search(sidecar: Sidecar, number: str) -> SafeET.Element:
    assert sidecar.phonebook_server is not None
    host, port = sidecar.phonebook_server.addresses[0]
    url = f"http://{host}:{port}/phonebook/gigaset?command=get_list&type=pb&hm={number}"
    auth = aiohttp.DigestAuthMiddleware("1001", "handset-pw-1001")
    async with (
        aiohttp.ClientSession(middlewares=(auth,)) as session,
        session.get(url) as response,
    ):
        assert response.status == 200
        return SafeET.fromstring(await response.read())


async def test_ldap_contacts_reach_the_handsets_and_follow_the_directory(
    directory: Any, site: tuple[grpc.aio.Channel, Sidecar]
) -> None:
    channel, sidecar = site
    await users_pb2_grpc.UserServiceStub(channel).CreateUser(
        users_pb2.CreateUserRequest(
            user=users_pb2.User(
                display_name="Alice",
                extension="1001",
                devices=[
                    users_pb2.Device(
                        registering=users_pb2.RegisteringDevice(
                            digest_username="1001", password="handset-pw-1001"
                        )
                    )
                ],
            )
        )
    )
    first = await import_ldap(channel, directory)
    assert (first.created, first.deleted) == (2, 0)
    assert [(s.source_ref, s.reason.split(":")[0]) for s in first.skipped] == [
        (f"cn=Broken,{CONTACTS_DN}", "phone")
    ]

    async def served() -> bool:
        book = sidecar.phonebook
        return book is not None and len(book.entries) == 3

    for _ in range(200):
        if await served():
            break
        await asyncio.sleep(0.05)
    # The caller presents the number nationally; the contact holds it in E.164.
    found = await reverse_search(sidecar, "040123456")
    assert found.get("total") == "1"
    assert found.findtext("entry/ln") == "Front Desk <HH>"
    assert found.findtext("entry/mb") == "+4915112345678"

    # The directory loses an entry; the next import deletes that contact, keeps the other.
    connection = ldap3.Connection(
        ldap3.Server("127.0.0.1", port=directory.ldap_port),
        user=directory.root_dn,
        password=directory.root_password,
    )
    connection.open()
    connection.start_tls()
    connection.bind()
    assert connection.delete(f"cn=Front Desk HH,{CONTACTS_DN}")
    connection.unbind()
    second = await import_ldap(channel, directory)
    assert (second.created, second.deleted, second.unchanged) == (0, 1, 1)
    listed = await contacts_pb2_grpc.ContactServiceStub(channel).ListContacts(
        contacts_pb2.ListContactsRequest()
    )
    assert [(c.display_name, c.phone, c.company, c.source) for c in listed.contacts] == [
        ("Taxi Central", "+498955550", "Cabs & Co", f"ldap:{CONTACTS_DN}")
    ]
    for _ in range(200):
        if (book := sidecar.phonebook) is not None and len(book.entries) == 2:
            break
        await asyncio.sleep(0.05)
    gone = await reverse_search(sidecar, "040123456")
    assert (gone.get("total"), gone.get("notfound")) == ("0", "hm")
