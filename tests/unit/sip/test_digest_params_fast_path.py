"""The auth-param fast path gives exactly the general scanner's result, or its error."""

from __future__ import annotations

import itertools

from hypothesis import example, given, settings
from hypothesis import strategies as st
from sip2uc_core.sip import digest
from sip2uc_core.sip.digest import DigestError

SCHEMES = ["Digest ", "digest  ", "Digest\t", "Basic ", "Digest", " Digest "]
NAMES = ["username", "realm", "Realm", "", "x y", "é"]
EQUALS = ["=", " = ", "\t=", "=\r\n "]
VALUES = [
    '"a b"',
    '"x\\"y"',
    '"c\\"',
    '"',
    "00000001",
    "MD5",
    "sip:u@h:5060",
    '""',
    "",
    '"\r\n"',
    "a b",
]
DELIMITERS = [",", ", ", " ,", ",,", "", " ", "\t", ",\r\n "]
_PARAM = st.tuples(*(st.sampled_from(p) for p in (NAMES, EQUALS, VALUES, DELIMITERS))).map("".join)
_VALUES_TO_PARSE = st.tuples(
    st.sampled_from(SCHEMES), st.lists(_PARAM, max_size=5).map("".join)
).map("".join)


def _outcome(parse: object, value: str) -> dict[str, str] | str:
    assert callable(parse)
    try:
        result = parse(value, "Authorization")
    except DigestError as exc:
        return f"error: {exc}"
    assert isinstance(result, dict)
    return result


def test_fast_path_and_general_scanner_agree_on_every_single_parameter_shape() -> None:
    for parts in itertools.product(SCHEMES, NAMES, EQUALS, VALUES, DELIMITERS):
        value = "".join(parts)
        fast = _outcome(digest._parse_auth_params, value)
        assert fast == _outcome(digest._scan_auth_params, value), value


@settings(max_examples=500)
@example("Digest realm=a nonce=b")
@example('Digest realm="a" nonce="b"')
@given(_VALUES_TO_PARSE)
def test_fast_path_and_general_scanner_agree(value: str) -> None:
    assert _outcome(digest._parse_auth_params, value) == _outcome(digest._scan_auth_params, value)


def test_the_usual_sipp_authorization_takes_the_fast_path_with_unquoted_values() -> None:
    value = (
        'Digest username="u1",realm="sip2uc",cnonce="6b8b4567",nc=00000001,qop=auth,'
        'uri="sip:127.0.0.1:5060",nonce="abc",response="0123",algorithm=MD5'
    )

    assert digest._parse_auth_params(value, "Authorization") == {
        "username": "u1",
        "realm": "sip2uc",
        "cnonce": "6b8b4567",
        "nc": "00000001",
        "qop": "auth",
        "uri": "sip:127.0.0.1:5060",
        "nonce": "abc",
        "response": "0123",
        "algorithm": "MD5",
    }


def test_a_repeated_parameter_is_still_refused() -> None:
    assert _outcome(digest._parse_auth_params, 'Digest realm="a", realm="b"') == (
        "error: Authorization repeats parameter 'realm'"
    )
