"""The presence-codes table: feature codes a handset dials to change presence or forwarding.

Plain handsets have no presence menu, so users dial a short code; the call is answered with a
confirmation and ended, and the control plane changes the user's state. The defaults follow the
star codes familiar from PBXs (``*72``/``*73`` call forwarding as in the North American vertical
service codes) and keep every code three characters long so none is a prefix of another:

=========  ==========================  ===========================================================
Code       Action                      Effect
=========  ==========================  ===========================================================
``*30``    ``dnd-on``                  manual DO_NOT_DISTURB
``*31``    ``dnd-off``                 clears the manual state if it is DO_NOT_DISTURB
``*32``    ``away``                    manual AWAY
``*33``    ``be-right-back``           manual BE_RIGHT_BACK
``*34``    ``busy``                    manual BUSY
``*35``    ``reset``                   clears any manual state (the handset's real state shows)
``*36``    ``appear-offline``          manual OFFLINE
``*72T``   ``forward-always-on``       forward every call to T (the digits dialled after the code)
``*73``    ``forward-always-off``      stop forwarding every call
``*90T``   ``forward-busy-on``         forward to T when busy or in DND
``*91``    ``forward-busy-off``        stop forwarding when busy
``*92T``   ``forward-no-answer-on``    forward to T when nobody answers in time
``*93``    ``forward-no-answer-off``   stop forwarding on no answer
=========  ==========================  ===========================================================

Reset clears rather than setting manual AVAILABLE: a manual AVAILABLE would hide real calls from
watchers until cleared again, which is never what "back to normal" means.

Matching (on the normalised dialled string, see ``dialplan.normalise``): a code without a target
matches exactly, or followed by a single ``#`` (many handsets send the key that ended dialling).
A code with a target takes the rest of the string as the target, after an optional ``*``
separator (``*72*0301234#``, the GSM supplementary-service style some users know) and without a
closing ``#``.

Administrators replace the table from a list of dicts (``CodeTable.from_list``), the same shape
``to_list`` stores. Codes must start with ``*`` or ``#`` so they can never shadow an extension
(all digits), and no code may equal or be a prefix of another: the handset sends the whole string
at once, so ``*3`` next to ``*30`` would be ambiguous.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

from sip2uc_control.presence import Availability

__all__ = [
    "DEFAULT_CODES",
    "CodeAction",
    "CodeError",
    "CodeMatch",
    "CodeTable",
    "PresenceCode",
]

_CODE = re.compile(r"[*#][0-9*#]{1,15}")
_TARGET = re.compile(r"\+?[0-9]{1,32}")
DESCRIPTION_MAX_LENGTH = 200


class CodeError(ValueError):
    """An invalid presence-code entry; names the entry (index, code) and the field."""

    def __init__(
        self, message: str, *, field: str, entry: int | None = None, code: str | None = None
    ) -> None:
        where = []
        if entry is not None:
            where.append(f"entry {entry}")
        if code is not None:
            where.append(f"code {code!r}")
        prefix = f"{' '.join(where)}: " if where else ""
        super().__init__(f"{prefix}{field}: {message}")
        self.detail = message
        self.field = field
        self.entry = entry
        self.code = code


class CodeAction(StrEnum):
    DND_ON = "dnd-on"
    DND_OFF = "dnd-off"
    AWAY = "away"
    BE_RIGHT_BACK = "be-right-back"
    BUSY = "busy"
    RESET = "reset"
    APPEAR_OFFLINE = "appear-offline"
    FORWARD_ALWAYS_ON = "forward-always-on"
    FORWARD_ALWAYS_OFF = "forward-always-off"
    FORWARD_BUSY_ON = "forward-busy-on"
    FORWARD_BUSY_OFF = "forward-busy-off"
    FORWARD_NO_ANSWER_ON = "forward-no-answer-on"
    FORWARD_NO_ANSWER_OFF = "forward-no-answer-off"

    @property
    def sets_availability(self) -> Availability | None:
        """The manual availability this action sets, if it sets one."""
        return _SETS.get(self)

    @property
    def is_presence(self) -> bool:
        return self in _PRESENCE_ACTIONS

    @property
    def takes_target(self) -> bool:
        return self in _TARGET_ACTIONS


_SETS: dict[CodeAction, Availability] = {
    CodeAction.DND_ON: Availability.DO_NOT_DISTURB,
    CodeAction.AWAY: Availability.AWAY,
    CodeAction.BE_RIGHT_BACK: Availability.BE_RIGHT_BACK,
    CodeAction.BUSY: Availability.BUSY,
    CodeAction.APPEAR_OFFLINE: Availability.OFFLINE,
}
_PRESENCE_ACTIONS = frozenset({*_SETS, CodeAction.DND_OFF, CodeAction.RESET})
_TARGET_ACTIONS = frozenset(
    {CodeAction.FORWARD_ALWAYS_ON, CodeAction.FORWARD_BUSY_ON, CodeAction.FORWARD_NO_ANSWER_ON}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceCode:
    """One entry of the table.

    ``duration`` (seconds) makes a presence set by this code lapse on its own, e.g. a
    be-right-back that ends after 15 minutes; only actions that set an availability take one.
    """

    code: str
    action: CodeAction
    description: str = ""
    duration: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _CODE.fullmatch(self.code):
            raise CodeError(
                "must be '*' or '#' followed by 1-15 digits, '*' or '#'",
                field="code",
                code=str(self.code),
            )
        if not isinstance(self.action, CodeAction):
            raise CodeError("must be a CodeAction", field="action", code=self.code)
        if not isinstance(self.description, str) or len(self.description) > DESCRIPTION_MAX_LENGTH:
            raise CodeError(
                f"must be a string of at most {DESCRIPTION_MAX_LENGTH} characters",
                field="description",
                code=self.code,
            )
        if self.duration is not None:
            if self.action.sets_availability is None:
                raise CodeError(
                    f"only codes that set a presence take a duration, not {self.action}",
                    field="duration",
                    code=self.code,
                )
            if (
                isinstance(self.duration, bool)
                or not isinstance(self.duration, int | float)
                or not math.isfinite(self.duration)
                or self.duration <= 0
            ):
                raise CodeError(
                    "must be a positive number of seconds", field="duration", code=self.code
                )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code, "action": self.action.value}
        if self.description:
            data["description"] = self.description
        if self.duration is not None:
            data["duration"] = self.duration
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, entry: int | None = None) -> Self:
        if not isinstance(data, Mapping):
            raise CodeError("expected an object", field="entry", entry=entry)
        code: Any = data.get("code")
        shown = code if isinstance(code, str) else None
        unknown = set(data) - {"code", "action", "description", "duration"}
        if unknown:
            raise CodeError(
                f"unknown fields {sorted(map(str, unknown))}",
                field="entry",
                entry=entry,
                code=shown,
            )
        raw_action: Any = data.get("action")
        try:
            action = CodeAction(raw_action)
        except ValueError:
            allowed = ", ".join(a.value for a in CodeAction)
            raise CodeError(
                f"{raw_action!r} is not one of {allowed}",
                field="action",
                entry=entry,
                code=shown,
            ) from None
        try:
            return cls(
                code=code,  # checked by __post_init__, like every field
                action=action,
                description=data.get("description", ""),
                duration=data.get("duration"),
            )
        except CodeError as error:
            raise CodeError(error.detail, field=error.field, entry=entry, code=shown) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeMatch:
    """A dialled string recognised as a code; ``target`` is set for forward-on codes.

    ``target`` is None when a code that needs a target was dialled without a usable one
    (the dial plan answers 484 Address Incomplete then).
    """

    code: PresenceCode
    target: str | None = None


@dataclass(frozen=True, slots=True)
class CodeTable:
    """A validated set of codes; construct it with ``from_list`` or ``CodeTable(codes)``."""

    codes: tuple[PresenceCode, ...]

    def __post_init__(self) -> None:
        seen: dict[str, int] = {}
        for index, entry in enumerate(self.codes):
            if entry.code in seen:
                raise CodeError(
                    f"duplicates entry {seen[entry.code]}",
                    field="code",
                    entry=index,
                    code=entry.code,
                )
            for other, other_index in seen.items():
                if entry.code.startswith(other) or other.startswith(entry.code):
                    raise CodeError(
                        f"clashes with {other!r} (entry {other_index}), a prefix of one another",
                        field="code",
                        entry=index,
                        code=entry.code,
                    )
            seen[entry.code] = index

    @classmethod
    def from_list(cls, entries: Sequence[Mapping[str, Any]]) -> Self:
        if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
            raise CodeError("expected a list of code entries", field="presence_codes")
        return cls(tuple(PresenceCode.from_dict(e, entry=i) for i, e in enumerate(entries)))

    def to_list(self) -> list[dict[str, Any]]:
        return [entry.to_dict() for entry in self.codes]

    def match(self, dialled: str) -> CodeMatch | None:
        """The code ``dialled`` (already normalised) invokes, or None."""
        for entry in self.codes:
            if not dialled.startswith(entry.code):
                continue
            rest = dialled[len(entry.code) :]
            if not entry.action.takes_target:
                return CodeMatch(code=entry) if rest in ("", "#") else None
            rest = rest.removeprefix("*").removesuffix("#")
            return CodeMatch(code=entry, target=rest if _TARGET.fullmatch(rest) else None)
        return None


DEFAULT_CODES = CodeTable(
    (
        PresenceCode(code="*30", action=CodeAction.DND_ON, description="Do not disturb on"),
        PresenceCode(code="*31", action=CodeAction.DND_OFF, description="Do not disturb off"),
        PresenceCode(code="*32", action=CodeAction.AWAY, description="Away"),
        PresenceCode(code="*33", action=CodeAction.BE_RIGHT_BACK, description="Be right back"),
        PresenceCode(code="*34", action=CodeAction.BUSY, description="Busy"),
        PresenceCode(code="*35", action=CodeAction.RESET, description="Clear manual presence"),
        PresenceCode(code="*36", action=CodeAction.APPEAR_OFFLINE, description="Appear offline"),
        PresenceCode(
            code="*72", action=CodeAction.FORWARD_ALWAYS_ON, description="Forward all calls to"
        ),
        PresenceCode(
            code="*73", action=CodeAction.FORWARD_ALWAYS_OFF, description="Stop forwarding"
        ),
        PresenceCode(
            code="*90", action=CodeAction.FORWARD_BUSY_ON, description="Forward when busy to"
        ),
        PresenceCode(
            code="*91",
            action=CodeAction.FORWARD_BUSY_OFF,
            description="Stop forwarding when busy",
        ),
        PresenceCode(
            code="*92",
            action=CodeAction.FORWARD_NO_ANSWER_ON,
            description="Forward when not answered to",
        ),
        PresenceCode(
            code="*93",
            action=CodeAction.FORWARD_NO_ANSWER_OFF,
            description="Stop forwarding when not answered",
        ),
    )
)
