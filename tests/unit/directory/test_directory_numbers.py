import pytest
from hypothesis import given
from hypothesis import strategies as st
from sip2uc_control.directory.numbers import (
    ExtensionFallback,
    NumberError,
    NumberPolicy,
    ParsedNumber,
    derive_extension,
    normalise_e164,
    normalise_extension,
    parse_phone,
    parse_tel_uri,
)

GERMANY = NumberPolicy(default_region="DE")
NO_REGION = NumberPolicy()


def test_international_number_with_separators_becomes_e164() -> None:
    assert normalise_e164("+49 (89) 123-456", NO_REGION) == "+4989123456"


def test_national_number_uses_default_region() -> None:
    assert normalise_e164("089 1234567", GERMANY) == "+49891234567"


def test_national_number_without_default_region_is_an_error() -> None:
    with pytest.raises(NumberError):
        normalise_e164("089 1234567", NO_REGION)


def test_number_outside_the_numbering_plan_is_an_error() -> None:
    with pytest.raises(NumberError, match="not a valid phone number"):
        normalise_e164("+49 89 12", NO_REGION)


def test_possible_number_accepted_when_validity_not_required() -> None:
    lenient = NumberPolicy(require_valid=False)
    assert normalise_e164("+49 89 12", lenient) == "+498912"


def test_lync_line_uri_gives_number_and_extension() -> None:
    assert parse_tel_uri("tel:+4989123456;ext=456", NO_REGION) == ParsedNumber("+4989123456", "456")


def test_tel_uri_scheme_and_parameter_names_are_case_insensitive() -> None:
    assert parse_tel_uri("TEL:+4989123456;EXT=456", NO_REGION) == ParsedNumber("+4989123456", "456")


def test_tel_uri_without_extension() -> None:
    assert parse_tel_uri("tel:+14255550100", NO_REGION) == ParsedNumber("+14255550100", None)


def test_tel_uri_ignores_unknown_parameters() -> None:
    assert parse_tel_uri("tel:+14255550100;isub=12;foo=bar", NO_REGION) == ParsedNumber(
        "+14255550100", None
    )


def test_local_tel_uri_resolved_with_global_phone_context() -> None:
    assert parse_tel_uri("tel:123456;phone-context=+4989", NO_REGION) == ParsedNumber(
        "+4989123456", None
    )


def test_tel_uri_with_letters_in_extension_is_an_error() -> None:
    with pytest.raises(NumberError, match="extension"):
        parse_tel_uri("tel:+4989123456;ext=12a", NO_REGION)


def test_tel_uri_with_letters_is_an_error_not_a_vanity_number() -> None:
    with pytest.raises(NumberError, match="RFC 3966"):
        parse_tel_uri("tel:+49-89-CALL-ME", NO_REGION)


def test_tel_uri_without_number_is_an_error() -> None:
    with pytest.raises(NumberError, match="has no number"):
        parse_tel_uri("tel:;ext=12", NO_REGION)


def test_free_form_number_keeps_its_written_extension() -> None:
    assert parse_phone("+1 425 555 0100 x123", NO_REGION) == ParsedNumber("+14255550100", "123")


def test_parse_phone_accepts_tel_uris() -> None:
    assert parse_phone(" tel:+4989123456;ext=456 ", NO_REGION) == ParsedNumber("+4989123456", "456")


def test_extension_with_visual_separators_is_cleaned() -> None:
    assert normalise_extension("12-34") == "1234"


def test_line_extension_wins_over_attribute() -> None:
    assert derive_extension(GERMANY, line_extension="456", attribute="999", e164=None) == "456"


def test_attribute_extension_used_without_line_extension() -> None:
    assert derive_extension(GERMANY, line_extension=None, attribute="999", e164=None) == "999"


def test_last_digits_rule_cuts_the_e164_number() -> None:
    policy = NumberPolicy(extension_fallback=ExtensionFallback.LAST_DIGITS, extension_digits=3)
    assert (
        derive_extension(policy, line_extension=None, attribute="999", e164="+4989123456") == "456"
    )


def test_no_fallback_gives_no_extension() -> None:
    policy = NumberPolicy(extension_fallback=ExtensionFallback.NONE)
    assert derive_extension(policy, line_extension=None, attribute="999", e164="+498912") is None


@given(st.text(max_size=60))
def test_any_text_either_parses_or_raises_number_error(text: str) -> None:
    try:
        parsed = parse_phone(text, GERMANY)
    except NumberError:
        return
    assert parsed.e164 is not None and parsed.e164.startswith("+")


@given(st.text(max_size=40))
def test_any_tel_uri_either_parses_or_raises_number_error(text: str) -> None:
    try:
        parsed = parse_tel_uri("tel:" + text, GERMANY)
    except NumberError:
        return
    assert parsed.e164 is not None and parsed.e164.startswith("+")
