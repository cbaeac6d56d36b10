"""The bridge to a SIP SIMPLE presence server (Kamailio, OpenSIPS, most SIP PBXs and UC suites).

Out: each user's presence is published under the user's SIP URI (``Event: presence``, PIDF with
RPID, see `mapping`), and while a handset rings or is in a call also as RFC 4235 dialog-info
(``Event: dialog``) so BLF keys light up; offline withdraws the publication. In: the bridge
subscribes to each user's presence at the server and brings in what *other* publishers (a UC
client set to DND) show, as EXTERNAL presence; its own tuple and person elements are recognised
by their id prefix and ignored, so it never reads back what it published.

Short messages (RFC 3428): a text sip2uc accepted for a user goes to the server as a MESSAGE to
the user's SIP URI as well (their UC clients registered there get it), From the sender; a
MESSAGE the server sends for a user's SIP URI goes to the user's handsets. Only the server's
address is heard (403 for anyone else), as for NOTIFY.

Saved state (in the control plane, through the runner): each publication's entity-tag and expiry,
under ``pub <event> <entity>``, so a restarted bridge modifies and refreshes the publications it
made instead of adding second ones beside them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sip2uc_core.events import dialog_info, pidf

from ..bridge import (
    Activity,
    BridgeContext,
    BridgeError,
    BridgeHealth,
    BridgeState,
    ConnectorConfig,
    InboundMessage,
    InboundPresence,
    MappedUser,
    OutboundMessage,
    PresenceUpdate,
    StateChanges,
)
from .agent import (
    AgentEvent,
    MessageAnswered,
    MessageReceived,
    Notified,
    PresenceAgent,
    Published,
    PublishFailed,
    hostport,
)
from .config import SipPresenceSettings
from .mapping import dialog_state, element_prefix, inbound_state
from .transport import AgentDriver

__all__ = ["SipPresenceBridge"]

log = logging.getLogger(__name__)

PRESENCE = "presence"
DIALOG = "dialog"
_CONTENT_TYPES = {PRESENCE: pidf.CONTENT_TYPE, DIALOG: dialog_info.CONTENT_TYPE}
#: How long `close` waits for withdrawals and unsubscriptions to be answered.
CLOSE_GRACE = 5.0
#: Consecutive unanswered or failed requests after which the bridge reports itself failed.
FAILED_AFTER = 5


def _state_key(event: str, entity: str) -> str:
    return f"pub {event} {entity}"


@dataclass(slots=True)
class _Waiter:
    generation: int
    future: asyncio.Future[None]


class SipPresenceBridge:
    def __init__(self, config: ConnectorConfig) -> None:
        self.config = config
        self.settings = SipPresenceSettings.from_config(config)
        self.prefix = element_prefix(self.settings.connector_id)
        self.max_concurrent_deliveries = self.settings.max_in_flight
        self.agent: PresenceAgent | None = None
        self.driver: AgentDriver | None = None
        self.context: BridgeContext | None = None
        self._waiters: dict[tuple[str, str], list[_Waiter]] = {}
        self._entity_of: dict[str, str] = {}  # users/{id} -> SIP URI published under
        self._user_of: dict[str, str] = {}  # SIP URI -> users/{id}
        self._last: dict[str, PresenceUpdate] = {}
        self._dialog_state: dict[str, str] = {}
        self._dialog_version: dict[str, int] = {}
        self._inbound: dict[str, tuple[object, str]] = {}
        self._dialog_refused = False
        self._users_mapped = 0
        self._message_answers: dict[int, asyncio.Future[tuple[int, str]]] = {}

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self, context: BridgeContext) -> None:
        self.context = context
        s = self.settings
        agent = PresenceAgent(
            server=s.server,
            random_bytes=os.urandom,
            username=s.username,
            password=s.password,
            expires=s.expires,
            max_in_flight=s.max_in_flight,
            knows=lambda entity: entity in self._user_of,
        )
        now = context.clock()
        for key, value in context.saved.items():
            kind, _, rest = key.partition(" ")
            event, _, entity = rest.partition(" ")
            if kind != "pub" or event not in _CONTENT_TYPES or not entity:
                continue
            try:
                saved = json.loads(value)
                agent.restore(
                    entity,
                    event,
                    _CONTENT_TYPES[event],
                    str(saved["etag"]),
                    float(saved["expires_at"]),
                    now,
                )
            except (ValueError, KeyError, TypeError):
                context.log.warning("ignoring unreadable saved publication %r", key)
        self.agent = agent
        self.driver = AgentDriver(agent, self._on_events, context.clock, tls_ca_pem=s.tls_ca_pem)
        try:
            await self.driver.start()
        except OSError as exc:
            raise BridgeError(f"cannot open a socket towards {hostport(s.server)}: {exc}") from exc

    async def close(self, *, remove: bool) -> None:
        agent, driver = self.agent, self.driver
        if agent is None or driver is None:
            return
        now = self._now()
        for entity in agent.subscribed():
            agent.unsubscribe(entity, now)
        if remove:
            for entity, event in agent.publications():
                agent.publish(entity, event, None, _CONTENT_TYPES[event], now)
        driver.flush()
        deadline = asyncio.get_running_loop().time() + CLOSE_GRACE
        while (agent.in_flight or agent.backlog) and driver.connected:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        await driver.close()
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(BridgeError("the bridge stopped"))
        self._waiters.clear()
        for answer in self._message_answers.values():
            if not answer.done():
                answer.set_exception(BridgeError("the bridge stopped"))
        self._message_answers.clear()

    def _now(self) -> float:
        assert self.context is not None
        return self.context.clock()

    # --- out -----------------------------------------------------------------------------------

    async def deliver(self, update: PresenceUpdate) -> None:
        if self.agent is None:
            raise BridgeError("not started")
        self._last[update.user] = update
        entity = update.sip_uri
        previous = self._entity_of.get(update.user)
        if previous is not None and previous != entity:
            # The user's SIP URI changed: the old publication must go.
            self._withdraw(previous)
        if update.removed or not entity:
            self._entity_of.pop(update.user, None)
            if entity:
                self._user_of.pop(entity, None)
                await self._wait_all(self._withdraw(entity))
            return
        self._entity_of[update.user] = entity
        self._user_of[entity] = update.user
        await self._wait_all(self._publish(entity, update))

    def _publish(self, entity: str, update: PresenceUpdate) -> list[tuple[str, str, int]]:
        agent, driver = self.agent, self.driver
        assert agent is not None and driver is not None
        now = self._now()
        state = self.settings.publish[update.availability]
        body = None if state.remove else pidf.presence_document(entity, self.prefix, state)
        pending = [
            (entity, PRESENCE, agent.publish(entity, PRESENCE, body, pidf.CONTENT_TYPE, now))
        ]
        if self.settings.publish_dialog and not self._dialog_refused:
            change, dialog = self._dialog_body(entity, update.activity)
            if change:
                generation = agent.publish(entity, DIALOG, dialog, dialog_info.CONTENT_TYPE, now)
                pending.append((entity, DIALOG, generation))
        driver.flush()
        return pending

    def _dialog_body(self, entity: str, activity: Activity) -> tuple[bool, bytes | None]:
        """Whether the dialog publication changes, and to what (None: withdrawn)."""
        state = dialog_state(activity)
        current = self._dialog_state.get(entity)
        if state == "terminated":
            if current is None:
                return False, None  # no call was published: nothing to end
            if current == "terminated":
                self._dialog_state.pop(entity, None)
                return True, None
        elif current == state:
            return False, None
        self._dialog_state[entity] = state
        version = self._dialog_version.get(entity, 0) + 1
        self._dialog_version[entity] = version
        return True, dialog_info.dialog_document(entity, self.prefix, state, version)

    def _withdraw(self, entity: str) -> list[tuple[str, str, int]]:
        agent, driver = self.agent, self.driver
        assert agent is not None and driver is not None
        now = self._now()
        self._dialog_state.pop(entity, None)
        pending = [
            (entity, event, agent.publish(entity, event, None, _CONTENT_TYPES[event], now))
            for event in (PRESENCE, DIALOG)
        ]
        driver.flush()
        return pending

    async def _wait_all(self, pending: list[tuple[str, str, int]]) -> None:
        agent = self.agent
        assert agent is not None
        futures: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for entity, event, generation in pending:
            if agent.settled(entity, event) >= generation:
                continue
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault((entity, event), []).append(_Waiter(generation, future))
            futures.append(future)
        if futures:
            await asyncio.gather(*futures)
        # A call that ended is shown as terminated first, then the dialog publication goes.
        for entity, event, _ in pending:
            if event == DIALOG and self._dialog_state.get(entity) == "terminated":
                generation = agent.publish(
                    entity, DIALOG, None, dialog_info.CONTENT_TYPE, self._now()
                )
                self._dialog_state.pop(entity, None)
                assert self.driver is not None
                self.driver.flush()
                await self._wait_all([(entity, DIALOG, generation)])

    # --- short messages ------------------------------------------------------------------------

    async def deliver_message(self, message: OutboundMessage) -> None:
        """Send `message` to its recipient's SIP URI at the server, if the user is mapped."""
        agent, driver = self.agent, self.driver
        if agent is None or driver is None:
            raise BridgeError("not started")
        if message.recipient_uri not in self._user_of:
            return
        answer: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        token = agent.send_message(
            message.recipient_uri,
            message.sender_uri,
            message.sender_display_name,
            message.text,
            self._now(),
        )
        self._message_answers[token] = answer
        driver.flush()  # sends it, and hands on an answer the agent gave at once
        status, reason = await answer
        if not 200 <= status < 300:
            raise BridgeError(f"MESSAGE to {message.recipient_uri}: {status} {reason}".strip())

    # --- events from the agent -----------------------------------------------------------------

    def _on_events(self, events: list[AgentEvent]) -> None:
        for event in events:
            if isinstance(event, Published):
                self._settle(event.entity, event.event, event.generation, None)
            elif isinstance(event, PublishFailed):
                if event.event == DIALOG and event.permanent:
                    if not self._dialog_refused:
                        log.warning(
                            "%s: the presence server does not take dialog publications (%s); "
                            "BLF state is not published",
                            self.config.name,
                            event.reason,
                        )
                    self._dialog_refused = True
                    self._settle(event.entity, event.event, 1 << 62, None)
                else:
                    self._settle(
                        event.entity,
                        event.event,
                        1 << 62,
                        BridgeError(f"PUBLISH {event.event}: {event.reason}"),
                    )
            elif isinstance(event, Notified):
                self._notified(event)
            elif isinstance(event, MessageAnswered):
                answer = self._message_answers.pop(event.token, None)
                if answer is not None and not answer.done():
                    answer.set_result((event.status, event.reason))
            elif isinstance(event, MessageReceived):
                self._message_received(event)

    def _settle(self, entity: str, event: str, generation: int, error: BridgeError | None) -> None:
        waiters = self._waiters.get((entity, event))
        if not waiters:
            return
        remaining = []
        for waiter in waiters:
            if waiter.future.done():
                continue
            if waiter.generation <= generation:
                if error is None:
                    waiter.future.set_result(None)
                else:
                    waiter.future.set_exception(error)
            else:
                remaining.append(waiter)
        if remaining:
            self._waiters[(entity, event)] = remaining
        else:
            del self._waiters[(entity, event)]

    def _message_received(self, event: MessageReceived) -> None:
        user = self._user_of.get(event.entity)
        if self.context is None or user is None:
            return
        self.context.bring_in_message(
            InboundMessage(
                user=user,
                sender_uri=event.sender_uri,
                sender_display_name=event.sender_display_name,
                text=event.text,
            )
        )

    def _notified(self, event: Notified) -> None:
        context = self.context
        user = self._user_of.get(event.entity)
        if context is None or user is None:
            return
        try:
            states = pidf.foreign_states(event.body, self.prefix)
        except pidf.PidfError as exc:
            context.log.warning("NOTIFY for %s ignored: %s", event.entity, exc)
            return
        availability, note = inbound_state(states, self.settings.inbound)
        seen = (availability, note)
        if self._inbound.get(event.entity) == seen:
            return
        self._inbound[event.entity] = seen
        context.bring_in(InboundPresence(user=user, availability=availability, note=note))

    # --- users ---------------------------------------------------------------------------------

    async def reconcile(self, users: Sequence[MappedUser]) -> None:
        agent = self.agent
        assert agent is not None
        wanted = {u.user: u.sip_uri for u in users if u.sip_uri}
        self._users_mapped = len(wanted)
        for user, entity in list(self._entity_of.items()):
            new = wanted.get(user)
            if new == entity:
                continue
            self._withdraw(entity)
            self._user_of.pop(entity, None)
            del self._entity_of[user]
            last = self._last.get(user)
            if new is not None and last is not None:
                # Re-published under the new SIP URI with the latest known state.
                asyncio.get_running_loop().create_task(self._republish(replace(last, sip_uri=new)))
            elif new is None:
                self._last.pop(user, None)
        for user, entity in wanted.items():
            self._user_of.setdefault(entity, user)
        # Publications a previous run made for users that are gone now.
        known = set(wanted.values())
        for entity, event in agent.publications():
            if entity not in known and entity not in self._user_of:
                agent.publish(entity, event, None, _CONTENT_TYPES[event], self._now())
        if self.settings.subscribe:
            now = self._now()
            subscribed = agent.subscribed()
            for entity in known - subscribed:
                agent.subscribe(entity, now)
            for entity in subscribed - known:
                agent.unsubscribe(entity, now)
                self._inbound.pop(entity, None)
        assert self.driver is not None
        self.driver.flush()

    async def _republish(self, update: PresenceUpdate) -> None:
        try:
            await self.deliver(update)
        except BridgeError as exc:
            log.warning("re-publishing %s under %s failed: %s", update.user, update.sip_uri, exc)

    # --- status and state ----------------------------------------------------------------------

    def health(self) -> BridgeHealth:
        agent, driver = self.agent, self.driver
        if agent is None or driver is None:
            return BridgeHealth(state=BridgeState.CONNECTING, users_mapped=self._users_mapped)
        if agent.auth.error:
            return BridgeHealth(
                state=BridgeState.FAILED,
                last_error=agent.auth.error,
                users_mapped=self._users_mapped,
            )
        if not driver.connected:
            return BridgeHealth(
                state=BridgeState.CONNECTING,
                last_error=driver.last_error,
                users_mapped=self._users_mapped,
            )
        if agent.consecutive_failures >= FAILED_AFTER:
            return BridgeHealth(
                state=BridgeState.FAILED,
                last_error=agent.last_error,
                users_mapped=self._users_mapped,
            )
        return BridgeHealth(
            state=BridgeState.CONNECTED,
            last_error=agent.last_error if agent.consecutive_failures else "",
            users_mapped=self._users_mapped,
        )

    def take_state_changes(self) -> StateChanges:
        changes = StateChanges()
        if self.agent is None:
            return changes
        for (entity, event), saved in self.agent.take_saved().items():
            key = _state_key(event, entity)
            if saved is None:
                changes.deletes.add(key)
            else:
                etag, expires_at = saved
                changes.upserts[key] = json.dumps(
                    {"etag": etag, "expires_at": round(expires_at, 3)}
                ).encode()
        return changes
