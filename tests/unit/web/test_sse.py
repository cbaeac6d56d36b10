"""Server-sent events framing: exact bytes, and what a browser's parser makes of them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sip2uc_web import sse


def browser_parse(stream: bytes) -> list[dict[str, str]]:
    """The event-stream interpretation of the HTML Living Standard (§9.2.6), for the fields the
    state view sends: one dict per dispatched event."""
    events: list[dict[str, str]] = []
    data: list[str] = []
    fields: dict[str, str] = {}
    text = stream.decode("utf-8")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for line in lines[:-1]:  # the text after the last line break is an incomplete line
        if line == "":
            if data:
                events.append({**fields, "data": "\n".join(data)})
            data, fields = [], {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name in ("event", "id", "retry"):
            fields[name] = value
    return events


def test_one_line_of_data() -> None:
    assert sse.event("hello") == b"data: hello\n\n"


def test_name_id_and_retry_come_before_the_data() -> None:
    assert sse.event("x", name="update", id="7", retry_ms=2000) == (
        b"event: update\nid: 7\nretry: 2000\ndata: x\n\n"
    )


def test_every_kind_of_line_break_starts_a_new_data_line() -> None:
    assert sse.event("a\r\nb\rc\nd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"


def test_a_trailing_line_break_is_kept_as_an_empty_data_line() -> None:
    assert sse.event("<p>\n") == b"data: <p>\ndata: \n\n"
    assert browser_parse(sse.event("<p>\n")) == [{"data": "<p>\n"}]


def test_text_is_sent_as_utf8() -> None:
    assert sse.event("— ü") == "data: — ü\n\n".encode()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "up\ndate"}, "event name must be one line"),
        ({"id": "1\r2"}, "id must be one line"),
        ({"id": "1\x002"}, "must not contain NUL"),
        ({"retry_ms": -1}, "non-negative"),
    ],
)
def test_fields_that_would_break_the_stream_are_refused(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(sse.FramingError, match=message):
        sse.event("x", **kwargs)  # type: ignore[arg-type]


def test_a_comment_keeps_the_stream_alive_and_dispatches_nothing() -> None:
    assert sse.comment("keep-alive") == b": keep-alive\n\n"
    assert browser_parse(sse.comment("keep-alive") + sse.event("x")) == [{"data": "x"}]


@given(
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00")),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00"), max_size=20),
)
def test_the_browser_reads_back_the_data_with_line_breaks_as_lf(data: str, name: str) -> None:
    frames = sse.event(data, name=name or None) + sse.event("next")
    parsed = browser_parse(frames)
    expected = data.replace("\r\n", "\n").replace("\r", "\n")
    first: dict[str, str] = {"data": expected}
    if name:
        first["event"] = name  # the parser strips the one space written after the colon
    assert parsed == [first, {"data": "next"}]
