"""Domain errors of the control plane.

Each error names the response it deserves; the gRPC layer maps them to canonical status codes with
`google.rpc` details in one place (`api.status`), so domain code never imports gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: its path in the request (e.g. ``user.e164``) and why."""

    field: str
    description: str


class ControlError(Exception):
    """Base of the errors that become a gRPC status."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ControlError):
    """One or more fields of a request are malformed (INVALID_ARGUMENT + BadRequest)."""

    def __init__(self, violations: list[FieldViolation] | FieldViolation) -> None:
        items = [violations] if isinstance(violations, FieldViolation) else list(violations)
        text = "; ".join(f"{v.field}: {v.description}" for v in items)
        super().__init__(f"invalid argument: {text}")
        self.violations = items


class NotFound(ControlError):
    """The named resource does not exist (NOT_FOUND + ResourceInfo)."""

    def __init__(self, resource_type: str, name: str) -> None:
        super().__init__(f"{resource_type} {name!r} not found")
        self.resource_type = resource_type
        self.name = name


class AlreadyExists(ControlError):
    """A unique value is taken (ALREADY_EXISTS + BadRequest naming the field)."""

    def __init__(self, field: str, value: str, holder: str) -> None:
        super().__init__(f"{field} {value!r} already exists (held by {holder})")
        self.violation = FieldViolation(field, f"{value!r} is already used by {holder}")


class FailedPrecondition(ControlError):
    """The request is valid but the system is not in a state to carry it out."""

    def __init__(self, message: str, *, subject: str = "", kind: str = "STATE") -> None:
        super().__init__(message)
        self.subject = subject
        self.kind = kind


class PermissionDenied(ControlError):
    """The caller is known but may not do this (PERMISSION_DENIED), e.g. a sidecar's credential
    used for another sidecar or for the admin API."""


class Unauthenticated(ControlError):
    """The caller's credential is missing, unknown or revoked (UNAUTHENTICATED)."""


class StorageUnavailable(ControlError):
    """The database cannot take or give the data: full (RESOURCE_EXHAUSTED, `exhausted`) or
    unreachable, read-only, damaged (UNAVAILABLE). `message` is for people; `cause` is the
    driver's own short text, for the log only."""

    def __init__(self, message: str, *, exhausted: bool = False, cause: str = "") -> None:
        super().__init__(message)
        self.exhausted = exhausted
        self.cause = cause


def check(violations: list[FieldViolation]) -> None:
    """Raise InvalidArgument when any violation was collected."""
    if violations:
        raise InvalidArgument(violations)
