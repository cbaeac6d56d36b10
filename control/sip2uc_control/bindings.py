"""Registration bindings (RFC 3261 §10): where a user's handset can be reached, until when.

The registrar decides them, `store/bindings.py` keeps them, routing rings them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sip2uc_core.sip.contact import Contact


@dataclass(frozen=True)
class Binding:
    id: str
    user_id: str
    device_id: str
    aor: str
    contact_uri: str
    source_host: str
    source_port: int
    transport: str
    sidecar: str
    user_agent: str
    q_milli: int
    call_id: str
    cseq: int
    instance_id: str
    expire_time: float
    create_time: float
    refresh_time: float

    @property
    def name(self) -> str:
        return f"registrations/{self.id}"

    def same_contact(self, contact: Contact) -> bool:
        """RFC 5626 §6: an instance id identifies the binding; otherwise the contact URI does."""
        if contact.instance_id and self.instance_id:
            return contact.instance_id == self.instance_id
        return contact.uri == self.contact_uri

    def contact(self, now: float) -> Contact:
        """The binding as a 200 to REGISTER lists it, with its remaining lifetime in whole
        seconds (RFC 3261 §10.3 step 8)."""
        return Contact(
            self.contact_uri,
            max(0, int(self.expire_time - now + 0.5)),
            self.q_milli,
            self.instance_id,
        )

    def with_changes(self, **changes: Any) -> Binding:
        return replace(self, **changes)


@dataclass(frozen=True)
class BindingChange:
    kind: str  # "added" | "refreshed" | "removed"
    binding: Binding
    reason: str
