"""What a watcher of a user sees (BLF and presence): the user's effective presence and the user's
calls as RFC 4235 dialogs, derived from the live call registry.

Pure: calls and users in, views out. One dialog per call of the user: the caller's side is the
``initiator`` (trying until something rings, early while it rings, confirmed once answered), the
called user's side the ``recipient`` (early while its handsets ring — with the caller as remote
identity, which a handset's directed call pickup needs —, confirmed when it answered). A fork the
user did not answer, and every call that ended, is ``terminated``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from .calls.model import Call, CallState, LegState
from .domain import User
from .presence import Availability

__all__ = ["DialogPhase", "DialogView", "UserStateView", "dialog_of"]


class DialogPhase(enum.Enum):
    TRYING = "trying"
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogView:
    id: str
    phase: DialogPhase
    initiator: bool
    remote_uri: str = ""
    remote_display: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserStateView:
    user_id: str
    availability: Availability
    note: str = ""
    dialogs: tuple[DialogView, ...] = ()


def _party(ref: str | None, get: Callable[[str], User | None]) -> tuple[str, str]:
    """URI and display name of a party (``users/{id}`` or a URI)."""
    if not ref:
        return "", ""
    user = get(ref.removeprefix("users/")) if ref.startswith("users/") else None
    if user is not None:
        return user.sip_uri, user.display_name
    return (ref, "") if ref.startswith(("sip:", "sips:", "tel:")) else ("", "")


def dialog_of(call: Call, user_id: str, get: Callable[[str], User | None]) -> DialogView | None:
    """The dialog `call` is for `user_id`, or None when the user takes no part in it."""
    if call.caller_user == user_id:
        if call.state is CallState.ENDED:
            phase = DialogPhase.TERMINATED
        elif call.state is CallState.CONNECTED:
            phase = DialogPhase.CONFIRMED
        elif any(leg.state in (LegState.RINGING, LegState.EARLY_MEDIA) for leg in call.forks()):
            phase = DialogPhase.EARLY
        else:
            phase = DialogPhase.TRYING
        callee = f"users/{call.callee_user}" if call.callee_user else call.dialled
        uri, display = _party(callee, get)
        if not uri and call.dialled:
            uri = call.dialled if ":" in call.dialled else ""
        return DialogView(
            id=call.id, phase=phase, initiator=True, remote_uri=uri, remote_display=display
        )
    mine = [leg for leg in call.forks() if leg.user_id == user_id]
    if not mine and call.callee_user != user_id:
        return None
    if call.state is CallState.ENDED:
        phase = DialogPhase.TERMINATED
    elif call.state is CallState.CONNECTED:
        won = call.winner and any(leg.id == call.winner for leg in mine)
        phase = DialogPhase.CONFIRMED if won or not mine else DialogPhase.TERMINATED
    elif any(not leg.state.finished for leg in mine) or not mine:
        phase = DialogPhase.EARLY
    else:
        phase = DialogPhase.TERMINATED
    uri, display = _party(call.caller, get)
    return DialogView(
        id=call.id, phase=phase, initiator=False, remote_uri=uri, remote_display=display
    )
