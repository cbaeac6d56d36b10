"""Calls: the live call registry, routing, forking and click-to-dial (see docs/calls.md)."""

from .commands import AnswerLeg, Command, CreateLeg, EndLeg, InjectDtmf, UpdateMedia
from .controller import CallController
from .model import Call, CallState, Codec, Leg, LegState, MediaInfo, best_final_status
from .requests import InviteInput, InviteOutcome, LegReport, LiveLeg

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
    "LiveLeg",
    "MediaInfo",
    "UpdateMedia",
    "best_final_status",
]
