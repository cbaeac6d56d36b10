"""What Graph's documentation requires of the presence requests beyond the metadata.

Each rule names the page it comes from (Microsoft Graph v1.0 reference on learn.microsoft.com).
These tables are the stand-in's own copy, written from the documentation: they are deliberately
not imported from the bridge, so a mistake in one is caught by the other.
"""

from __future__ import annotations

import re

from .csdl import parse_duration

SET_PRESENCE_PAGE = "https://learn.microsoft.com/graph/api/presence-setpresence?view=graph-rest-1.0"
CLEAR_PRESENCE_PAGE = (
    "https://learn.microsoft.com/graph/api/presence-clearpresence?view=graph-rest-1.0"
)
SET_PREFERRED_PAGE = (
    "https://learn.microsoft.com/graph/api/presence-setuserpreferredpresence?view=graph-rest-1.0"
)
CLEAR_PREFERRED_PAGE = (
    "https://learn.microsoft.com/graph/api/presence-clearuserpreferredpresence?view=graph-rest-1.0"
)
GET_PRESENCES_PAGE = "https://learn.microsoft.com/graph/api/cloudcommunications-getpresencesbyuserid?view=graph-rest-1.0"

# "Supported combinations of availability and activity" (setPresence).
SET_PRESENCE_PAIRS = frozenset(
    {
        ("Available", "Available"),
        ("Busy", "InACall"),
        ("Busy", "InAConferenceCall"),
        ("Away", "Away"),
        ("DoNotDisturb", "Presenting"),
    }
)
# "Supported combinations of availability and activity" (setUserPreferredPresence).
SET_PREFERRED_PAIRS = frozenset(
    {
        ("Available", "Available"),
        ("Busy", "Busy"),
        ("DoNotDisturb", "DoNotDisturb"),
        ("BeRightBack", "BeRightBack"),
        ("Away", "Away"),
        ("Offline", "OffWork"),
    }
)
# setPresence: "The valid duration range is 5-240 minutes (PT5M to PT4H)"; 5 minutes if absent.
SESSION_MIN_SECONDS = 5 * 60
SESSION_MAX_SECONDS = 240 * 60
SESSION_DEFAULT_SECONDS = 5 * 60
# getPresencesByUserId: "Maximum of 650 user IDs are supported per API request."
MAX_IDS = 650
# ids are "The user object IDs".
_OBJECT_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)

# Application permission each action needs (the pages' permission tables).
WRITE_ROLE = "Presence.ReadWrite.All"
READ_ROLES = frozenset({"Presence.Read.All", "Presence.ReadWrite.All"})


def _pair(body: dict[str, object]) -> tuple[object, object]:
    return body.get("availability"), body.get("activity")


def check_set_presence(body: dict[str, object], app_id: str) -> list[str]:
    problems = []
    session_id = body.get("sessionId")
    if session_id is None:
        problems.append(
            f"setPresence: sessionId is required for an application ({SET_PRESENCE_PAGE})"
        )
    elif session_id != app_id:
        problems.append(
            f"setPresence: sessionId {session_id!r} must be the application id {app_id!r} ({SET_PRESENCE_PAGE})"
        )
    if _pair(body) not in SET_PRESENCE_PAIRS:
        problems.append(
            f"setPresence: availability/activity {body.get('availability')}/{body.get('activity')} "
            f"is not a supported combination ({SET_PRESENCE_PAGE})"
        )
    duration = body.get("expirationDuration")
    if isinstance(duration, str):
        seconds = parse_duration(duration)
        if seconds is not None and not SESSION_MIN_SECONDS <= seconds <= SESSION_MAX_SECONDS:
            problems.append(
                f"setPresence: expirationDuration {duration} is outside PT5M-PT4H ({SET_PRESENCE_PAGE})"
            )
    return problems


def check_clear_presence(body: dict[str, object], app_id: str) -> list[str]:
    session_id = body.get("sessionId")
    if session_id is None:
        return [f"clearPresence: sessionId is required ({CLEAR_PRESENCE_PAGE})"]
    if session_id != app_id:
        return [
            f"clearPresence: sessionId {session_id!r} must be the application id {app_id!r} ({CLEAR_PRESENCE_PAGE})"
        ]
    return []


def check_set_preferred(body: dict[str, object], app_id: str) -> list[str]:
    del app_id
    problems = []
    if _pair(body) not in SET_PREFERRED_PAIRS:
        problems.append(
            f"setUserPreferredPresence: availability/activity {body.get('availability')}/"
            f"{body.get('activity')} is not a supported combination ({SET_PREFERRED_PAGE})"
        )
    duration = body.get("expirationDuration")
    if isinstance(duration, str):
        seconds = parse_duration(duration)
        if seconds is not None and seconds <= 0:
            problems.append(
                f"setUserPreferredPresence: expirationDuration must be positive ({SET_PREFERRED_PAGE})"
            )
    return problems


def check_clear_preferred(body: dict[str, object], app_id: str) -> list[str]:
    # "supply an empty JSON object {}": the metadata declares no parameters, so any member is
    # already reported as unknown; nothing more to check.
    del body, app_id
    return []


def check_get_presences(body: dict[str, object], app_id: str) -> list[str]:
    del app_id
    ids = body.get("ids")
    if not isinstance(ids, list):
        return []  # the metadata check reports it
    problems = []
    if not ids:
        problems.append(f"getPresencesByUserId: ids is empty ({GET_PRESENCES_PAGE})")
    if len(ids) > MAX_IDS:
        problems.append(
            f"getPresencesByUserId: {len(ids)} ids, at most {MAX_IDS} per request ({GET_PRESENCES_PAGE})"
        )
    bad = [i for i in ids if isinstance(i, str) and not _OBJECT_ID.match(i)]
    if bad:
        problems.append(
            f"getPresencesByUserId: ids must be user object ids, not {bad[:3]} ({GET_PRESENCES_PAGE})"
        )
    return problems


CHECKS = {
    "setPresence": check_set_presence,
    "clearPresence": check_clear_presence,
    "setUserPreferredPresence": check_set_preferred,
    "clearUserPreferredPresence": check_clear_preferred,
    "getPresencesByUserId": check_get_presences,
}
