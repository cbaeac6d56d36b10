"""The Teams connector's identities from a directory: UPN and Entra object id."""

from __future__ import annotations

import io
import uuid

from sip2uc_control.directory.csv_source import read_csv
from sip2uc_control.directory.ldap_source import LdapSourceConfig, map_ldap_entry
from sip2uc_control.directory.model import DirectoryEntry
from sip2uc_control.directory.numbers import NumberPolicy
from sip2uc_control.directory.records import normalise_entra_object_id

OBJECT_ID = "2b7b4c1e-8f2d-4e57-9c1a-3f5d6e7a8b9c"
CONFIG = LdapSourceConfig(
    url="ldaps://dc.example.com",
    base_dn="DC=example,DC=com",
    numbers=NumberPolicy(default_region="DE"),
)


def test_entra_connect_writeback_gives_the_object_id() -> None:
    attributes = {
        "objectGUID": [uuid.uuid4().bytes_le],
        "msRTCSIP-PrimaryUserAddress": [b"sip:alice@example.com"],
        "userPrincipalName": [b"alice@example.com"],
        "msDS-ExternalDirectoryObjectId": [f"User_{OBJECT_ID.upper()}".encode()],
    }
    entry = map_ldap_entry("CN=Alice,DC=example,DC=com", attributes, CONFIG)
    assert isinstance(entry, DirectoryEntry)
    assert (entry.entra_object_id, entry.upn) == (OBJECT_ID, "alice@example.com")


def test_what_is_not_a_guid_is_no_object_id() -> None:
    assert normalise_entra_object_id("Group_xyz") is None
    assert normalise_entra_object_id("  ") is None
    assert normalise_entra_object_id(OBJECT_ID) == OBJECT_ID


def test_csv_columns_for_the_teams_identities() -> None:
    text = f"SipAddress,UserPrincipalName,EntraObjectId\nsip:bob@example.com,bob@example.com,{OBJECT_ID}\n"
    [entry] = list(read_csv(io.StringIO(text), NumberPolicy(default_region="DE")))
    assert isinstance(entry, DirectoryEntry)
    assert (entry.upn, entry.entra_object_id) == ("bob@example.com", OBJECT_ID)
