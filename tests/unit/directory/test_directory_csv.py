import io
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sip2uc_control.directory.csv_source import CsvSourceError, load_csv, read_csv
from sip2uc_control.directory.model import DirectoryEntry, RowError, SourceRecord
from sip2uc_control.directory.numbers import NumberPolicy

GERMANY = NumberPolicy(default_region="DE")


def read(text: str, **options: object) -> list[SourceRecord]:
    return list(read_csv(io.StringIO(text), GERMANY, **options))  # type: ignore[arg-type]


def test_documented_columns_are_read() -> None:
    records = read(
        "sip_uri,display_name,extension,e164,email,source_id,disabled\n"
        "alice@example.com,Alice,456,089 123456,alice@example.com,emp-1,false\n"
    )
    assert records == [
        DirectoryEntry(
            source_id="emp-1",
            sip_uri="sip:alice@example.com",
            display_name="Alice",
            e164="+4989123456",
            extension="456",
            email="alice@example.com",
            origin="row 2",
        )
    ]


def test_teams_online_user_export_is_read_as_is() -> None:
    text = (
        "#TYPE Deserialized.Microsoft.Rtc.Management.ADConnect.Schema.OCSADUser\n"
        '"Identity","DisplayName","SipAddress","LineURI","UserPrincipalName",'
        '"EnterpriseVoiceEnabled","AccountEnabled"\n'
        '"2a7f5b44-34a7-4c1e-9a3e-0f2b1c9d8e77","Bob Jones","sip:Bob@contoso.com",'
        '"tel:+14255550100;ext=100","bob@contoso.com","True","True"\n'
        '"5d0c7e1a-8e2b-4f4e-b1b1-3b7e9a1c2d3f","Eve Off","sip:eve@contoso.com",'
        '"tel:+14255550101","eve@contoso.com","True","False"\n'
    )
    records = read(text)
    assert records == [
        DirectoryEntry(
            source_id="2a7f5b44-34a7-4c1e-9a3e-0f2b1c9d8e77",
            sip_uri="sip:bob@contoso.com",
            display_name="Bob Jones",
            e164="+14255550100",
            extension="100",
            upn="bob@contoso.com",
            origin="row 3",
        ),
        DirectoryEntry(
            source_id="5d0c7e1a-8e2b-4f4e-b1b1-3b7e9a1c2d3f",
            sip_uri="sip:eve@contoso.com",
            display_name="Eve Off",
            e164="+14255550101",
            upn="eve@contoso.com",
            disabled=True,
            origin="row 4",
        ),
    ]


def test_skype_for_business_identity_dn_yields_the_guid() -> None:
    text = (
        "Identity,SipAddress,DisplayName,LineURI,Enabled\n"
        '"CN={2A7F5B44-34A7-4C1E-9A3E-0F2B1C9D8E77},OU=Users,DC=contoso,DC=com",'
        "sip:carol@contoso.com,Carol,tel:+14255550102,True\n"
    )
    (entry,) = read(text)
    assert isinstance(entry, DirectoryEntry)
    assert entry.source_id == "2a7f5b44-34a7-4c1e-9a3e-0f2b1c9d8e77"


def test_guid_column_wins_over_identity() -> None:
    text = "Identity,Guid,SipAddress\nsomething,2a7f5b44-34a7-4c1e-9a3e-0f2b1c9d8e77,a@x.com\n"
    (entry,) = read(text)
    assert isinstance(entry, DirectoryEntry)
    assert entry.source_id == "2a7f5b44-34a7-4c1e-9a3e-0f2b1c9d8e77"


def test_without_id_column_the_sip_uri_is_the_source_id() -> None:
    (entry,) = read("SipAddress\nsip:Dan@x.com\n")
    assert isinstance(entry, DirectoryEntry)
    assert entry.source_id == "sip:dan@x.com"


def test_semicolon_separated_file_is_detected() -> None:
    (entry,) = read("sip_uri;display_name\nalice@x.com;Alice, the first\n")
    assert isinstance(entry, DirectoryEntry)
    assert entry.display_name == "Alice, the first"


