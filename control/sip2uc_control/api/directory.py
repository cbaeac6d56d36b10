"""DirectoryService: users from LDAP/Active Directory or a CSV export, through the import library.

The request is checked first (a bad one changes nothing), the source is read in a worker thread
(ldap3 blocks; parsing thousands of numbers is CPU work too), the plan is built against the users
as they are now, and, unless it is a dry run, applied through :class:`CoreUserRepository`. One
import runs at a time: a plan is only valid against the snapshot it was built from.

Generated handset passwords travel once, in ``ProvisioningCredential`` messages sent as soon as
each user is saved, so an interrupted stream loses as few as possible. They are never logged and
the store keeps only HA1 values.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import phonenumbers
from ldap3.core.exceptions import LDAPException
from ldap3.operation.search import parse_filter
from sip2uc.v1 import directory_pb2, directory_pb2_grpc

from ..core import ControlCore
from ..directory import (
    DEFAULT_FILTER,
    ApplyResult,
    CsvSourceError,
    ExistingUser,
    ImportPlan,
    LdapAttributeMap,
    LdapSourceConfig,
    LdapSourceError,
    MissingPolicy,
    NewUser,
    NumberPolicy,
    PlanAction,
    PlanItem,
    RowError,
    SourceRecord,
    apply_plan,
    build_plan,
    fetch_ldap_records,
    read_csv,
)
from ..directory.csv_source import DEFAULT_COLUMNS, FIELDS
from ..directory_repository import (
    CoreUserRepository,
    ImportedCredential,
    existing_users,
    imported_user,
)
from ..domain import UPN_RE, validate_user_fields
from ..errors import FailedPrecondition, FieldViolation, InvalidArgument, check
from .status import streaming

log = logging.getLogger(__name__)

Ctx = grpc.aio.ServicerContext[Any, Any]
Response = directory_pb2.ImportUsersResponse

#: The source users imported from CSV files carry (``DirectoryOrigin.source``) is ``csv:NAME``;
#: users imported before CSV sources were named carry ``csv`` and are adopted by named ones.
CSV_SOURCE = "csv"
MAX_SOURCE_NAME = 128
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 100_000
LDAP_TIMEOUT_SECONDS = 30.0
#: At most about this many progress messages while applying, whatever the size of the import.
PROGRESS_STEPS = 100

_ACTIONS = {
    PlanAction.CREATE: directory_pb2.IMPORT_ACTION_CREATE,
    PlanAction.UPDATE: directory_pb2.IMPORT_ACTION_UPDATE,
    PlanAction.UNCHANGED: directory_pb2.IMPORT_ACTION_UNCHANGED,
    PlanAction.SKIP: directory_pb2.IMPORT_ACTION_SKIP,
    PlanAction.CONFLICT: directory_pb2.IMPORT_ACTION_CONFLICT,
    PlanAction.MISSING: directory_pb2.IMPORT_ACTION_MISSING,
}

# Attribute names callers may remap: LdapAttributeMap's fields, "ids" as a comma list.
_LDAP_ATTRIBUTE_KEYS = frozenset(f.name for f in dataclasses.fields(LdapAttributeMap))


@dataclass(frozen=True, slots=True)
class _Job:
    """A validated request: how to read the source and how to plan."""

    source: str
    kind: str  # "csv" or "ldap"
    read: Callable[[], list[SourceRecord]]
    extension_digits: int
    disable_missing: bool
    delete_missing: bool
    dry_run: bool
    #: Sources whose users this one takes over when it lists them (never reports missing).
    adopts: frozenset[str] = frozenset()


class DirectoryServicer(directory_pb2_grpc.DirectoryServiceServicer):
    def __init__(self, core: ControlCore) -> None:
        self.core = core
        self._lock = asyncio.Lock()

    @streaming
    async def ImportUsers(
        self, request: directory_pb2.ImportUsersRequest, context: Ctx
    ) -> AsyncIterator[Response]:
        job = self._job(request)
        async with self._lock:
            yield _progress("reading")
            try:
                raw = await asyncio.to_thread(job.read)
            except CsvSourceError as exc:
                raise InvalidArgument(FieldViolation("csv.content", str(exc))) from None
            except LdapSourceError as exc:
                raise FailedPrecondition(
                    str(exc), subject="ldap.url", kind="DIRECTORY_UNREADABLE"
                ) from None
            yield _progress("planning", read=len(raw), total=len(raw))
            users = existing_users(self.core.users.all())
            source_ids = {u.id: u.source_id or "" for u in users}
            # Planning is pure but takes a while for large directories: keep the loop free for
            # registrations. It works on the snapshot just taken.
            records, plan = await asyncio.to_thread(_plan, raw, users, job)
            result: ApplyResult | None = None
            if not job.dry_run:
                applying = _Application(self.core, plan, job.source, len(records))
                yield _progress("applying", read=len(records), total=applying.total)
                applying.start()
                # The loop and its cleanup stay in this frame, inside the lock: a nested
                # generator would be closed only when collected, after the lock is released.
                try:
                    while (event := await applying.next_event()) is not None:
                        yield event
                    result = await applying.finish()
                finally:
                    await applying.stop()
            outcomes = _outcomes(plan, records, job.kind, result, source_ids)
            for outcome in outcomes:
                yield Response(row=outcome)
            tally = Counter(outcome.action for outcome in outcomes)
            counts = {  # in the enum's order, which is the order reports read best in
                directory_pb2.ImportAction.Name(action): tally[action]
                for action in directory_pb2.ImportAction.values()
                if tally[action]
            }
            failed = len(result.failed) if result is not None else 0
            log.info(
                "directory import from %s: %s; %s",
                job.source,
                plan.summary(),
                result.summary() if result is not None else "dry run",
            )
            yield Response(
                summary=directory_pb2.ImportSummary(
                    counts=counts, applied=result is not None, failed=failed
                )
            )

    # --- request validation ------------------------------------------------------------------

    def _job(self, request: directory_pb2.ImportUsersRequest) -> _Job:
        violations: list[FieldViolation] = []
        region = request.default_region.strip().upper() or self.core.settings.current.default_region
        if region and region not in phonenumbers.SUPPORTED_REGIONS:
            violations.append(
                FieldViolation("default_region", f"{region!r} is not a region code like DE")
            )
        digits = request.extension_digits
        if digits > 15:
            violations.append(FieldViolation("extension_digits", "must be 0-15"))
        policy = NumberPolicy(default_region=region.upper() or None)
        kind = request.WhichOneof("source")
        read: Callable[[], list[SourceRecord]] | None = None
        source = ""
        adopts: frozenset[str] = frozenset()
        if kind == "csv":
            read = _csv_reader(request.csv, policy, violations)
            name = csv_source_name(request.csv, violations)
            source = f"{CSV_SOURCE}:{name}" if name else CSV_SOURCE
            adopts = frozenset({CSV_SOURCE}) if name else frozenset()
        elif kind == "ldap":
            read = _ldap_reader(request.ldap, policy, violations)
            # The base DN names a directory; host and scheme change with failover and TLS setup.
            source = f"ldap:{request.ldap.base_dn.strip().lower()}"
        else:
            violations.append(FieldViolation("source", "required: ldap or csv"))
        check(violations)
        assert read is not None and kind is not None
        missing = request.missing_users
        return _Job(
            source=source,
            kind=kind,
            read=read,
            extension_digits=digits,
            disable_missing=missing == directory_pb2.MISSING_USER_ACTION_DISABLE,
            delete_missing=missing == directory_pb2.MISSING_USER_ACTION_DELETE,
            dry_run=request.dry_run,
            adopts=adopts,
        )


def csv_source_name(csv: directory_pb2.CsvSource, violations: list[FieldViolation]) -> str:
    """The CSV source's name: as given, else the file name (without directories); "" when the
    request has neither (the unnamed source of earlier versions)."""
    given = csv.source.strip()
    name = given or csv.filename.strip().replace("\\", "/").rsplit("/", 1)[-1]
    if len(name) > MAX_SOURCE_NAME or not name.isprintable():
        violations.append(
            FieldViolation(
                "csv.source" if given else "csv.filename",
                f"a source name is 1-{MAX_SOURCE_NAME} printable characters",
            )
        )
    return name


def _csv_reader(
    csv: directory_pb2.CsvSource, policy: NumberPolicy, violations: list[FieldViolation]
) -> Callable[[], list[SourceRecord]]:
    try:
        text = csv.content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        violations.append(FieldViolation("csv.content", f"the file is not UTF-8: {exc.reason}"))
        text = ""
    if not text.strip() and not violations:
        violations.append(FieldViolation("csv.content", "empty: a header line is required"))
    # The request maps our column names to the file's; the library wants file header -> field.
    ours = dict(DEFAULT_COLUMNS)
    columns: dict[str, str] = {}
    for name, header in csv.column_map.items():
        field = ours.get(name.strip().lower())
        if field is None:
            violations.append(
                FieldViolation(
                    f"csv.column_map[{name}]",
                    f"unknown column; one of {', '.join(sorted(FIELDS | {'e164'}))}",
                )
            )
        elif not header.strip():
            violations.append(FieldViolation(f"csv.column_map[{name}]", "names no column"))
        else:
            columns[header] = field

    def read() -> list[SourceRecord]:
        return list(read_csv(StringIO(text, newline=""), policy, columns=columns))

    return read


def _ldap_reader(
    ldap: directory_pb2.LdapSource, policy: NumberPolicy, violations: list[FieldViolation]
) -> Callable[[], list[SourceRecord]]:
    before = len(violations)
    attributes: dict[str, Any] = {}
    for key, value in ldap.attribute_map.items():
        if key not in _LDAP_ATTRIBUTE_KEYS:
            violations.append(
                FieldViolation(
                    f"ldap.attribute_map[{key}]",
                    f"unknown; one of {', '.join(sorted(_LDAP_ATTRIBUTE_KEYS))}",
                )
            )
        elif key == "ids":
            attributes[key] = tuple(v.strip() for v in value.split(",") if v.strip())
        else:
            attributes[key] = value.strip()
    config = ldap_config(ldap, policy, violations, default_filter=DEFAULT_FILTER)
    if config is None or len(violations) > before:
        return _refused
    config = dataclasses.replace(config, attributes=LdapAttributeMap(**attributes))

    def read() -> list[SourceRecord]:
        with ca_file_for(ldap.ca_pem, config) as readable:
            return list(fetch_ldap_records(readable))

    return read


def ldap_config(
    ldap: directory_pb2.LdapSource,
    policy: NumberPolicy,
    violations: list[FieldViolation],
    *,
    default_filter: str,
) -> LdapSourceConfig | None:
    """The connection and search of an `LdapSource` (without attribute names), checked; None
    with `violations` added when it cannot be used."""
    before = len(violations)
    url = ldap.url.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        parts, host = urlsplit(""), None
    if parts.scheme not in ("ldap", "ldaps") or not host:
        violations.append(FieldViolation("ldap.url", "must be ldaps://host[:port] or ldap://host"))
    plain = ldap.allow_plain and parts.scheme == "ldap"
    if plain and host and not _is_loopback(host):
        # RFC 4513 §5.1.2: a simple bind sends the password as is; only loopback stays local.
        violations.append(
            FieldViolation(
                "ldap.allow_plain",
                f"plain LDAP to {host} would send the bind password in clear: "
                "only a loopback host may skip StartTLS",
            )
        )
    if not ldap.base_dn.strip():
        violations.append(FieldViolation("ldap.base_dn", "required, like dc=example,dc=com"))
    search_filter = ldap.filter.strip() or default_filter
    try:
        parse_filter(search_filter, None, True, True, None, False)
    except LDAPException:
        violations.append(FieldViolation("ldap.filter", "not an RFC 4515 search filter"))
    page_size = ldap.page_size or DEFAULT_PAGE_SIZE
    if page_size > MAX_PAGE_SIZE:
        violations.append(FieldViolation("ldap.page_size", f"must be at most {MAX_PAGE_SIZE}"))
    ca_pem = ldap.ca_pem
    if ca_pem.strip() and "-----BEGIN CERTIFICATE-----" not in ca_pem:
        violations.append(FieldViolation("ldap.ca_pem", "must hold PEM CA certificates"))
    if len(violations) > before:
        return None
    try:
        return LdapSourceConfig(
            url=url,
            base_dn=ldap.base_dn.strip(),
            bind_dn=ldap.bind_dn.strip() or None,
            password=ldap.bind_password or None,
            search_filter=search_filter,
            start_tls=not plain,
            allow_plain=False,  # plain is only ever loopback, checked above
            verify=not ldap.insecure_skip_verify,
            page_size=page_size,
            timeout=LDAP_TIMEOUT_SECONDS,
            numbers=policy,
        )
    except LdapSourceError as exc:
        violations.append(FieldViolation("ldap", str(exc)))
        return None


@contextlib.contextmanager
def ca_file_for(ca_pem: str, config: LdapSourceConfig) -> Iterator[LdapSourceConfig]:
    """`config` reading its CA certificates from a file that lives only while it is used
    (ldap3 takes them from a file)."""
    if not ca_pem.strip():
        yield config
        return
    with tempfile.TemporaryDirectory(prefix="sip2uc-ldap-") as folder:
        ca_file = Path(folder) / "ca.pem"
        ca_file.write_text(ca_pem, encoding="utf-8")
        yield dataclasses.replace(config, ca_file=str(ca_file))


def _refused() -> list[SourceRecord]:
    raise AssertionError("a refused request is never read")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _plan(
    raw: list[SourceRecord], users: list[ExistingUser], job: _Job
) -> tuple[list[SourceRecord], ImportPlan]:
    records = [_fit_to_store(r, job.extension_digits) for r in raw]
    plan = build_plan(
        records,
        users,
        source=job.source,
        disable_missing=job.disable_missing,
        delete_missing=job.delete_missing,
        adopts=job.adopts,
    )
    return records, plan


# --- fitting records to the users store -------------------------------------------------------


def _fit_to_store(record: SourceRecord, extension_digits: int) -> SourceRecord:
    """Bring an entry to what the users store holds, or report why it cannot be stored.

    The store is stricter than the directory rules about extensions and display names: a row it
    would refuse is reported as skipped before planning, so a dry run shows it too. A UPN the
    store would refuse is dropped instead (the user is still imported; only the Teams connector
    needs it, and it can map by Entra object id).
    """
    if isinstance(record, RowError):
        return record
    entry = record
    if entry.upn is not None and not UPN_RE.match(entry.upn):
        entry = dataclasses.replace(entry, upn=None)
    if entry.extension is None and extension_digits and entry.e164:
        entry = dataclasses.replace(entry, extension=entry.e164[-extension_digits:])
    if entry.disabled:
        return entry
    candidate = imported_user(
        NewUser(
            sip_uri=entry.sip_uri,
            display_name=entry.display_name,
            source_id=entry.source_id,
            e164=entry.e164,
            extension=entry.extension,
            email=entry.email,
            upn=entry.upn,
            entra_object_id=entry.entra_object_id,
        ),
        source="",
        import_time=0.0,
    )
    violations = validate_user_fields(candidate, prefix="")
    if not violations:
        return entry
    message = "; ".join(
        f"{v.field.removeprefix('.').replace('devices[0].registering.', '')}: {v.description}"
        for v in violations
    )
    return RowError(
        origin=entry.origin, message=message, source_id=entry.source_id, sip_uri=entry.sip_uri
    )


# --- applying ---------------------------------------------------------------------------------


class _Application:
    """Applies a plan in a task, turning its progress and new credentials into messages."""

    def __init__(self, core: ControlCore, plan: ImportPlan, source: str, rows_read: int) -> None:
        self.plan = plan
        self.rows_read = rows_read
        self.events: asyncio.Queue[Response | None] = asyncio.Queue()
        self.repo = _StoppableRepository(core, source, self._created)
        self.total = sum(1 for item in plan.items if _applies(item, plan))
        self.step = max(1, self.total // PROGRESS_STEPS)
        self.result: ApplyResult | None = None
        self.task: asyncio.Task[ApplyResult]

    def _created(self, credential: ImportedCredential) -> None:
        self.events.put_nowait(
            Response(
                credential=directory_pb2.ProvisioningCredential(
                    user=f"users/{credential.user_id}",
                    sip_uri=credential.sip_uri,
                    extension=credential.extension,
                    digest_username=credential.digest_username,
                    password=credential.password,
                )
            )
        )

    def _progress(self, done: int, total: int, item: PlanItem) -> None:
        if done == total or done % self.step == 0:
            self.events.put_nowait(
                _progress("applying", read=self.rows_read, done=done, total=total)
            )

    def start(self) -> None:
        self.task = asyncio.create_task(apply_plan(self.plan, self.repo, progress=self._progress))
        self.task.add_done_callback(lambda _: self.events.put_nowait(None))

    async def next_event(self) -> Response | None:
        """A progress or credential message; ``None`` once the plan is applied."""
        return await self.events.get()

    async def finish(self) -> ApplyResult:
        self.result = await self.task
        return self.result

    async def stop(self) -> None:
        """Called however the stream ends; after a caller went away, wind the import down."""
        if self.result is not None:
            return
        if not self.task.done():
            # Cancelling inside a store write could leave the store's index behind its
            # database, so the rows not yet applied are refused instead.
            self.repo.stopped = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self.task)
        if self.task.done() and not self.task.cancelled():
            # Credentials not yet sent are lost with the stream: say how far it got.
            log.warning(
                "directory import left by its caller: %s (refused rows count as failed)",
                self.task.result().summary(),
            )


class ImportStopped(Exception):
    """The import's caller went away; rows not yet applied are left alone."""


