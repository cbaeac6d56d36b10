"""DirectoryService.ImportUsers against a real OpenLDAP server, through the control plane's API.

The same AD/Lync-style directory as ``test_ldap_import.py`` (slapd demanding TLS for binds), read
by a running control plane over StartTLS with the CA handed over in the request; the outcome is
checked as an API client sees it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from sip2uc.v1 import directory_pb2, directory_pb2_grpc, users_pb2, users_pb2_grpc
from sip2uc_control.app import ControlConfig, ControlPlane

SLAPD = Path("/usr/sbin/slapd")
USERS = 300

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        not SLAPD.exists() or not Path("/usr/sbin/slapadd").exists(),
        reason="OpenLDAP server not installed (/usr/sbin/slapd, /usr/sbin/slapadd; Debian slapd)",
    ),
]


def _fixtures() -> tuple[ModuleType, ModuleType]:
    """Load tests/interop/ldap as a package under a name no installed package can shadow."""
    name = "sip2uc_ldap_fixtures"
    if name not in sys.modules:
        folder = Path(__file__).parent / "ldap"
        spec = importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{name}.slapd"), importlib.import_module(f"{name}.ldif")


slapd, ldif = _fixtures()
Kind: Any = ldif.Kind


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    data = ldif.generate(USERS)
    server = slapd.start_slapd(tmp_path_factory.mktemp("slapd-api"), data.ldif)
    try:
        yield server, data
    finally:
        server.stop()


@pytest.fixture
async def channel(tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    plane = ControlPlane(
        ControlConfig(data_dir=tmp_path, grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await plane.start()
    try:
        async with grpc.aio.insecure_channel(plane.address) as ch:
            yield ch
    finally:
        await plane.stop(0.5)


def source(server: Any, **overrides: Any) -> directory_pb2.LdapSource:
    values: dict[str, Any] = {
        "url": server.ldap_url,
        "bind_dn": server.service_dn,
        "bind_password": server.service_password,
        "base_dn": server.base_dn,
        "ca_pem": Path(server.ca_file).read_text(),
        "page_size": 100,
    }
    values.update(overrides)
    return directory_pb2.LdapSource(**values)


async def run_import(
    channel: grpc.aio.Channel, ldap: directory_pb2.LdapSource
) -> list[directory_pb2.ImportUsersResponse]:
    stub = directory_pb2_grpc.DirectoryServiceStub(channel)
    request = directory_pb2.ImportUsersRequest(ldap=ldap, default_region="DE")
    return [event async for event in stub.ImportUsers(request)]


def rows(events: list[directory_pb2.ImportUsersResponse]) -> list[directory_pb2.ImportRowOutcome]:
    return [e.row for e in events if e.WhichOneof("event") == "row"]


def counts(events: list[directory_pb2.ImportUsersResponse]) -> dict[str, int]:
    return dict(Counter(directory_pb2.ImportAction.Name(r.action) for r in rows(events)))


async def test_import_over_starttls_creates_every_valid_user(
    directory: tuple[Any, Any], channel: grpc.aio.Channel
) -> None:
    server, data = directory
    events = await run_import(channel, source(server))

    created = len(data.of(Kind.OK, Kind.PHONE_FALLBACK))
    assert counts(events) == {
        "IMPORT_ACTION_CREATE": created,
        "IMPORT_ACTION_SKIP": len(
            data.of(Kind.DISABLED_ACCOUNT, Kind.DISABLED_LYNC, Kind.MALFORMED_LINE)
        ),
        "IMPORT_ACTION_CONFLICT": len(data.of(Kind.CONFLICT)),
    }
    assert created == 284  # 300 less 9 skipped, 3 without SIP address, 4 in conflict
    assert events[-1].summary.failed == 0
    credentials = [e.credential for e in events if e.WhichOneof("event") == "credential"]
    assert len(credentials) == created
    target = data.users[3]
    (row,) = [r for r in rows(events) if r.source_ref == target.dn]
    assert (row.row, row.sip_uri, row.applied) == (4, target.sip_uri, True)
    users = users_pb2_grpc.UserServiceStub(channel)
    user = (await users.GetUser(users_pb2.GetUserRequest(name=row.user))).user
    assert (user.display_name, user.e164, user.extension) == ("Müller 3", target.e164, "20003")
    assert user.devices[0].registering.digest_username == "20003"


async def test_second_import_over_the_api_is_all_unchanged(
    directory: tuple[Any, Any], channel: grpc.aio.Channel
) -> None:
    server, data = directory
    await run_import(channel, source(server))

    events = await run_import(channel, source(server, url=server.ldaps_url))

    assert counts(events)["IMPORT_ACTION_UNCHANGED"] == len(data.of(Kind.OK, Kind.PHONE_FALLBACK))
    assert "IMPORT_ACTION_CREATE" not in counts(events)
    assert "IMPORT_ACTION_UPDATE" not in counts(events)


async def test_server_certificate_from_an_unknown_ca_is_failed_precondition(
    directory: tuple[Any, Any], channel: grpc.aio.Channel
) -> None:
    server, _ = directory
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await run_import(channel, source(server, ca_pem=""))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cannot bind" in (info.value.details() or "")


async def test_wrong_bind_password_is_failed_precondition_without_the_password(
    directory: tuple[Any, Any], channel: grpc.aio.Channel
) -> None:
    server, _ = directory
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await run_import(channel, source(server, bind_password="not-the-password"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not-the-password" not in (info.value.details() or "")
