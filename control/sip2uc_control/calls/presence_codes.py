"""A presence or forwarding code dialled on a handset (`*30`, `*72203`, ...): applied for the
caller, who hears a confirmation or an error tone instead of a call."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from ..domain import Forwarding as ForwardingSetting
from ..domain import User
from ..routing.codes import CodeAction
from ..routing.dialplan import (
    Forwarding,
    PresenceCodeRoute,
    RoutingError,
    apply_forward_code,
    apply_presence_code,
)
from .ports import PresenceRecords, SaveUserSettings
from .requests import InviteOutcome
from .routing import routing_settings

log = logging.getLogger(__name__)

_FORWARD_SETTING = {
    CodeAction.FORWARD_ALWAYS_ON: "forward_always",
    CodeAction.FORWARD_ALWAYS_OFF: "forward_always",
    CodeAction.FORWARD_BUSY_ON: "forward_busy",
    CodeAction.FORWARD_BUSY_OFF: "forward_busy",
    CodeAction.FORWARD_NO_ANSWER_ON: "forward_no_answer",
    CodeAction.FORWARD_NO_ANSWER_OFF: "forward_no_answer",
}


class PresenceCodes:
    def __init__(self, presence: PresenceRecords, save_settings: SaveUserSettings) -> None:
        self.presence = presence
        self.save_settings = save_settings

    async def apply(self, caller: User, route: PresenceCodeRoute) -> InviteOutcome:
        """Apply the code and wait until it is stored: the tone confirms a durable change."""
        action = route.code.action
        try:
            if action.is_presence:
                settings = routing_settings(caller)
                engine = self.presence.engine
                await self.presence.update(
                    caller.id, lambda r, now: apply_presence_code(engine, r, settings, route, now)
                )
            else:
                await self._apply_forward_code(caller, route)
        except RoutingError as exc:
            log.info("presence code %s refused for %s: %s", route.code.code, caller.name, exc)
            return InviteOutcome("feedback", tone_ok=False, status=403, reason=str(exc))
        log.info("presence code %s (%s) applied for %s", route.code.code, action.value, caller.name)
        return InviteOutcome("feedback", tone_ok=True)

    async def _apply_forward_code(self, caller: User, route: PresenceCodeRoute) -> None:
        new = apply_forward_code(routing_settings(caller), route)
        name = _FORWARD_SETTING[route.code.action]
        rule: Forwarding | None = getattr(new, name)
        value = (
            ForwardingSetting(enabled=rule.enabled, target=rule.target)
            if rule
            else ForwardingSetting()
        )
        changes: dict[str, Any] = {name: value}
        await self.save_settings(caller, replace(caller.settings, **changes))