class _StoppableRepository(CoreUserRepository):
    stopped = False

    async def create_user(self, user: NewUser, handset_password: str) -> str:
        if self.stopped:
            raise ImportStopped("import cancelled")
        return await super().create_user(user, handset_password)

    async def update_user(self, user_id: str, changes: Mapping[str, Any]) -> None:
        if self.stopped:
            raise ImportStopped("import cancelled")
        await super().update_user(user_id, changes)

    async def disable_user(self, user_id: str) -> None:
        if self.stopped:
            raise ImportStopped("import cancelled")
        await super().disable_user(user_id)

    async def delete_user(self, user_id: str) -> None:
        if self.stopped:
            raise ImportStopped("import cancelled")
        await super().delete_user(user_id)


def _applies(item: PlanItem, plan: ImportPlan) -> bool:
    """Whether applying ``plan`` writes ``item`` (mirrors the library's rules)."""
    if item.action in (PlanAction.CREATE, PlanAction.UPDATE):
        return True
    if item.action is PlanAction.MISSING:
        policy = plan.missing_policy
        return policy is MissingPolicy.DELETE or (
            policy is MissingPolicy.DISABLE and "enabled" in item.changes
        )
    return False


# --- messages ---------------------------------------------------------------------------------


def _progress(phase: str, *, read: int = 0, done: int = 0, total: int = 0) -> Response:
    return Response(
        progress=directory_pb2.ImportProgress(
            rows_read=read, rows_done=done, rows_total=total, phase=phase
        )
    )


