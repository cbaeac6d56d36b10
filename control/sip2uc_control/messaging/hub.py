"""Short messages in the control plane: accept a text (from a handset, the API or the UC side),
send it to every registered device of its recipient, follow the devices' answers, keep the
numbered history and feed the watch streams.

Every accepted message gets the next number (`seq`, assigned here, one writer per database like
the presence log); it is written before anyone hears of it, so a watcher's cursor (the last
number it saw) resumes exactly where it left off, as long as retention has not trimmed past it.
Nothing is stored for later delivery: a recipient with no registered handset gets 480 (RFC 3428
§8, the same answer an INVITE gets), see docs/handset-features.md.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from sip2uc_core.sip.digest import Credentials

from ..bindings import Binding
from ..domain import Device, User
from ..errors import FieldViolation, InvalidArgument
from ..registrar import Refusal
from ..settings import ServerSettings
from ..watchers import Watchers
from .content import CONTENT_TYPE, ContentRefused, check_body, check_text
from .model import (
    DeliverMessage,
    DeliveryState,
    HandsetMessage,
    MessageOrigin,
    ShortMessage,
    Verdict,
)
from .rate import RateLimiter

__all__ = ["MessageHub", "MessageLog", "WatchItem"]

log = logging.getLogger(__name__)

#: How long a device has to answer before its delivery counts as failed (408): Timer F (64*T1)
#: of the sidecar's non-INVITE transaction, plus slack for the report to arrive.
DELIVERY_DEADLINE = 40.0
#: Messages read from the history per query when a watch catches up.
BACKLOG_PAGE = 500


class MessageLog(Protocol):
    """Where the history is kept (`store/messages.py`)."""

    async def load(self) -> tuple[int, int]:
        """The last number given and the highest number trimmed away."""
        ...

    async def insert(self, message: ShortMessage) -> None: ...

    async def update(self, message: ShortMessage) -> None: ...

    async def get(self, seq: int) -> ShortMessage | None: ...

    async def after(self, cursor: int, limit: int) -> list[ShortMessage]:
        """Messages numbered above `cursor`, oldest first."""
        ...

    async def page(self, user_id: str | None, before: int | None, limit: int) -> list[ShortMessage]:
        """Messages below `before` (None: the newest), newest first; only `user_id`'s if given."""
        ...

    async def trim(self, older_than: float, keep_last: int, last_seq: int) -> int:
        """Forget messages created before `older_than` or beyond the newest `keep_last`; the
        highest number now trimmed away."""
        ...


class UserDirectory(Protocol):
    def get(self, user_id: str) -> User | None: ...

    def resolve(self, ref: str) -> User | None: ...


#: Verify digest credentials for a method from a source host, with account lockout
#: (`ControlCore.authenticate`, as REGISTER and INVITE are verified).
Authenticate = Callable[[Credentials, str, str], tuple[User, Device] | Refusal]


class BindingLookup(Protocol):
    def for_user(self, user_id: str) -> list[Binding]: ...


class SidecarLinks(Protocol):
    def is_connected(self, name: str) -> bool: ...

    def send(self, name: str, command: DeliverMessage) -> bool: ...


class SettingsSource(Protocol):
    @property
    def current(self) -> ServerSettings: ...


@dataclass(frozen=True, slots=True)
class WatchItem:
    """One event of a watch: a message, or (``message`` None) that the cursor had expired."""

    cursor: int
    message: ShortMessage | None = None


@dataclass(slots=True)
class _Delivery:
    seq: int
    sidecar: str
    deadline: float


def _user_part(uri: str) -> str:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    return rest.split("@", 1)[0].split(";", 1)[0]