def test_custom_header_alias_is_used() -> None:
    (entry,) = read(
        "Mitarbeiter,SIP\n42,a@x.com\n", columns={"Mitarbeiter": "source_id", "SIP": "sip_uri"}
    )
    assert isinstance(entry, DirectoryEntry)
    assert entry.source_id == "42"


def test_bad_rows_are_reported_with_row_numbers_and_the_rest_read() -> None:
    records = read(
        "sip_uri,e164,disabled,source_id\n"
        "a@x.com,+4989123456,,1\n"
        "not-an-address,,,2\n"
        "\n"
        "c@x.com,+49 CALL ME,,3\n"
        "d@x.com,,maybe,4\n"
        "e@x.com,,,5,surplus\n"
        "f@x.com,,,6\n"
    )
    assert [(r.origin, type(r).__name__) for r in records] == [
        ("row 2", "DirectoryEntry"),
        ("row 3", "RowError"),
        ("row 5", "RowError"),
        ("row 6", "RowError"),
        ("row 7", "RowError"),
        ("row 8", "DirectoryEntry"),
    ]
    errors = [r for r in records if isinstance(r, RowError)]
    assert errors[2].message == "disabled is 'maybe', expected true or false"
    assert errors[3].message == "5 fields but the header has 4"


def test_file_without_sip_address_column_is_rejected() -> None:
    with pytest.raises(CsvSourceError, match="no SIP address column"):
        read("name,phone\nAlice,123\n")


def test_empty_file_is_rejected() -> None:
    with pytest.raises(CsvSourceError, match="no header"):
        read("")


def test_nul_byte_is_a_row_error() -> None:
    records = read("sip_uri,source_id\na@x.com,1\nb\0@x.com,2\nc@x.com,3\n")
    assert [type(r).__name__ for r in records] == ["DirectoryEntry", "RowError", "DirectoryEntry"]


def test_load_csv_reads_utf8_with_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes("\ufeffSipAddress,DisplayName\nsip:z@x.com,Zoë\n".encode())
    (entry,) = load_csv(path, GERMANY)
    assert isinstance(entry, DirectoryEntry)
    assert entry.display_name == "Zoë"


def test_load_csv_rejects_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(b"sip_uri,display_name\nz@x.com,Zo\xeb\n")
    with pytest.raises(CsvSourceError, match="not UTF-8"):
        load_csv(path, GERMANY)


def test_load_csv_reports_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CsvSourceError, match="cannot read"):
        load_csv(os.path.join(tmp_path, "absent.csv"), GERMANY)


@given(st.text(max_size=300))
def test_any_text_gives_records_or_a_csv_source_error(text: str) -> None:
    try:
        records = read("sip_uri,e164,extension,disabled,source_id\n" + text)
    except CsvSourceError:
        return
    assert all(isinstance(r, DirectoryEntry | RowError) for r in records)


def test_a_digest_algorithm_column_is_read_and_normalised() -> None:
    records = read(
        "sip_uri,extension,digest_algorithm\n"
        "a@example.com,101,SHA-256\n"
        'b@example.com,102,"sha256, md5"\n'
        "c@example.com,103,\n"
        "d@example.com,104,Default\n"
        "e@example.com,105,SHA-1\n"
        "f@example.com,106,MD5 md5\n"
    )

    values = [r.digest_algorithms if isinstance(r, DirectoryEntry) else r.message for r in records]
    assert values == [
        "SHA-256",
        "SHA-256 MD5",
        "",
        "",
        "digest algorithm 'SHA-1' is not MD5 or SHA-256",
        "digest algorithm MD5 is named twice",
    ]


def test_without_a_digest_algorithm_column_the_algorithms_are_not_managed() -> None:
    (record,) = read("sip_uri,extension\na@example.com,101\n")

    assert isinstance(record, DirectoryEntry)
    assert record.digest_algorithms is None
