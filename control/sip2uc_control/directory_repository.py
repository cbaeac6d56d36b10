"""The directory import's view of the users store: :class:`ControlCore` behind ``UserRepository``.

The import library plans against :class:`~.directory.ExistingUser` snapshots and writes through
a ``UserRepository``; this module converts both ways so that imported users go through the same
validation, uniqueness checks and HA1 hashing as users created over the API.

An imported user gets one registering device whose digest username is the extension (what
handset keypads are good at), or the user part of the SIP address when there is no extension.
Later imports never touch the devices' credentials: the HA1 values depend on the digest username
(RFC 8760 §3.4.2), so renaming it would silently break the handset's login. A source with a
digest algorithm column or attribute does set the algorithms of every registering device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from .core import ControlCore
from .directory import ExistingUser, NewUser
from .directory.model import FieldValue
from .domain import Algorithm, Device, DirectoryOrigin, RegisteringDevice, User
from .errors import NotFound

#: The device every imported user starts with.
HANDSET_DEVICE_ID = "handset"
HANDSET_LABEL = "imported handset"

#: The library says ``enabled``; the users store says ``disabled``. Overrides recorded under
#: either name protect the same field.
_OVERRIDE_ALIASES = {"disabled": "enabled", "user_principal_name": "upn"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportedCredential:
    """The handset login of a user created by an import; the only copy of the password."""

    user_id: str
    sip_uri: str
    extension: str
    digest_username: str
    password: str = field(repr=False)


def existing_user(user: User) -> ExistingUser:
    """The planner's snapshot of ``user``."""
    return ExistingUser(
        id=user.id,
        sip_uri=user.sip_uri,
        display_name=user.display_name,
        source_id=user.origin.source_id or None,
        source=user.origin.source or None,
        extension=user.extension or None,
        e164=user.e164 or None,
        email=user.email or None,
        upn=user.user_principal_name or None,
        entra_object_id=user.entra_object_id or None,
        overridden=frozenset(
            _OVERRIDE_ALIASES.get(name, name) for name in user.origin.overridden_fields
        ),
        enabled=not user.disabled,
        digest_algorithms=_algorithms_text(user),
    )


def _algorithms_text(user: User) -> str | None:
    """The algorithms of the user's first registering device, as a source writes them."""
    for device in user.devices:
        if device.registering is not None:
            return " ".join(a.value for a in device.registering.digest_algorithms)
    return None


def _algorithms(text: str | None) -> tuple[Algorithm, ...]:
    return tuple(Algorithm.parse(name) for name in (text or "").split())


def existing_users(users: Iterable[User]) -> list[ExistingUser]:
    return [existing_user(u) for u in users]


def digest_username_for(extension: str | None, sip_uri: str) -> str:
    """The extension, else the SIP alias (the user part of ``sip:alias@host``)."""
    if extension:
        return extension
    return sip_uri.split(":", 1)[1].split("@", 1)[0]


def imported_user(new: NewUser, source: str, import_time: float) -> User:
    """The domain user an import creates for ``new`` (without id, hashes or timestamps)."""
    return User(
        id="",
        sip_uri=new.sip_uri,
        display_name=new.display_name,
        extension=new.extension or "",
        e164=new.e164 or "",
        email=new.email or "",
        user_principal_name=new.upn or "",
        entra_object_id=new.entra_object_id or "",
        devices=(
            Device(
                id=HANDSET_DEVICE_ID,
                label=HANDSET_LABEL,
                registering=RegisteringDevice(
                    digest_username=digest_username_for(new.extension, new.sip_uri),
                    digest_algorithms=_algorithms(new.digest_algorithms),
                ),
            ),
        ),
        origin=DirectoryOrigin(source=source, source_id=new.source_id, import_time=import_time),
    )


class CoreUserRepository:
    """``directory.UserRepository`` on top of :class:`ControlCore`.

    ``source`` is stored as the users' :class:`DirectoryOrigin` source when the plan names none
    (an origin with a source is what marks a user as imported, see ``UserService.UpdateUser``).
    ``on_created`` is told each new user's credentials right after the user is saved, so they
    can be handed out while the import is still running; nothing here keeps them.
    """

    def __init__(
        self,
        core: ControlCore,
        source: str,
        on_created: Callable[[ImportedCredential], None] | None = None,
    ) -> None:
        self.core = core
        self.source = source
        self.on_created = on_created

    async def create_user(self, user: NewUser, handset_password: str) -> str:
        domain_user = imported_user(user, user.source or self.source, self.core.clock())
        saved = await self.core.create_user(domain_user, {0: handset_password})
        if self.on_created is not None:
            registering = saved.devices[0].registering
            assert registering is not None
            self.on_created(
                ImportedCredential(
                    user_id=saved.id,
                    sip_uri=saved.sip_uri,
                    extension=saved.extension,
                    digest_username=registering.digest_username,
                    password=handset_password,
                )
            )
        return saved.id

    async def update_user(self, user_id: str, changes: Mapping[str, FieldValue]) -> None:
        previous = self._require(user_id)
        overridden = {_OVERRIDE_ALIASES.get(n, n) for n in previous.origin.overridden_fields}
        values: dict[str, object] = {}
        origin = previous.origin
        for name, value in changes.items():
            if name in overridden:
                continue  # set by hand: the planner keeps it, and so does the store
            if name in ("sip_uri", "display_name", "e164", "extension", "email"):
                values[name] = _text(name, value)
            elif name == "upn":
                values["user_principal_name"] = _text(name, value)
            elif name == "entra_object_id":
                values["entra_object_id"] = _text(name, value)
            elif name == "enabled":
                if not isinstance(value, bool):
                    raise TypeError("enabled must be a bool")
                values["disabled"] = not value
            elif name == "digest_algorithms":
                chosen = _algorithms(_text(name, value))
                values["devices"] = tuple(
                    replace(d, registering=replace(d.registering, digest_algorithms=chosen))
                    if d.registering is not None
                    else d
                    for d in previous.devices
                )
            elif name == "source_id":
                origin = replace(origin, source_id=_text(name, value))
            elif name == "source":
                origin = replace(origin, source=_text(name, value) or self.source)
            else:
                raise KeyError(f"unknown field {name!r}")
        if not origin.source:
            origin = replace(origin, source=self.source)
        values["origin"] = replace(origin, import_time=self.core.clock())
        await self.core.update_user(previous.with_changes(**values), {}, previous)

    async def disable_user(self, user_id: str) -> None:
        previous = self._require(user_id)
        await self.core.update_user(replace(previous, disabled=True), {}, previous)

    async def delete_user(self, user_id: str) -> None:
        await self.core.delete_user(self._require(user_id))

    def _require(self, user_id: str) -> User:
        user = self.core.users.get(user_id)
        if user is None:
            raise NotFound("user", f"users/{user_id}")
        return user


def _text(name: str, value: FieldValue) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string")
    return value