def _row_numbers(records: Sequence[SourceRecord], kind: str) -> dict[str, int]:
    """Origin -> 1-based row: the CSV line number, or the LDAP entry's ordinal."""
    rows: dict[str, int] = {}
    for ordinal, record in enumerate(records, start=1):
        origin = record.origin
        if kind == "csv":
            number = origin.removeprefix("row ")
            rows[origin] = int(number) if number.isdigit() else ordinal
        else:
            rows[origin] = ordinal
    return rows


def _value(value: object) -> str:
    if value == "":
        return "(default)"  # only digest_algorithms may be empty: the sidecar's default
    return "(none)" if value is None else str(value)


def _outcomes(
    plan: ImportPlan,
    records: Sequence[SourceRecord],
    kind: str,
    result: ApplyResult | None,
    source_ids: Mapping[str, str],
) -> list[directory_pb2.ImportRowOutcome]:
    """One outcome per plan item, in source order; ``source_ids`` names users by id."""
    rows = _row_numbers(records, kind)
    by_origin = {record.origin: record for record in records}
    failed = {id(f.item): f.error for f in result.failed} if result is not None else {}
    created = {c.sip_uri: c.user_id for c in result.created} if result is not None else {}
    outcomes: list[directory_pb2.ImportRowOutcome] = []
    for item in plan.items:
        action = _ACTIONS[item.action]
        if item.action is PlanAction.MISSING and _applies(item, plan):
            action = (
                directory_pb2.IMPORT_ACTION_DELETE
                if plan.missing_policy is MissingPolicy.DELETE
                else directory_pb2.IMPORT_ACTION_DISABLE
            )
        record = by_origin.get(item.origin)
        entry = item.entry if item.entry is not None else record
        sip_uri = entry.sip_uri if entry is not None else None
        source_id = entry.source_id if entry is not None else None
        missing = item.action is PlanAction.MISSING
        if missing:
            sip_uri = item.origin  # the planner names a missing user by its SIP URI
            source_id = source_ids.get(item.user_id or "", "")
        user_id = item.user_id
        if user_id is None and item.action is PlanAction.CREATE and sip_uri is not None:
            user_id = created.get(sip_uri)
        error = failed.get(id(item))
        reason = item.reason if error is None else f"not applied: {error}"
        outcomes.append(
            directory_pb2.ImportRowOutcome(
                row=0 if missing else rows.get(item.origin, 0),
                # LDAP rows are named by DN; CSV rows and missing users by their source id.
                source_ref=(source_id or "") if missing or kind == "csv" else item.origin,
                action=action,
                user=f"users/{user_id}" if user_id else "",
                sip_uri=sip_uri or "",
                changes=[
                    f"{name}: {_value(old)} -> {_value(new)}"
                    for name, (old, new) in item.changes.items()
                ],
                reason=reason,
                applied=result is not None and _applies(item, plan) and error is None,
            )
        )
    # Source order reads best; users that left the source have no row and come last.
    outcomes.sort(key=lambda o: (o.row == 0, o.row, o.sip_uri))
    return outcomes
