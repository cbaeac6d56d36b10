import pytest
from hypothesis import given
from hypothesis import strategies as st
from sip2uc_control.directory.model import DirectoryEntry, RowError
from sip2uc_control.directory.numbers import NumberPolicy
from sip2uc_control.directory.records import (
    RawRecord,
    SipAddressError,
    normalise_sip_uri,
    to_entry,
)

GERMANY = NumberPolicy(default_region="DE")


def test_sip_prefix_is_kept_and_address_folded_to_lower_case() -> None:
    assert normalise_sip_uri("sip:Alice.Smith@Example.COM") == "sip:alice.smith@example.com"


def test_upper_case_scheme_is_accepted() -> None:
    assert normalise_sip_uri("SIP:bob@example.com") == "sip:bob@example.com"


def test_bare_address_gets_sip_prefix() -> None:
    assert normalise_sip_uri(" bob@example.com ") == "sip:bob@example.com"


@pytest.mark.parametrize(
    "raw",
    ["", "bob", "@example.com", "bob@", "tel:+4989123456", "sip:bob@exa mple.com", "a@b@c"],
)
def test_unusable_sip_addresses_are_rejected(raw: str) -> None:
    with pytest.raises(SipAddressError):
        normalise_sip_uri(raw)


@given(st.text(max_size=50))
def test_any_text_either_normalises_or_raises_sip_address_error(text: str) -> None:
    try:
        uri = normalise_sip_uri(text)
    except SipAddressError:
        return
    assert uri.startswith("sip:") and uri == uri.lower()


def test_full_record_becomes_entry() -> None:
    record = RawRecord(
        origin="row 2",
        source_id="guid-1",
        sip_address="sip:Alice@Example.com",
        display_name=" Alice Smith ",
        line="tel:+4989123456;ext=456",
        phone="+49 89 999999",
        extension="777",
        email="alice@example.com",
        upn="alice@corp.example.com",
    )
    assert to_entry(record, GERMANY) == DirectoryEntry(
        source_id="guid-1",
        sip_uri="sip:alice@example.com",
        display_name="Alice Smith",
        e164="+4989123456",
        extension="456",
        email="alice@example.com",
        upn="alice@corp.example.com",
        origin="row 2",
    )


def test_phone_is_the_fallback_when_there_is_no_line() -> None:
    record = RawRecord(
        origin="x", source_id="g", sip_address="b@example.com", phone="089 1234567", extension="12"
    )
    entry = to_entry(record, GERMANY)
    assert isinstance(entry, DirectoryEntry)
    assert (entry.e164, entry.extension) == ("+49891234567", "12")


def test_display_name_defaults_to_sip_user_part() -> None:
    entry = to_entry(RawRecord(origin="x", source_id="g", sip_address="bob@example.com"), GERMANY)
    assert isinstance(entry, DirectoryEntry)
    assert entry.display_name == "bob"


def test_bad_number_is_a_row_error_keeping_ids_for_matching() -> None:
    record = RawRecord(
        origin="row 9", source_id="g9", sip_address="carol@example.com", line="tel:+49-CALL-ME"
    )
    error = to_entry(record, GERMANY)
    assert isinstance(error, RowError)
    assert (error.origin, error.source_id, error.sip_uri) == (
        "row 9",
        "g9",
        "sip:carol@example.com",
    )
    assert error.message.startswith("number: ")


def test_missing_source_id_is_a_row_error() -> None:
    error = to_entry(RawRecord(origin="r", sip_address="d@example.com"), GERMANY)
    assert error == RowError(
        origin="r", message="no stable id (source_id)", sip_uri="sip:d@example.com"
    )


def test_disabled_account_with_bad_number_is_still_an_entry() -> None:
    record = RawRecord(
        origin="r", source_id="g", sip_address="e@example.com", line="junk", disabled=True
    )
    entry = to_entry(record, GERMANY)
    assert isinstance(entry, DirectoryEntry)
    assert (entry.disabled, entry.e164) == (True, None)