class MessageHub:
    def __init__(
        self,
        *,
        log_store: MessageLog,
        users: UserDirectory,
        bindings: BindingLookup,
        sidecars: SidecarLinks,
        settings: SettingsSource,
        authenticate: Authenticate,
        clock: Callable[[], float],
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:16],
    ) -> None:
        self.store = log_store
        self.authenticate = authenticate
        self.users = users
        self.bindings = bindings
        self.sidecars = sidecars
        self.settings = settings
        self.clock = clock
        self._new_id = new_id
        current = settings.current
        self.rate = RateLimiter(current.message_rate_per_minute, current.message_burst)
        self.last_seq = 0
        self.trimmed_through = 0
        self._lock = asyncio.Lock()
        self._watchers: Watchers[ShortMessage] = Watchers()
        #: Messages some device has not answered yet, and those deliveries.
        self._open: dict[int, ShortMessage] = {}
        self._deliveries: dict[str, _Delivery] = {}
        self._settled: dict[int, asyncio.Event] = {}

    async def load(self) -> None:
        self.last_seq, self.trimmed_through = await self.store.load()

    # --- accepting -----------------------------------------------------------------------------

    async def from_handset(self, inp: HandsetMessage) -> Verdict:
        """A handset's MESSAGE: who sent it (digest, as for REGISTER), whether they may now,
        what it says and whom it is for; 202 once it has gone to the recipient's devices."""
        settings = self.settings.current
        found: tuple[User, Device] | Refusal = Refusal.UNKNOWN_USER
        if inp.credentials is not None:
            found = self.authenticate(inp.credentials, "MESSAGE", inp.source_host)
        if isinstance(found, Refusal):
            # No relaying for anyone unauthenticated: challenge again (and count a failure).
            return Verdict(status=407, reason="Proxy Authentication Required")
        sender = found[0]
        if sender.disabled:
            return Verdict(status=403, reason="User disabled")
        wait = self.rate.take(sender.id, self.clock())
        if wait:
            # A 4xx, not 503: a 503 from its only server tells an RFC 3263 phone to fail over or
            # to hold back everything, when only this sender's texts are over the limit.
            return Verdict(status=403, reason="Message Rate Exceeded", retry_after=wait)
        checked = check_body(inp.content_type, inp.body, settings.message_max_bytes)
        if isinstance(checked, ContentRefused):
            return Verdict(status=checked.status, reason=checked.reason, accept=checked.accept)
        recipient = self._recipient(inp.request_uri)
        if recipient is None or recipient.disabled:
            return Verdict(status=404, reason="Not Found")
        message = await self._accept(
            sender=sender,
            sender_uri=sender.sip_uri,
            display_name=inp.from_display_name or sender.display_name,
            recipient=recipient,
            text=checked,
            origin=MessageOrigin.HANDSET,
        )
        if message.state is DeliveryState.FAILED:
            return Verdict(status=480, reason="Temporarily Unavailable", message=message)
        # RFC 3428 §7: 202, not 200 — the devices have not answered when the sender hears back.
        return Verdict(status=202, reason="Accepted", message=message)

    async def send(
        self,
        sender: User | None,
        recipient: User,
        text: str,
        *,
        external: tuple[str, str] | None = None,
        wait: float = 5.0,
    ) -> ShortMessage:
        """A text from the API: from `sender`, from the UC side when `external` (its sender's
        SIP URI and display name) is given, or from the system. Returns the message as it stands
        once every device answered or after `wait` seconds."""
        problem = check_text(text, self.settings.current.message_max_bytes)
        if problem is not None:
            raise InvalidArgument(FieldViolation("text", problem))
        if recipient.disabled:
            raise InvalidArgument(FieldViolation("recipient", f"{recipient.name} is disabled"))
        origin = MessageOrigin.API
        if sender is not None:
            sender_uri, display = sender.sip_uri, sender.display_name
        elif external is not None:
            sender_uri, display = external
            origin = MessageOrigin.UC
        else:
            sender_uri = f"sip:system@{self.settings.current.sip_domain}"
            display = "sip2uc"
        message = await self._accept(
            sender=sender,
            sender_uri=sender_uri,
            display_name=display,
            recipient=recipient,
            text=text,
            origin=origin,
        )
        settled = self._settled.get(message.seq)
        if settled is not None:
            try:
                await asyncio.wait_for(settled.wait(), wait)
            except TimeoutError:
                pass
        return self._open.get(message.seq) or await self.get(message.seq) or message

    def _recipient(self, request_uri: str) -> User | None:
        user_part = _user_part(request_uri)
        if not user_part:
            return None
        found = self.users.resolve(user_part)
        if found is None:
            found = self.users.resolve(f"sip:{user_part}@{self.settings.current.sip_domain}")
        return found

    async def _accept(
        self,
        *,
        sender: User | None,
        sender_uri: str,
        display_name: str,
        recipient: User,
        text: str,
        origin: MessageOrigin,
    ) -> ShortMessage:
        targets = [
            b for b in self.bindings.for_user(recipient.id) if self.sidecars.is_connected(b.sidecar)
        ]
        now = self.clock()
        async with self._lock:
            message = ShortMessage(
                seq=self.last_seq + 1,
                sender_id=sender.id if sender is not None else "",
                sender_uri=sender_uri,
                sender_display_name=display_name,
                recipient_id=recipient.id,
                recipient_uri=recipient.sip_uri,
                text=text,
                create_time=now,
                origin=origin,
                state=DeliveryState.PENDING if targets else DeliveryState.FAILED,
                attempted=len(targets),
                failure_reason="" if targets else "recipient offline",
            )
            await self.store.insert(message)
            self.last_seq = message.seq
        self._watchers.offer(message)
        if targets:
            self._open[message.seq] = message
            self._settled[message.seq] = asyncio.Event()
            body = text.encode("utf-8")
            for binding in targets:
                delivery_id = self._new_id()
                self._deliveries[delivery_id] = _Delivery(
                    message.seq, binding.sidecar, now + DELIVERY_DEADLINE
                )
                command = DeliverMessage(
                    delivery_id=delivery_id,
                    request_uri=binding.contact_uri,
                    host=binding.source_host,
                    port=binding.source_port,
                    transport=binding.transport,
                    from_uri=sender_uri,
                    from_display_name=display_name,
                    to_uri=recipient.sip_uri,
                    content_type=CONTENT_TYPE,
                    body=body,
                )
                if not self.sidecars.send(binding.sidecar, command):
                    await self.delivered(binding.sidecar, delivery_id, 503, "sidecar not connected")
        log.info(
            "message %s from %s to %s: %s",
            message.name,
            sender_uri,
            recipient.sip_uri,
            f"sent to {len(targets)} device(s)" if targets else "recipient offline",
        )
        return message

    # --- the devices' answers ------------------------------------------------------------------

    async def delivered(self, sidecar: str, delivery_id: str, status: int, reason: str) -> None:
        """A device's final answer to a delivery (reported by the sidecar that sent it)."""
        delivery = self._deliveries.get(delivery_id)
        if delivery is None or delivery.sidecar != sidecar:
            return  # unknown, already settled, or another sidecar's: nothing to believe
        del self._deliveries[delivery_id]
        message = self._open.get(delivery.seq)
        if message is None:
            return
        if 200 <= status < 300:
            message = replace(message, delivered=message.delivered + 1)
        else:
            message = replace(
                message,
                failed=message.failed + 1,
                failure_reason=message.failure_reason or f"{status} {reason}".strip(),
            )
        if message.delivered + message.failed < message.attempted:
            self._open[message.seq] = message
            return
        state = DeliveryState.DELIVERED if message.delivered else DeliveryState.FAILED
        message = replace(
            message,
            state=state,
            failure_reason="" if state is DeliveryState.DELIVERED else message.failure_reason,
        )
        del self._open[message.seq]
        settled = self._settled.pop(message.seq, None)
        try:
            await self.store.update(message)
        finally:
            if settled is not None:
                settled.set()

    async def sweep(self) -> None:
        """Deliveries nobody reported on in time (a sidecar lost meanwhile) count as 408."""
        now = self.clock()
        overdue = [(i, d) for i, d in self._deliveries.items() if d.deadline <= now]
        for delivery_id, delivery in overdue:
            await self.delivered(delivery.sidecar, delivery_id, 408, "No answer")

    async def trim(self) -> None:
        """Apply the retention settings to the history."""
        settings = self.settings.current
        older_than = self.clock() - settings.message_retention_days * 86400.0
        trimmed = await self.store.trim(older_than, settings.message_history_max, self.last_seq)
        self.trimmed_through = max(self.trimmed_through, trimmed)

    def configure(self, settings: ServerSettings) -> None:
        self.rate.configure(settings.message_rate_per_minute, settings.message_burst)

    # --- reading -------------------------------------------------------------------------------

    async def get(self, seq: int) -> ShortMessage | None:
        return self._open.get(seq) or await self.store.get(seq)

    async def page(self, user_id: str | None, before: int | None, limit: int) -> list[ShortMessage]:
        found = await self.store.page(user_id, before, limit)
        return [self._open.get(m.seq, m) for m in found]

    async def watch(
        self, user_ids: frozenset[str] | None, cursor: int | None
    ) -> AsyncIterator[WatchItem]:
        """The messages after `cursor` from the history, then each one as it is accepted; an
        expired cursor first yields an item without a message."""
        queue = self._watchers.watch()  # first: nothing accepted from now on is missed
        try:
            position = self.last_seq
            if cursor is not None:
                position = cursor
                if cursor < self.trimmed_through or cursor > self.last_seq:
                    position = self.trimmed_through
                    yield WatchItem(cursor=position)
                while True:
                    backlog = await self.store.after(position, BACKLOG_PAGE)
                    for message in backlog:
                        position = message.seq
                        if user_ids is None or message.involves(user_ids):
                            yield WatchItem(cursor=message.seq, message=message)
                    if len(backlog) < BACKLOG_PAGE:
                        break
            while True:
                live = await queue.get()
                if live is None:
                    return  # cut off (it stopped reading) or shutting down: resume by cursor
                if live.seq <= position:
                    continue  # already sent from the history
                position = live.seq
                if user_ids is None or live.involves(user_ids):
                    yield WatchItem(cursor=live.seq, message=live)
        finally:
            self._watchers.unwatch(queue)

    def close(self) -> None:
        self._watchers.end_all()
