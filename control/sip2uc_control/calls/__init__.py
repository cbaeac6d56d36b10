"""Calls: the live call registry, routing of new calls and the call history (see docs/calls.md)."""

from .commands import AnswerLeg, Command, CreateLeg, EndLeg, InjectDtmf, UpdateMedia
from .controller import CallController, InviteInput, InviteOutcome, LegReport
from .model import Call, CallState, Codec, Leg, LegState, MediaInfo, best_final_status

__all__ = [
    "AnswerLeg",
    "Call",
    "CallController",
    "CallState",
    "Codec",
    "Command",
    "CreateLeg",
    "EndLeg",
    "InjectDtmf",
    "InviteInput",
    "InviteOutcome",
    "Leg",
    "LegReport",
    "LegState",
    "MediaInfo",
    "UpdateMedia",
    "best_final_status",
]
