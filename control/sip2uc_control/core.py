"""The control plane's state and the operations on it, below the gRPC layer.

Servicers convert requests into calls on `ControlCore` and results back into messages; nothing
here imports generated code. One clock (`self.clock`) serves every decision, so tests can run the
core on a fixed time line.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from sip2uc_core.refusal_log import RefusalLog, printable
from sip2uc_core.sip.digest import Algorithm, Credentials, DigestError, compute_ha1

from .bindings import Binding, BindingChange
from .calls import CallController
from .connectors import SessionTable
from .contacts import Contact
from .domain import Device, User, UserSettings, validate_password, validate_user_fields
from .enrollments import Enrollment, SidecarEnrollments
from .errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    StorageUnavailable,
    check,
)
from .lockout import AccountLock, AccountLockout, LockoutPolicy
from .messaging.hub import MessageHub
from .phonebook import PhonebookFeed
from .presence import Availability, PresenceChange, PresenceEngine, Source
from .presence_hub import PresenceHub
from .registrar import (
    Outcome,
    Refusal,
    RegisterDecision,
    RegisterInput,
    authenticate,
    decide,
    waste_verification,
)
from .settings import ServerSettings
from .sidecars import SidecarRegistry, SidecarSettings
from .store.bindings import BindingStore
from .store.calls import CallHistoryStore
from .store.connectors import ConnectorStore
from .store.contacts import ContactStore
from .store.db import Database, open_database
from .store.enrollments import EnrollmentStore
from .store.messages import MessageStore
from .store.presence import PresenceStore
from .store.settings import SettingsStore
from .store.sidecars import SidecarStore
from .store.trunks import TrunkStore
from .store.users import UserStore
from .subscriptions import (
    Action,
    HeldSubscription,
    SubscribeDecision,
    SubscribeInput,
    SubscriptionRegistry,
    decide_subscription,
    may_watch,
)
from .telemetry import ControlMetrics
from .trunk_registry import TrunkRegistry
from .trunks import UPSTREAM_ID, Reachability, Registration, Trunk
from .user_states import UserStateView, dialog_of
from .watchers import WATCH_QUEUE_LIMIT, WatchQueue

log = logging.getLogger(__name__)
#: Seconds between two pushes of settings after device changes (a burst makes one more push).
SETTINGS_PUSH_INTERVAL = 0.2
_auth_log = logging.getLogger("sip2uc_control.auth")


class ControlCore:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self.metrics = ControlMetrics()
        self.users = UserStore(db)
        self.bindings = BindingStore(db)
        self.settings = SettingsStore(db)
        self.sidecars = SidecarRegistry(SidecarStore(db))
        self.enrollments = SidecarEnrollments(EnrollmentStore(db), clock)
        self.presence = PresenceHub(
            PresenceStore(db), PresenceEngine(), clock, on_change=self._presence_changed
        )
        self.call_history = CallHistoryStore(db)
        self.trunk_store = TrunkStore(db)
        self.trunks = TrunkRegistry(self.trunk_store, self.sidecars.is_connected, clock)
        self.calls = CallController(
            users=self.users,
            bindings=self.bindings,
            presence=self.presence,
            settings=self.settings,
            sidecars=self.sidecars,
            history=self.call_history,
            save_user_settings=self._save_user_settings,
            authenticate=self.authenticate,
            clock=clock,
            trunks=self.trunks,
        )
        self.messages = MessageHub(
            log_store=MessageStore(db),
            users=self.users,
            bindings=self.bindings,
            sidecars=self.sidecars,
            settings=self.settings,
            authenticate=self.authenticate,
            clock=clock,
        )
        self.connectors = ConnectorStore(db)
        self.connector_sessions = SessionTable()
        self.lockout = AccountLockout()
        #: Handsets' subscriptions as the sidecars hold them (they re-announce them).
        self.subscriptions = SubscriptionRegistry()
        self._settings_push: asyncio.TimerHandle | None = None
        self._settings_pushed_at = float("-inf")
        self._refusals = RefusalLog(_auth_log)
        self.contacts = ContactStore(db)
        self.phonebook = PhonebookFeed(self.users, self.contacts, clock)
        self._binding_watchers: set[WatchQueue[BindingChange]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.start_time = clock()

    @classmethod
    async def open(
        cls, url: str | None, data_dir: Path, clock: Callable[[], float] = time.time
    ) -> ControlCore:
        core = cls(await open_database(url, data_dir), clock)
        await core.users.load()
        await core.bindings.load()
        await core.settings.load()
        await core.presence.load()
        for user in core.users.all():
            # Users created before presence records began with the user: offline since then.
            core.presence.begin(user.id, user.create_time)
        # No call is live yet: presence must not keep anyone in a call the registry does not
        # have (sidecars that still carry calls give them back as they reconnect).
        reconciled = core.calls.reconcile_presence()
        if reconciled:
            log.info("%d users were in calls that ended with the last run", reconciled)
        await core.sidecars.load(clock())
        await core.connectors.load()
        await core.enrollments.load()
        core.lockout.policy = _lockout_policy(core.settings.current)
        await core.contacts.load()
        await core.trunk_store.load()
        await core.adopt_upstream_trunk()
        core.messages.configure(core.settings.current)
        await core.messages.load()
        core.metrics.observe(core)
        return core

    def start_background(self) -> None:
        self._tasks.append(asyncio.create_task(self._sweeper(), name="expiry-sweeper"))

    async def close(self) -> None:
        if self._settings_push is not None:
            self._settings_push.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        for q in list(self._binding_watchers):
            q.end()
        self.phonebook.close()
        self.sidecars.close()
        self.connectors.close()
        self.messages.close()
        await self.presence.drain()
        await self.db.close()

    # --- sidecar enrollments -------------------------------------------------------------------

    async def enroll_sidecar(self, name: str, *, replace: bool) -> tuple[Enrollment, str]:
        """A new credential for sidecar `name` (the token is returned only here). A live session
        under that name ends: from now on only the new credential connects as `name`."""
        enrollment, token = await self.enrollments.enroll(name, replace=replace)
        if self.sidecars.end_session(name, f"sidecars/{name} was enrolled anew"):
            log.info("sidecar %s: session ended, it must connect with its new credential", name)
        return enrollment, token

    async def revoke_sidecar(self, name: str) -> tuple[Enrollment, bool]:
        """Revoke `name`'s credential; True when its live session was ended."""
        enrollment = await self.enrollments.revoke(name)
        ended = self.sidecars.end_session(name, f"the credential of sidecars/{name} was revoked")
        log.info("sidecar %s: credential revoked%s", name, ", session ended" if ended else "")
        return enrollment, ended

    # --- users ---------------------------------------------------------------------------------

    def resolve_user(self, ref: str, field_name: str = "name") -> User:
        if not ref:
            raise InvalidArgument(
                FieldViolation(field_name, "required: users/{id}, extension, +E.164 or SIP URI")
            )
        user = self.users.resolve(ref)
        if user is None:
            raise NotFound("user", ref)
        return user

    def _hash_device(self, device: Device, password: str) -> Device:
        reg = device.registering
        assert reg is not None
        realm = self.settings.current.realm
        return replace(
            device,
            registering=replace(
                reg,
                ha1_md5=compute_ha1(Algorithm.MD5, reg.digest_username, realm, password),
                ha1_sha256=compute_ha1(Algorithm.SHA_256, reg.digest_username, realm, password),
            ),
        )

    def _apply_passwords(
        self, user: User, passwords: dict[int, str], previous: User | None
    ) -> User:
        """Hash new passwords into HA1s; keep the HA1s of devices whose password is not given."""
        violations: list[FieldViolation] = []
        devices: list[Device] = []
        for i, dev in enumerate(user.devices):
            if dev.registering is None:
                devices.append(dev)
                continue
            password = passwords.get(i, "")
            if password:
                violations += validate_password(password, f"user.devices[{i}].registering.password")
                devices.append(self._hash_device(dev, password))
                continue
            old = previous.device(dev.id) if previous is not None else None
            if (
                old is not None
                and old.registering is not None
                and old.registering.digest_username == dev.registering.digest_username
            ):
                devices.append(
                    replace(
                        dev,
                        registering=replace(
                            dev.registering,
                            ha1_md5=old.registering.ha1_md5,
                            ha1_sha256=old.registering.ha1_sha256,
                        ),
                    )
                )
            else:
                violations.append(
                    FieldViolation(
                        f"user.devices[{i}].registering.password",
                        "required for a new registering device or a changed digest username",
                    )
                )
        check(violations)
        return replace(user, devices=tuple(devices))

    async def create_user(self, user: User, passwords: dict[int, str]) -> User:
        now = self.clock()
        user = replace(user, id=uuid.uuid4().hex[:16], create_time=now, update_time=now)
        user = self._assign_device_ids(user)
        check(validate_user_fields(user))
        user = self._apply_passwords(user, passwords, None)
        saved = await self.users.save(user, create=True)
        self.presence.begin(saved.id)
        self.phonebook.changed()
        log.info("user %s created (%s)", saved.name, saved.sip_uri)
        self._devices_changed(None, saved)
        return saved

    async def update_user(self, user: User, passwords: dict[int, str], previous: User) -> User:
        user = replace(
            user, id=previous.id, create_time=previous.create_time, update_time=self.clock()
        )
        user = self._assign_device_ids(user)
        check(validate_user_fields(user))
        user = self._apply_passwords(user, passwords, previous)
        saved = await self.users.save(user, create=False)
        self._devices_changed(previous, saved)
        self.phonebook.changed()
        gone = {d.id for d in previous.devices} - {d.id for d in saved.devices}
        stale = [b for b in self.bindings.for_user(saved.id) if b.device_id in gone]
        if stale:
            await self.remove_bindings(stale, "device removed")
        if saved.disabled and not previous.disabled:
            await self.remove_bindings(self.bindings.for_user(saved.id), "user disabled")
        return saved

    async def _save_user_settings(self, user: User, settings: UserSettings) -> None:
        await self.update_user(user.with_changes(settings=settings), {}, user)

    async def delete_user(self, user: User) -> None:
        bindings = self.bindings.for_user(user.id)
        await self.users.delete(user)
        self._devices_changed(user, None)
        self.phonebook.changed()
        self.bindings.forget_user(user.id)
        for b in bindings:
            self._binding_event(BindingChange("removed", b, "user deleted"))
        await self.presence.forget(user.id)

    @staticmethod
    def _assign_device_ids(user: User) -> User:
        taken = {d.id for d in user.devices if d.id}
        devices = []
        n = 1
        for dev in user.devices:
            if not dev.id:
                while f"device-{n}" in taken:
                    n += 1
                dev = replace(dev, id=f"device-{n}")
                taken.add(dev.id)
            devices.append(dev)
        return replace(user, devices=tuple(devices))

    def _devices_changed(self, before: User | None, after: User | None) -> None:
        """Sidecars learn a change of what they act on by device: digest algorithms (they
        challenge without asking) and trunk sources (they let them in without a challenge).
        A device whose credentials changed or that is gone starts with a clean failure count."""
        for old in before.devices if before is not None else ():
            reg = old.registering
            if reg is not None and (after is None or after.device(old.id) != old):
                self.lockout.forget(reg.digest_username)
        if _sidecar_view(before) == _sidecar_view(after) or self._settings_push is not None:
            return
        # At once, but at most one push per interval: a directory import changes thousands of
        # users one by one, and each push costs a pass over every user for every sidecar.
        loop = asyncio.get_running_loop()
        wait = self._settings_pushed_at + SETTINGS_PUSH_INTERVAL - loop.time()
        if wait <= 0:
            self._push_settings()
        else:
            self._settings_push = loop.call_later(wait, self._push_settings)

    def _push_settings(self) -> None:
        self._settings_push = None
        self._settings_pushed_at = asyncio.get_running_loop().time()
        self.sidecars.broadcast_settings(self.sidecar_settings)

    def trunk_sources(self, sidecar: str) -> tuple[tuple[str, int], ...]:
        out: set[tuple[str, int]] = set()
        for user in self.users.index.by_id.values():
            for dev in user.devices:
                if dev.trunk is not None and dev.trunk.sidecar in ("", sidecar):
                    out.add((dev.trunk.source_network, dev.trunk.source_port))
        return tuple(sorted(out))

    def sidecar_settings(self, sidecar: str) -> SidecarSettings:
        """What `sidecar` is told on connecting and whenever it changes."""
        return SidecarSettings.of(
            self.settings.current,
            sidecar,
            tuple(sorted({*self.trunk_sources(sidecar), *self.trunks.sources(sidecar)})),
            self.users.device_algorithms(),
            trunks=tuple(
                t for t in self.trunk_store.all() if t.sidecar == sidecar and not t.disabled
            ),
        )

    # --- subscriptions (BLF) -------------------------------------------------------------------

    def _sidecars_of(self, user_id: str) -> set[str]:
        return {b.sidecar for b in self.bindings.for_user(user_id)}

    def subscribe(
        self, inp: SubscribeInput, creds: Credentials | None, watcher_ref: str
    ) -> SubscribeDecision:
        """A handset's SUBSCRIBE: a new one is authenticated like a REGISTER (same digest, same
        lockout); a refresh is decided again (the policy may have changed); an end is noted."""
        if inp.action is Action.END:
            self.subscriptions.remove(inp.sidecar, inp.subscription_id)
            return SubscribeDecision(status=200)
        if inp.action is Action.CREATE:
            if creds is None:
                return SubscribeDecision(status=401, reason="Unauthorized")
            found = self.authenticate(creds, "SUBSCRIBE", inp.source_host)
            if isinstance(found, Refusal):
                return SubscribeDecision(status=401, reason="Unauthorized")
            watcher: User | None = found[0]
        else:
            watcher = self.users.resolve(watcher_ref) if watcher_ref else None
        if watcher is None or watcher.disabled:
            return SubscribeDecision(status=403, reason="Forbidden")
        decision = decide_subscription(
            inp, watcher, self.users.resolve, self._sidecars_of, self.settings.current.sip_domain
        )
        if decision.status == 200:
            self.subscriptions.put(
                HeldSubscription(
                    id=inp.subscription_id,
                    sidecar=inp.sidecar,
                    watcher=watcher.id,
                    event=inp.event,
                    resource_uri=decision.list_uri
                    or (decision.resources[0].sip_uri if decision.resources else ""),
                    users=tuple(u.id for u in decision.resources),
                    expires_at=self.clock() + decision.expires,
                    source_host=inp.source_host,
                    source_port=inp.source_port,
                )
            )
        else:
            self.subscriptions.remove(inp.sidecar, inp.subscription_id)
        return decision

    def reannounced(self, sidecar: str, held: list[HeldSubscription]) -> list[str]:
        """A sidecar's subscriptions after it (re)connected its state watch: those still
        allowed are registered; the ids of the others are returned for the sidecar to end."""
        kept: list[HeldSubscription] = []
        revoked: list[str] = []
        for h in held:
            watcher = self.users.get(h.watcher)
            watched = [self.users.get(uid) for uid in h.users]
            if (
                watcher is None
                or watcher.disabled
                or any(
                    u is None or not may_watch(watcher, u, sidecar, self._sidecars_of)
                    for u in watched
                )
            ):
                revoked.append(h.id)
            else:
                kept.append(h)
        self.subscriptions.replace_sidecar(sidecar, kept)
        return revoked

    def user_state(self, user_id: str) -> UserStateView:
        """What a watcher of the user sees: effective presence and the user's live calls."""
        effective = self.presence.effective(user_id)
        dialogs = tuple(
            d
            for call in self.calls.live()
            if (d := dialog_of(call, user_id, self.users.get)) is not None
        )
        return UserStateView(
            user_id=user_id,
            availability=effective.availability,
            note=effective.note or "",
            dialogs=dialogs,
        )

    # --- logins --------------------------------------------------------------------------------

    def authenticate(
        self, creds: Credentials, method: str, source_host: str
    ) -> tuple[User, Device] | Refusal:
        """Verify credentials the sidecar forwarded, with account lockout: an account whose
        digest is locked is heard only from the sources where it is registered."""
        now = self.clock()
        lockout = self.lockout
        found = self.users.by_digest_username(creds.username)
        try:
            if (
                found is not None
                and lockout.locked(creds.username, now)
                and not any(
                    b.device_id == found[1].id and b.source_host == source_host
                    for b in self.bindings.for_user(found[0].id)
                )
            ):
                waste_verification(creds, method)
                result: tuple[User, Device] | Refusal = Refusal.LOCKED
            else:
                result = authenticate(self.users, creds, self.settings.current.realm, method)
        except DigestError:
            result = Refusal.WRONG_PASSWORD
        if not isinstance(result, Refusal):
            return result
        self.metrics.auth_failures.add(1, {"reason": result.value})
        if result is Refusal.ALGORITHM and found is not None:
            reg = found[1].registering
            allowed = ", ".join(a.value for a in reg.digest_algorithms) if reg else ""
            self._refusals.note(
                source_host,
                result.value,
                now,
                lambda: (
                    f"{printable(creds.username)} from {source_host} answered with "
                    f"{creds.algorithm.value}, but its device allows only {allowed}: refused"
                ),
            )
        if found is not None and result is not Refusal.LOCKED:
            lock = lockout.failed(creds.username, source_host, now)
            if lock is not None:
                self._locked(lock)
        return result

    def _locked(self, lock: AccountLock) -> None:
        self.metrics.account_locks.add(1)
        _auth_log.warning(
            "account %s locked for %g s: %s; only the sources where it is registered are heard",
            printable(lock.user),
            lock.until - lock.start,
            lock.reason,
        )

    def lift_lock(self, user: str) -> AccountLock | None:
        lifted = self.lockout.lift(user)
        if lifted is not None:
            _auth_log.warning("lock of account %s lifted by an operator", printable(user))
        return lifted

    # --- contacts and the handsets' digest outside SIP -----------------------------------------

    async def change_contacts(
        self,
        created: list[Contact] | None = None,
        updated: list[Contact] | None = None,
        deleted: list[Contact] | None = None,
    ) -> None:
        await self.contacts.apply(created or [], updated or [], deleted or [])
        self.phonebook.changed()

    def verify_digest(self, credentials: Credentials, method: str, source_host: str) -> bool:
        """Whether `credentials` (from an HTTP request, e.g. a phonebook fetch) prove an
        enabled user's registering device: the REGISTER path's check (`authenticate`: the
        same HA1, device algorithms, failure counting and account lockout)."""
        found = self.authenticate(credentials, method, source_host)
        return not isinstance(found, Refusal) and not found[0].disabled

    # --- registrations -------------------------------------------------------------------------

    async def register(self, inp: RegisterInput) -> tuple[RegisterDecision, list[Binding]]:
        settings = self.settings.current
        found = self.authenticate(inp.credentials, "REGISTER", inp.source.host)
        existing = self.bindings.for_user(found[0].id) if not isinstance(found, Refusal) else []
        decision = decide(inp, found, existing, settings, self.clock())
        self.metrics.register_outcomes.add(1, {"outcome": decision.outcome.value})
        if decision.outcome is not Outcome.OK or decision.user is None:
            return decision, []
        before = {b.id for b in existing}
        await self.bindings.apply(decision.upserts, decision.removals)
        for b in decision.removals:
            self._binding_event(BindingChange("removed", b, "unregistered"))
        for b in decision.upserts:
            self._binding_event(
                BindingChange("refreshed" if b.id in before else "added", b, "registered")
            )
        await self._bindings_changed(decision.user.id)
        return decision, self.bindings.for_user(decision.user.id)

    async def remove_bindings(self, bindings: list[Binding], reason: str) -> int:
        if not bindings:
            return 0
        await self.bindings.apply([], bindings)
        for b in bindings:
            self._binding_event(BindingChange("removed", b, reason))
        for uid in sorted({b.user_id for b in bindings}):
            if self.users.get(uid) is not None:
                await self._bindings_changed(uid)
        return len(bindings)

    async def _bindings_changed(self, user_id: str) -> None:
        count = self.bindings.count_user(user_id)
        await self.presence.update(
            user_id, lambda rec, now: self.presence.engine.on_bindings(rec, count, now)
        )

    def _binding_event(self, change: BindingChange) -> None:
        for q in list(self._binding_watchers):
            if not q.offer(change):
                self._binding_watchers.discard(q)  # cut off: it stopped reading

    def watch_bindings(self, limit: int = WATCH_QUEUE_LIMIT) -> WatchQueue[BindingChange]:
        q: WatchQueue[BindingChange] = WatchQueue(limit)
        self._binding_watchers.add(q)
        return q

    def unwatch_bindings(self, q: WatchQueue[BindingChange]) -> None:
        self._binding_watchers.discard(q)

    # --- presence ------------------------------------------------------------------------------

    async def set_presence(
        self,
        user: User,
        availability: Availability,
        source: Source,
        expires_at: float | None,
        note: str | None,
        origin: str | None = None,
    ) -> PresenceChange | None:
        if availability is Availability.DO_NOT_DISTURB and not user.settings.dnd_allowed:
            raise FailedPrecondition(
                f"{user.name} may not set do-not-disturb (settings.dnd_allowed is false)",
                subject=user.name,
                kind="DND_NOT_ALLOWED",
            )
        engine = self.presence.engine
        if source is Source.EXTERNAL:
            return await self.presence.update(
                user.id,
                lambda r, now: engine.set_external(
                    r, availability, now, expires_at=expires_at, note=note, origin=origin
                ),
            )
        return await self.presence.update(
            user.id,
            lambda r, now: engine.set_manual(
                r, availability, now, expires_at=expires_at, note=note
            ),
        )

    async def clear_presence(
        self, user: User, source: Source, origin: str | None = None
    ) -> PresenceChange | None:
        engine = self.presence.engine
        # Clearing also drops calls that no longer exist from the user's presence.
        self.calls.reconcile_presence((user.id,))
        return await self.presence.update(
            user.id, lambda r, now: engine.clear(r, source, now, origin)
        )

    async def clear_external_presence_from(self, origin: str) -> int:
        """Clear every EXTERNAL state ``origin`` (a connector being deleted) reported."""
        users = [
            uid
            for uid, record in list(self.presence.records.items())
            if record.external is not None and record.external.origin == origin
        ]
        engine = self.presence.engine
        for uid in users:
            await self.presence.update(
                uid, lambda r, now: engine.clear(r, Source.EXTERNAL, now, origin)
            )
        return len(users)

    def _presence_changed(self, change: PresenceChange) -> None:
        self.metrics.presence_changes.add(1, {"availability": change.current.availability.value})

    # --- settings ------------------------------------------------------------------------------

    async def update_settings(self, new: ServerSettings) -> ServerSettings:
        old = self.settings.current
        saved = await self.settings.save(new)
        self.lockout.policy = _lockout_policy(saved)
        self.messages.configure(saved)
        if saved.realm != old.realm:
            log.warning(
                "realm changed from %r to %r: every handset password must be set again",
                old.realm,
                saved.realm,
            )
        if saved.upstream_trunk != old.upstream_trunk:
            await self.adopt_upstream_trunk()
        return saved

    async def adopt_upstream_trunk(self) -> Trunk | None:
        """The `upstream_trunk` setting of earlier versions, kept as the trunk `upstream`.

        When the setting is enabled it writes that trunk (created on first use, its address,
        sidecar and pattern changed with the setting); disabling it disables the trunk. Other
        trunk fields set through TrunkService stay as they are.
        """
        legacy = self.settings.current.upstream_trunk
        store = self.trunk_store
        existing = store.get(UPSTREAM_ID)
        if not legacy.enabled or not legacy.address:
            if existing is not None and not existing.disabled and legacy.address:
                return await store.save(replace(existing, disabled=True, update_time=self.clock()))
            return existing
        host, _, port = legacy.address.rpartition(":")
        now = self.clock()
        fields = {
            "address": host.strip("[]"),
            "port": int(port) if port.isdigit() else 0,
            "sidecar": legacy.sidecar,
            "outbound_pattern": legacy.allowed_pattern,
            "disabled": False,
        }
        if existing is None:
            trunk = Trunk(
                id=UPSTREAM_ID,
                display_name="upstream trunk (from the upstream_trunk setting)",
                create_time=now,
                update_time=now,
                **fields,  # type: ignore[arg-type]
            )
            log.info("upstream_trunk setting kept as trunks/%s", UPSTREAM_ID)
            return await store.create(trunk)
        if all(getattr(existing, k) == v for k, v in fields.items()):
            return existing
        return await store.save(replace(existing, update_time=now, **fields))  # type: ignore[arg-type]

    # --- what the metrics observe ---------------------------------------------------------------

    def user_count(self) -> int:
        return self.users.count()

    def binding_count(self) -> int:
        return len(self.bindings.by_id)

    def active_call_count(self) -> int:
        return self.calls.active_count()

    def trunk_states(self) -> list[tuple[str, bool, bool]]:
        out = []
        for trunk in self.trunk_store.all():
            if trunk.disabled:
                continue
            health = self.trunks.health(trunk)
            out.append(
                (
                    trunk.id,
                    health.state is Reachability.UP,
                    health.registration is Registration.REGISTERED,
                )
            )
        return out

    def connected_sidecar_count(self) -> int:
        return self.sidecars.connected_count()

    # --- background ----------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Expire bindings, lapse manual presence and connector sessions, end lost sidecars'
        calls and drop their bindings."""
        now = self.clock()
        for connector in self.connector_sessions.lapse(now):
            # No write announces it: its watchers learn here that nothing runs its bridge now.
            self.connectors.touched(connector)
        due = self.bindings.due(now)
        if due:
            await self.remove_bindings(due, "expired")
        await self.presence.expire_due()
        await self.calls.sweep()
        await self.messages.sweep()
        grace = self.settings.current.sidecar_grace_seconds
        gone = self.sidecars.lost_longer_than(grace, now)
        if gone:
            await self.calls.end_calls_on(frozenset(gone))
        for name in gone:
            lost = [b for b in self.bindings.all() if b.sidecar == name]
            if lost:
                log.warning(
                    "sidecar %s lost for %ds: removing its %d bindings", name, grace, len(lost)
                )
                await self.remove_bindings(lost, "sidecar lost")

    async def _sweeper(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(0.25)
            try:
                await self.sweep()
                ticks += 1
                if ticks % 2400 == 0:
                    await self.presence.trim_log()
                    await self.messages.trim()
            except StorageUnavailable:
                pass  # the store says so once; the sweep retries on the next tick
            except Exception:
                log.exception("expiry sweep failed; retrying")


def _lockout_policy(settings: ServerSettings) -> LockoutPolicy:
    return LockoutPolicy(
        threshold=settings.account_failure_threshold,
        window=float(settings.account_failure_window_seconds),
        lock_seconds=float(settings.account_lock_seconds),
    )


def _sidecar_view(user: User | None) -> tuple[tuple[object, ...], ...]:
    """What sidecars know of a user's devices: digest user names with their algorithms, and
    trunk sources."""
    if user is None:
        return ()
    view: list[tuple[object, ...]] = []
    for dev in user.devices:
        if dev.registering is not None and dev.registering.digest_algorithms:
            view.append((dev.registering.digest_username, dev.registering.digest_algorithms))
        if dev.trunk is not None:
            view.append((dev.trunk.source_network, dev.trunk.source_port, dev.trunk.sidecar))
    return tuple(view)
