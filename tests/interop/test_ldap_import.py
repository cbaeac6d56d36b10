"""Directory import against a real OpenLDAP server carrying AD/Lync-style users.

slapd refuses simple binds without TLS here, and limits the service account to 500 entries per
search, so these tests also show that the import binds over StartTLS/LDAPS and pages
(RFC 2696) through more than 1,000 users.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import ldap3
import pytest
from sip2uc_control.directory import (
    ImportPlan,
    LdapSourceConfig,
    LdapSourceError,
    NumberPolicy,
    PlanAction,
    apply_plan,
    build_plan,
    load_ldap_records,
)
from sip2uc_control.directory.memory import InMemoryUserRepository

SLAPD = Path("/usr/sbin/slapd")
USERS = 1_200

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
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


@dataclasses.dataclass
class Directory:
    server: Any
    data: Any

    def config(self, **overrides: Any) -> LdapSourceConfig:
        values: dict[str, Any] = {
            "url": self.server.ldap_url,
            "base_dn": self.server.base_dn,
            "bind_dn": self.server.service_dn,
            "password": self.server.service_password,
            "ca_file": str(self.server.ca_file),
            "page_size": 250,
            "timeout": 10.0,
            "numbers": NumberPolicy(default_region="DE"),
        }
        values.update(overrides)
        return LdapSourceConfig(**values)

    def admin(self) -> ldap3.Connection:
        tls = ldap3.Tls(ca_certs_file=str(self.server.ca_file), validate=ssl.CERT_REQUIRED)
        server = ldap3.Server("127.0.0.1", port=self.server.ldap_port, tls=tls, get_info=ldap3.NONE)
        connection = ldap3.Connection(
            server, self.server.root_dn, self.server.root_password, raise_exceptions=True
        )
        connection.open()
        connection.start_tls()
        connection.bind()
        return connection


@pytest.fixture(scope="session")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    data = ldif.generate(USERS)
    server = slapd.start_slapd(tmp_path_factory.mktemp("slapd"), data.ldif)
    try:
        yield Directory(server, data)
    finally:
        server.stop()


async def plan_from(
    directory: Directory, repo: InMemoryUserRepository, **config: Any
) -> ImportPlan:
    records = await load_ldap_records(directory.config(**config))
    return build_plan(records, repo.existing_users(), source="corp-ad")


async def imported(directory: Directory) -> InMemoryUserRepository:
    repo = InMemoryUserRepository()
    await apply_plan(await plan_from(directory, repo), repo, lambda: "handset-pw")
    return repo


def expected_first_counts(directory: Directory) -> dict[PlanAction, int]:
    data = directory.data
    return {
        PlanAction.CREATE: len(data.of(Kind.OK, Kind.PHONE_FALLBACK)),
        PlanAction.UPDATE: 0,
        PlanAction.UNCHANGED: 0,
        PlanAction.SKIP: len(
            data.of(Kind.DISABLED_ACCOUNT, Kind.DISABLED_LYNC, Kind.MALFORMED_LINE)
        ),
        PlanAction.CONFLICT: len(data.of(Kind.CONFLICT)),
        PlanAction.MISSING: 0,
    }


async def test_first_import_over_starttls_creates_every_valid_user(directory: Directory) -> None:
    repo = InMemoryUserRepository()
    plan = await plan_from(directory, repo)
    assert plan.counts() == expected_first_counts(directory)
    assert plan.counts()[PlanAction.CREATE] == 1_140

    result = await apply_plan(plan, repo, lambda: "handset-pw")
    assert len(result.created) == 1_140
    assert result.failed == []
    user = next(u for u in repo.users.values() if u.sip_uri == "sip:user00003@example.com")
    assert (user.display_name, user.e164, user.extension, user.upn) == (
        "Müller 3",
        "+49892000003",
        "20003",
        "user00003@corp.example.com",
    )
    fallback = next(u for u in repo.users.values() if u.sip_uri == "sip:user00057@example.com")
    assert (fallback.e164, fallback.extension) == ("+49892000057", "20057")


async def test_second_plan_after_import_is_all_unchanged(directory: Directory) -> None:
    repo = await imported(directory)
    plan = await plan_from(directory, repo)
    counts = plan.counts()
    assert counts[PlanAction.UNCHANGED] == 1_140
    assert (counts[PlanAction.CREATE], counts[PlanAction.UPDATE], counts[PlanAction.MISSING]) == (
        0,
        0,
        0,
    )


async def test_bad_rows_are_reported_by_dn_and_the_rest_imported(directory: Directory) -> None:
    plan = await plan_from(directory, InMemoryUserRepository())
    malformed = {u.dn for u in directory.data.of(Kind.MALFORMED_LINE)}
    reported = {
        item.origin for item in plan.of(PlanAction.SKIP) if item.reason.startswith("number")
    }
    assert reported == malformed
    disabled = {u.dn for u in directory.data.of(Kind.DISABLED_ACCOUNT, Kind.DISABLED_LYNC)}
    skipped_disabled = {
        item.origin
        for item in plan.of(PlanAction.SKIP)
        if item.reason == "account disabled in the directory"
    }
    assert skipped_disabled == disabled


async def test_users_sharing_an_extension_are_conflicts_not_imported(directory: Directory) -> None:
    plan = await plan_from(directory, InMemoryUserRepository())
    first, second = directory.data.of(Kind.CONFLICT)[:2]
    reasons = {item.origin: item.reason for item in plan.of(PlanAction.CONFLICT)}
    assert reasons[first.dn] == f"extension {first.extension} also claimed by {second.dn}"


async def test_changed_phone_number_updates_exactly_one_user(directory: Directory) -> None:
    repo = await imported(directory)
    target = directory.data.of(Kind.OK)[10]
    admin = directory.admin()
    try:
        admin.modify(
            target.dn,
            {
                "msRTCSIP-Line": [
                    (ldap3.MODIFY_REPLACE, [f"tel:+4930123456;ext={target.extension}"])
                ]
            },
        )
        plan = await plan_from(directory, repo)
    finally:
        admin.modify(
            target.dn,
            {
                "msRTCSIP-Line": [
                    (ldap3.MODIFY_REPLACE, [f"tel:{target.e164};ext={target.extension}"])
                ]
            },
        )
        admin.unbind()
    (update,) = plan.of(PlanAction.UPDATE)
    assert update.origin == target.dn
    assert dict(update.changes) == {"e164": (target.e164, "+4930123456")}
    assert plan.counts()[PlanAction.UNCHANGED] == 1_139


async def test_removed_entry_is_reported_missing(directory: Directory) -> None:
    repo = await imported(directory)
    target = directory.data.of(Kind.OK)[20]
    user_id = next(u.id for u in repo.users.values() if u.sip_uri == target.sip_uri)
    admin = directory.admin()
    try:
        admin.delete(target.dn)
        plan = await plan_from(directory, repo)
    finally:
        admin.add(target.dn, attributes=ldif.user_attributes(target))
        admin.unbind()
    (missing,) = plan.of(PlanAction.MISSING)
    assert (missing.user_id, missing.reason) == (user_id, "no longer in the directory")
    assert plan.counts()[PlanAction.UNCHANGED] == 1_139


async def test_ldaps_import_reads_the_same_users(directory: Directory) -> None:
    repo = InMemoryUserRepository()
    plan = await plan_from(directory, repo, url=directory.server.ldaps_url)
    assert plan.counts() == expected_first_counts(directory)


async def test_certificate_from_an_unknown_ca_is_refused(directory: Directory) -> None:
    with pytest.raises(LdapSourceError, match="cannot bind"):
        await plan_from(directory, InMemoryUserRepository(), ca_file=None)


async def test_skipping_verification_connects_for_tests(directory: Directory) -> None:
    plan = await plan_from(directory, InMemoryUserRepository(), ca_file=None, verify=False)
    assert plan.counts()[PlanAction.CREATE] == 1_140


async def test_wrong_password_is_a_source_error(directory: Directory) -> None:
    with pytest.raises(LdapSourceError, match="cannot bind"):
        await plan_from(directory, InMemoryUserRepository(), password="wrong")


async def test_plain_bind_on_loopback_is_refused_by_this_server(directory: Directory) -> None:
    # The library allows plain LDAP to loopback; this slapd demands TLS for simple binds.
    with pytest.raises(LdapSourceError, match="cannot bind"):
        await plan_from(directory, InMemoryUserRepository(), start_tls=False)
