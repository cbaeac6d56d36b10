"""PIDF/RPID documents out and in, and the mapping tables between them and sip2uc presence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sip2uc_connectors.bridge import Activity, Availability
from sip2uc_connectors.sip_presence.mapping import (
    DEFAULT_PUBLISH,
    ForeignState,
    InboundRule,
    PidfState,
    dialog_state,
    element_prefix,
    inbound_rules,
    inbound_state,
    publish_table,
)
from sip2uc_core.events import dialog_info, pidf

PREFIX = element_prefix("kam")
RULES = inbound_rules()


def test_an_away_document_is_exactly_this() -> None:
    doc = pidf.presence_document(
        "sip:1001@uc.example.com", PREFIX, DEFAULT_PUBLISH[Availability.AWAY]
    )
    assert doc.decode() == (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" '
        'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
        'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:1001@uc.example.com">\n'
        '<tuple id="sip2uc-kam"><status><basic>open</basic></status></tuple>\n'
        '<dm:person id="sip2uc-kam-p"><rpid:activities><rpid:away/></rpid:activities>'
        "</dm:person>\n"
        "</presence>\n"
    )


def test_available_is_open_without_activity_and_offline_removes() -> None:
    doc = pidf.presence_document("sip:a@b", PREFIX, DEFAULT_PUBLISH[Availability.AVAILABLE])
    assert b"<basic>open</basic>" in doc and b"activities" not in doc
    assert DEFAULT_PUBLISH[Availability.OFFLINE].remove


def test_dnd_is_busy_with_the_connectors_note() -> None:
    table = publish_table(dnd_note="Bitte nicht stören")
    doc = pidf.presence_document("sip:a@b", PREFIX, table[Availability.DO_NOT_DISTURB])
    assert b"<rpid:busy/>" in doc and "<dm:note>Bitte nicht stören</dm:note>".encode() in doc


def test_notes_are_escaped() -> None:
    doc = pidf.presence_document("sip:a@b", PREFIX, PidfState(note="<b>&"))
    assert b"<dm:note>&lt;b&gt;&amp;</dm:note>" in doc


def test_a_connector_can_override_one_entry_of_the_table() -> None:
    table = publish_table([(Availability.BE_RIGHT_BACK, PidfState(activity="meal"))])
    assert table[Availability.BE_RIGHT_BACK] == PidfState(activity="meal")
    assert table[Availability.AWAY] == DEFAULT_PUBLISH[Availability.AWAY]


KAMAILIO_MERGED = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:1001@uc.example.com">
  <tuple id="t-baresip">
    <status>
      <basic>open</basic>
    </status>
  </tuple>
  <dm:person id="p-baresip">
    <rpid:activities>
      <rpid:busy/>
    </rpid:activities>
    <dm:note>Do not disturb</dm:note>
  </dm:person>
  <tuple xmlns="urn:ietf:params:xml:ns:pidf" id="sip2uc-kam">
    <status>
      <basic>open</basic>
    </status>
  </tuple>
  <dm:person xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" id="sip2uc-kam-p">
    <rpid:activities>
      <rpid:on-the-phone/>
    </rpid:activities>
  </dm:person>
</presence>
"""


def test_the_connectors_own_elements_are_left_out_of_a_merged_document() -> None:
    states = pidf.foreign_states(KAMAILIO_MERGED, PREFIX)
    assert states == [
        ForeignState(True, frozenset(), ""),
        ForeignState(True, frozenset({"busy"}), "Do not disturb"),
    ]
    assert inbound_state(states, RULES) == (Availability.DO_NOT_DISTURB, "Do not disturb")


def test_only_the_connectors_own_publication_brings_nothing_in() -> None:
    own = pidf.presence_document("sip:a@b", PREFIX, DEFAULT_PUBLISH[Availability.IN_A_CALL])
    assert pidf.foreign_states(own, PREFIX) == []
    assert inbound_state([], RULES) == (None, "")


