"""Calls and legs as the control plane tracks them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from sip2uc_core.stream_stats import StreamStats


class CallState(StrEnum):
    RINGING = "ringing"
    CONNECTED = "connected"
    ENDED = "ended"


class LegState(StrEnum):
    CREATED = "created"
    TRYING = "trying"
    RINGING = "ringing"
    EARLY_MEDIA = "early-media"
    ANSWERED = "answered"
    FAILED = "failed"
    ENDED = "ended"

    @property
    def finished(self) -> bool:
        return self in (LegState.FAILED, LegState.ENDED)


@dataclass(frozen=True)
class Codec:
    name: str
    payload_type: int
    clock_rate: int = 8000
    fmtp: str = ""


@dataclass(frozen=True)
class MediaInfo:
    """Where the other side's relay should send this leg's media, and what it speaks."""

    host: str
    port: int
    codecs: tuple[Codec, ...] = ()
    direction: str = "sendrecv"
    ptime_ms: int = 20


@dataclass
class Leg:
    id: str
    sidecar: str
    role: str  # "caller" or "callee"
    party: str  # users/{id} or a URI
    user_id: str | None = None
    registration: str = ""
    state: LegState = LegState.CREATED
    status: int = 0
    reason: str = ""
    media: MediaInfo | None = None
    direction: str = "sendrecv"
    stats: list[StreamStats] = field(default_factory=list)
    #: The trunk a callee leg goes to (empty: a handset).
    trunk: str = ""

    @property
    def codec(self) -> str:
        return self.media.codecs[0].name if self.media and self.media.codecs else ""


@dataclass
class Call:
    id: str
    caller: str  # users/{id} or a URI
    dialled: str
    caller_user: str | None
    start_time: float
    caller_leg: str = ""
    callee_user: str | None = None
    state: CallState = CallState.RINGING
    legs: dict[str, Leg] = field(default_factory=dict)
    dtmf: list[tuple[str, str, float]] = field(default_factory=list)
    answer_time: float | None = None
    end_time: float | None = None
    end_reason: str = ""
    final_status: int = 0
    winner: str = ""
    no_answer_deadline: float | None = None
    no_answer_target: str | None = None
    forward_chain: tuple[str, ...] = ()
    click_to_dial: str | None = None  # the target, while the caller's handsets ring first
    presence_users: set[str] = field(default_factory=set)
    #: When a restarted control plane rebuilt the call from its sidecars' legs.
    adopted_at: float | None = None
    #: Trunks still to try for an outbound number, in order, and that number (E.164).
    trunk_fallbacks: list[str] = field(default_factory=list)
    trunk_number: str = ""
    #: The trunk an inbound call came from (empty: a handset or the API).
    from_trunk: str = ""

    @property
    def name(self) -> str:
        return f"calls/{self.id}"

    def forks(self) -> list[Leg]:
        return [leg for leg in self.legs.values() if leg.role == "callee"]

    def live_forks(self) -> list[Leg]:
        return [leg for leg in self.forks() if not leg.state.finished]

    def involves(self, user_id: str) -> bool:
        return user_id in (self.caller_user, self.callee_user) or any(
            leg.user_id == user_id for leg in self.legs.values()
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "caller": self.caller,
            "dialled": self.dialled,
            "caller_user": self.caller_user,
            "callee_user": self.callee_user,
            "state": self.state.value,
            "start_time": self.start_time,
            "answer_time": self.answer_time,
            "end_time": self.end_time,
            "end_reason": self.end_reason,
            "final_status": self.final_status,
            "dtmf": [list(d) for d in self.dtmf],
            "legs": [
                {
                    "id": leg.id,
                    "sidecar": leg.sidecar,
                    "role": leg.role,
                    "party": leg.party,
                    "user_id": leg.user_id,
                    "registration": leg.registration,
                    "state": leg.state.value,
                    "status": leg.status,
                    "codec": leg.codec,
                    "direction": leg.direction,
                    "stats": [asdict(s) for s in leg.stats],
                }
                for leg in self.legs.values()
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Call:
        call = cls(
            id=d["id"],
            caller=d["caller"],
            dialled=d["dialled"],
            caller_user=d.get("caller_user"),
            start_time=float(d["start_time"]),
            callee_user=d.get("callee_user"),
            state=CallState(d["state"]),
            answer_time=d.get("answer_time"),
            end_time=d.get("end_time"),
            end_reason=d.get("end_reason", ""),
            final_status=int(d.get("final_status", 0)),
            dtmf=[(str(a), str(b), float(c)) for a, b, c in d.get("dtmf", [])],
        )
        for raw in d.get("legs", []):
            codec = raw.get("codec", "")
            call.legs[raw["id"]] = Leg(
                id=raw["id"],
                sidecar=raw["sidecar"],
                role=raw["role"],
                party=raw["party"],
                user_id=raw.get("user_id"),
                registration=raw.get("registration", ""),
                state=LegState(raw["state"]),
                status=int(raw.get("status", 0)),
                media=MediaInfo("", 0, (Codec(codec, 0),)) if codec else None,
                direction=raw.get("direction", "sendrecv"),
                stats=[_stats_from_dict(s) for s in raw.get("stats", [])],
            )
        return call


_STATS_FIELDS = frozenset(f.name for f in fields(StreamStats))


def _stats_from_dict(raw: dict[str, Any]) -> StreamStats:
    return StreamStats(**{k: v for k, v in raw.items() if k in _STATS_FIELDS})


# RFC 3261 §16.7 step 6: of several final responses prefer 6xx, then the lowest class; within a
# class the one that tells the caller most. 486/600 (busy) beats 480 beats 408 (nobody answered).
_PREFERENCE = {600: 0, 603: 1, 486: 2, 480: 3, 487: 4, 408: 5}


def best_final_status(statuses: list[int]) -> int:
    if not statuses:
        return 480
    six = [s for s in statuses if 600 <= s < 700]
    if six:
        return min(six, key=lambda s: _PREFERENCE.get(s, 50))
    return min(statuses, key=lambda s: (_PREFERENCE.get(s, 10 + s // 100), s))
