"""UserService."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import grpc
from sip2uc.v1 import users_pb2, users_pb2_grpc

from ..core import ControlCore
from ..domain import Algorithm, Device, DirectoryOrigin, User, UserSettings
from ..errors import FieldViolation, InvalidArgument, check
from .convert import devices_from_pb, settings_from_pb, user_to_pb
from .filters import text_filter
from .paging import decode_token, encode_token, page_size
from .status import unary

Ctx = grpc.aio.ServicerContext[Any, Any]

_SIMPLE_FIELDS = (
    "sip_uri",
    "display_name",
    "extension",
    "e164",
    "email",
    "disabled",
    "entra_object_id",
    "user_principal_name",
)
_SETTINGS_FIELDS = {
    "dnd_allowed",
    "forward_always",
    "forward_busy",
    "forward_no_answer",
    "no_answer_timeout_seconds",
    "call_waiting",
    "buddies",
    "watch_policy",
    "allowed_watchers",
}
#: Entries a buddy list or allow-list may hold (a BLF key field is at most a few dozen keys).
MAX_WATCH_ENTRIES = 200


def _watch_settings(core: ControlCore, settings: UserSettings) -> UserSettings:
    """Buddy list and allowed watchers with every entry resolved to `users/{id}` (so that a
    changed extension does not break them); an entry that names no user is refused."""
    violations: list[FieldViolation] = []
    lists: dict[str, tuple[str, ...]] = {}
    for field_name in ("buddies", "allowed_watchers"):
        entries: list[str] = []
        refs: tuple[str, ...] = getattr(settings, field_name)
        if len(refs) > MAX_WATCH_ENTRIES:
            violations.append(
                FieldViolation(f"user.settings.{field_name}", f"at most {MAX_WATCH_ENTRIES}")
            )
        for i, ref in enumerate(refs):
            found = core.users.resolve(ref)
            if found is None:
                violations.append(
                    FieldViolation(f"user.settings.{field_name}[{i}]", f"no user {ref!r}")
                )
            elif found.name not in entries:
                entries.append(found.name)
        lists[field_name] = tuple(entries)
    check(violations)
    return replace(settings, buddies=lists["buddies"], allowed_watchers=lists["allowed_watchers"])


def _user_from_pb(pb: users_pb2.User) -> tuple[User, dict[int, str]]:
    devices, passwords = devices_from_pb(list(pb.devices), pb.extension)
    user = User(
        id="",
        sip_uri=pb.sip_uri.strip(),
        display_name=pb.display_name.strip(),
        extension=pb.extension.strip(),
        e164=pb.e164.strip(),
        email=pb.email.strip(),
        disabled=pb.disabled,
        devices=devices,
        settings=settings_from_pb(pb.settings)
        if pb.HasField("settings")
        else User(id="", sip_uri="").settings,
        entra_object_id=pb.entra_object_id.strip().lower(),
        user_principal_name=pb.user_principal_name.strip(),
    )
    return user, passwords


def _algorithms(devices: tuple[Device, ...]) -> list[tuple[Algorithm, ...]]:
    return [d.registering.digest_algorithms for d in devices if d.registering is not None]


class UserServicer(users_pb2_grpc.UserServiceServicer):
    def __init__(self, core: ControlCore) -> None:
        self.core = core

    @unary
    async def CreateUser(
        self, request: users_pb2.CreateUserRequest, context: Ctx
    ) -> users_pb2.CreateUserResponse:
        if not request.HasField("user"):
            raise InvalidArgument(FieldViolation("user", "required"))
        user, passwords = _user_from_pb(request.user)
        user = replace(user, settings=_watch_settings(self.core, user.settings))
        if not user.sip_uri and user.extension:
            user = replace(
                user, sip_uri=f"sip:{user.extension}@{self.core.settings.current.sip_domain}"
            )
        created = await self.core.create_user(user, passwords)
        return users_pb2.CreateUserResponse(user=user_to_pb(created))

    @unary
    async def GetUser(
        self, request: users_pb2.GetUserRequest, context: Ctx
    ) -> users_pb2.GetUserResponse:
        return users_pb2.GetUserResponse(user=user_to_pb(self.core.resolve_user(request.name)))

    @unary
    async def ListUsers(
        self, request: users_pb2.ListUsersRequest, context: Ctx
    ) -> users_pb2.ListUsersResponse:
        size = page_size(request.page_size)
        offset = decode_token(request.page_token)
        users = self.core.users.all()
        if request.extension:
            users = [u for u in users if u.extension == request.extension.strip()]
        if request.e164:
            wanted = "+" + "".join(ch for ch in request.e164 if ch.isdigit())
            users = [u for u in users if u.e164 == wanted]
        needle = text_filter(request.filter)
        if needle:
            users = [
                u
                for u in users
                if needle in u.sip_uri.lower()
                or needle in u.display_name.lower()
                or needle in u.extension
                or needle in u.e164
                or needle in u.email.lower()
            ]
        page = users[offset : offset + size]
        next_token = encode_token(offset + size) if offset + size < len(users) else ""
        return users_pb2.ListUsersResponse(
            users=[user_to_pb(u) for u in page], next_page_token=next_token, total_size=len(users)
        )

    @unary
    async def UpdateUser(
        self, request: users_pb2.UpdateUserRequest, context: Ctx
    ) -> users_pb2.UpdateUserResponse:
        if not request.HasField("user"):
            raise InvalidArgument(FieldViolation("user", "required"))
        previous = self.core.resolve_user(request.user.name, "user.name")
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(
                FieldViolation("update_mask", "name at least one field to update")
            )
        given, passwords = _user_from_pb(request.user)
        changes: dict[str, Any] = {}
        settings = previous.settings
        violations: list[FieldViolation] = []
        device_passwords: dict[int, str] = {}
        for path in paths:
            if path in _SIMPLE_FIELDS:
                changes[path] = getattr(given, path)
            elif path == "devices":
                changes["devices"] = given.devices
                device_passwords = passwords
            elif path == "settings":
                settings = given.settings
            elif path.startswith("settings.") and path.split(".", 1)[1] in _SETTINGS_FIELDS:
                key = path.split(".", 1)[1]
                settings = replace(settings, **{key: getattr(given.settings, key)})
            else:
                violations.append(
                    FieldViolation("update_mask", f"unknown or read-only field {path!r}")
                )
        check(violations)
        changes["settings"] = _watch_settings(self.core, settings)
        # Hand edits of imported users are remembered so a re-import does not undo them.
        if previous.origin.source:
            touched = {p.split(".", 1)[0] for p in paths} & {
                "display_name",
                "extension",
                "e164",
                "email",
                "sip_uri",
                "entra_object_id",
                "user_principal_name",
            }
            if "devices" in changes and _algorithms(changes["devices"]) != _algorithms(
                previous.devices
            ):
                touched.add("digest_algorithms")
            if touched:
                merged = tuple(sorted(set(previous.origin.overridden_fields) | touched))
                changes["origin"] = DirectoryOrigin(
                    previous.origin.source,
                    previous.origin.source_id,
                    merged,
                    previous.origin.import_time,
                )
        updated = await self.core.update_user(
            replace(previous, **changes), device_passwords, previous
        )
        return users_pb2.UpdateUserResponse(user=user_to_pb(updated))

    @unary
    async def DeleteUser(
        self, request: users_pb2.DeleteUserRequest, context: Ctx
    ) -> users_pb2.DeleteUserResponse:
        user = self.core.resolve_user(request.name)
        await self.core.delete_user(user)
        return users_pb2.DeleteUserResponse(name=user.name)