def test_an_empty_notify_means_no_publishers() -> None:
    assert pidf.foreign_states(b"", PREFIX) == []


@pytest.mark.parametrize(
    ("activity", "note", "expected"),
    [
        ("busy", "", Availability.BUSY),
        ("busy", "DND until 5", Availability.DO_NOT_DISTURB),
        ("busy", "do not disturb", Availability.DO_NOT_DISTURB),
        ("meeting", "", Availability.BUSY),
        ("on-the-phone", "", Availability.IN_A_CALL),
        ("away", "", Availability.AWAY),
        ("vacation", "", Availability.AWAY),
        ("lunch-ish-unknown", "", None),
        ("meal", "", Availability.BE_RIGHT_BACK),
    ],
)
def test_the_default_inbound_table(activity: str, note: str, expected: Availability | None) -> None:
    assert inbound_state([ForeignState(True, frozenset({activity}), note)], RULES)[0] is expected


def test_open_without_activity_and_closed_bring_nothing_in() -> None:
    assert inbound_state([ForeignState(True, frozenset(), "")], RULES) == (None, "")
    assert inbound_state([ForeignState(False, frozenset({"busy"}), "")], RULES) == (None, "")


def test_of_several_publishers_the_most_restrictive_state_wins() -> None:
    states = [
        ForeignState(True, frozenset({"away"}), ""),
        ForeignState(True, frozenset({"busy"}), "DND"),
        ForeignState(True, frozenset({"on-the-phone"}), ""),
    ]
    assert inbound_state(states, RULES)[0] is Availability.DO_NOT_DISTURB


def test_a_connectors_rules_come_before_the_defaults() -> None:
    rules = inbound_rules([InboundRule(activity="away", availability=None)])
    assert inbound_state([ForeignState(True, frozenset({"away"}), "")], rules) == (None, "")


def test_person_elements_of_a_publisher_gone_closed_bring_nothing_in() -> None:
    doc = (
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
        b' xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@b">'
        b'<tuple id="t"><status><basic>closed</basic></status></tuple>'
        b'<dm:person id="p"><rpid:activities><rpid:busy/></rpid:activities></dm:person></presence>'
    )
    assert inbound_state(pidf.foreign_states(doc, PREFIX), RULES) == (None, "")


def test_activities_inside_a_tuple_count_too() -> None:
    doc = (
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"'
        b' entity="sip:a@b"><tuple id="t"><status><basic>open</basic></status>'
        b"<rpid:activities><rpid:away/></rpid:activities></tuple></presence>"
    )
    assert inbound_state(pidf.foreign_states(doc, PREFIX), RULES)[0] is Availability.AWAY


@pytest.mark.parametrize(
    "body",
    [
        b"<presence",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><presence>&a;</presence>',
        b"<other xmlns='urn:x'/>",
        b"x" * (300 * 1024),
    ],
)
def test_bad_documents_are_refused_with_a_reason(body: bytes) -> None:
    with pytest.raises(pidf.PidfError):
        pidf.foreign_states(body, PREFIX)


@given(st.binary(max_size=2000))
def test_any_bytes_give_states_or_pidf_error(body: bytes) -> None:
    try:
        pidf.foreign_states(body, PREFIX)
    except pidf.PidfError:
        pass


def test_dialog_info_for_a_call_is_exactly_this() -> None:
    assert dialog_state(Activity.IN_A_CALL) == "confirmed"
    assert dialog_state(Activity.RINGING) == "early"
    assert dialog_state(Activity.NONE) == "terminated"
    assert dialog_info.dialog_document(
        "sip:1001@uc.example.com", PREFIX, "confirmed", 3
    ).decode() == (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="full" '
        'entity="sip:1001@uc.example.com">\n'
        '<dialog id="sip2uc-kam"><state>confirmed</state></dialog>\n'
        "</dialog-info>\n"
    )
