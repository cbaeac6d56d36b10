import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sip2uc_control.directory.ldap_source import (
    DEFAULT_FILTER,
    LdapAttributeMap,
    LdapSourceConfig,
    LdapSourceError,
    map_ldap_entry,
)
from sip2uc_control.directory.model import DirectoryEntry, RowError
from sip2uc_control.directory.numbers import ExtensionFallback, NumberPolicy

GUID = uuid.UUID("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
DN = "CN=Alice,OU=Users,DC=example,DC=com"
CONFIG = LdapSourceConfig(
    url="ldaps://dc.example.com",
    base_dn="DC=example,DC=com",
    numbers=NumberPolicy(default_region="DE"),
)


def ad_user(**overrides: list[bytes]) -> dict[str, list[bytes]]:
    attributes = {
        "objectGUID": [GUID.bytes_le],
        "msRTCSIP-PrimaryUserAddress": [b"sip:Alice@example.com"],
        "msRTCSIP-Line": [b"tel:+4989123456;ext=456"],
        "displayName": ["Alice Müller".encode()],
        "mail": [b"alice@example.com"],
        "userPrincipalName": [b"alice@corp.example.com"],
        "userAccountControl": [b"512"],
    }
    attributes.update(overrides)
    return attributes


def test_ad_user_with_lync_line_maps_to_entry() -> None:
    assert map_ldap_entry(DN, ad_user(), CONFIG) == DirectoryEntry(
        source_id="3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        sip_uri="sip:alice@example.com",
        display_name="Alice Müller",
        e164="+4989123456",
        extension="456",
        email="alice@example.com",
        upn="alice@corp.example.com",
        origin=DN,
    )


def test_binary_object_guid_is_read_little_endian_as_ad_shows_it() -> None:
    entry = map_ldap_entry(DN, ad_user(objectGUID=[bytes(range(16))]), CONFIG)
    assert isinstance(entry, DirectoryEntry)
    assert entry.source_id == "03020100-0504-0706-0809-0a0b0c0d0e0f"


def test_entry_uuid_is_the_fallback_id_for_openldap() -> None:
    attributes = ad_user(entryUUID=[b"6E9C1A4E-1C5B-103F-8A5E-6B9E1F6A2C11"])
    del attributes["objectGUID"]
    entry = map_ldap_entry(DN, attributes, CONFIG)
    assert isinstance(entry, DirectoryEntry)
    assert entry.source_id == "6e9c1a4e-1c5b-103f-8a5e-6b9e1f6a2c11"


def test_attribute_names_match_case_insensitively() -> None:
    attributes = {name.lower(): values for name, values in ad_user().items()}
    assert map_ldap_entry(DN, attributes, CONFIG) == map_ldap_entry(DN, ad_user(), CONFIG)


def test_telephone_number_and_ip_phone_used_without_lync_line() -> None:
    attributes = ad_user(telephoneNumber=[b"089 1234567"], ipPhone=[b"4567"])
    del attributes["msRTCSIP-Line"]
    entry = map_ldap_entry(DN, attributes, CONFIG)
    assert isinstance(entry, DirectoryEntry)
    assert (entry.e164, entry.extension) == ("+49891234567", "4567")


def test_accountdisable_bit_marks_entry_disabled() -> None:
    entry = map_ldap_entry(DN, ad_user(userAccountControl=[b"514"]), CONFIG)
    assert isinstance(entry, DirectoryEntry)
    assert entry.disabled is True


def test_lync_user_enabled_false_marks_entry_disabled() -> None:
    entry = map_ldap_entry(DN, ad_user(**{"msRTCSIP-UserEnabled": [b"FALSE"]}), CONFIG)
    assert isinstance(entry, DirectoryEntry)
    assert entry.disabled is True


def test_lync_user_enabled_false_ignored_when_not_honoured() -> None:
    config = LdapSourceConfig(url="ldaps://dc", base_dn="dc=x", honour_user_enabled=False)
    entry = map_ldap_entry(DN, ad_user(**{"msRTCSIP-UserEnabled": [b"FALSE"]}), config)
    assert isinstance(entry, DirectoryEntry)
    assert entry.disabled is False


def test_malformed_line_is_a_row_error_named_by_dn() -> None:
    error = map_ldap_entry(DN, ad_user(**{"msRTCSIP-Line": [b"tel:+49-CALL-ME"]}), CONFIG)
    assert isinstance(error, RowError)
    assert (error.origin, error.source_id) == (DN, str(GUID))


def test_non_utf8_value_is_a_row_error() -> None:
    error = map_ldap_entry(DN, ad_user(displayName=[b"\xff\xfe"]), CONFIG)
    assert error == RowError(origin=DN, message="displayName is not UTF-8")


def test_non_numeric_account_control_is_a_row_error() -> None:
    error = map_ldap_entry(DN, ad_user(userAccountControl=[b"lots"]), CONFIG)
    assert error == RowError(origin=DN, message="userAccountControl 'lots' is not a number")


def test_remapped_attribute_is_read() -> None:
    config = LdapSourceConfig(
        url="ldaps://dc", base_dn="dc=x", attributes=LdapAttributeMap(display_name="cn")
    )
    entry = map_ldap_entry(DN, ad_user(cn=[b"Alice (CN)"]), config)
    assert isinstance(entry, DirectoryEntry)
    assert entry.display_name == "Alice (CN)"


def test_config_from_mapping_overrides_defaults() -> None:
    config = LdapSourceConfig.from_mapping(
        {
            "url": "ldap://dc.example.com",
            "base_dn": "dc=example,dc=com",
            "bind_dn": "cn=svc,dc=example,dc=com",
            "password": "s3cret",
            "page_size": 200,
            "timeout": 5,
            "attributes": {"extension": "otherTelephone", "ids": ["entryUUID"]},
            "numbers": {"default_region": "DE", "extension_fallback": "last_digits"},
        }
    )
    assert config.search_filter == DEFAULT_FILTER
    assert config.page_size == 200
    assert config.attributes.extension == "otherTelephone"
    assert config.attributes.ids == ("entryUUID",)
    assert config.numbers.extension_fallback is ExtensionFallback.LAST_DIGITS
    assert "s3cret" not in repr(config)


def test_config_with_unknown_key_is_rejected() -> None:
    with pytest.raises(LdapSourceError, match="unknown LdapSourceConfig settings: pagesize"):
        LdapSourceConfig.from_mapping({"url": "ldaps://dc", "base_dn": "dc=x", "pagesize": 5})


def test_config_with_wrong_type_is_rejected() -> None:
    with pytest.raises(LdapSourceError, match="page_size has the wrong type"):
        LdapSourceConfig.from_mapping({"url": "ldaps://dc", "base_dn": "dc=x", "page_size": "5"})


def test_plain_ldap_to_a_remote_host_is_refused() -> None:
    with pytest.raises(LdapSourceError, match="refusing to send a password in clear"):
        LdapSourceConfig(url="ldap://dc.example.com", base_dn="dc=x", start_tls=False)


def test_plain_ldap_allowed_to_loopback_or_when_asked() -> None:
    LdapSourceConfig(url="ldap://127.0.0.1:3389", base_dn="dc=x", start_tls=False)
    LdapSourceConfig(url="ldap://dc.example.com", base_dn="dc=x", start_tls=False, allow_plain=True)


def test_non_ldap_url_is_refused() -> None:
    with pytest.raises(LdapSourceError, match="is not ldap://host"):
        LdapSourceConfig(url="http://dc.example.com", base_dn="dc=x")


_ATTRIBUTE_NAMES = st.sampled_from(
    [*CONFIG.attributes.requested(), "telephoneNumber", "ipPhone", "objectGUID"]
)


@given(st.dictionaries(_ATTRIBUTE_NAMES, st.lists(st.binary(max_size=40), max_size=2)))
def test_any_attribute_values_give_an_entry_or_a_row_error(
    attributes: dict[str, list[bytes]],
) -> None:
    record = map_ldap_entry(DN, attributes, CONFIG)
    assert isinstance(record, DirectoryEntry | RowError)
