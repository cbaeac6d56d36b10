"""Versioned schema migrations.

Each migration is applied once, in order, inside a transaction, and recorded in
``schema_migrations``. The SQL is written to mean the same on SQLite and PostgreSQL; where the
two differ (auto-increment keys) a migration gives one statement per dialect.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    sqlite_only: tuple[str, ...] = ()
    postgresql_only: tuple[str, ...] = ()


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "users, devices, bindings, presence, settings, sidecars",
        (
            """CREATE TABLE users (
                id TEXT PRIMARY KEY,
                sip_uri TEXT NOT NULL UNIQUE,
                extension TEXT UNIQUE,
                e164 TEXT UNIQUE,
                display_name TEXT NOT NULL DEFAULT '',
                email TEXT NOT NULL DEFAULT '',
                disabled BOOLEAN NOT NULL DEFAULT FALSE,
                settings TEXT NOT NULL DEFAULT '{}',
                origin TEXT NOT NULL DEFAULT '{}',
                create_time DOUBLE PRECISION NOT NULL,
                update_time DOUBLE PRECISION NOT NULL
            )""",
            """CREATE TABLE devices (
                user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                device_id TEXT NOT NULL,
                label TEXT NOT NULL DEFAULT '',
                kind TEXT NOT NULL,
                digest_username TEXT UNIQUE,
                ha1_md5 TEXT NOT NULL DEFAULT '',
                ha1_sha256 TEXT NOT NULL DEFAULT '',
                max_bindings INTEGER NOT NULL DEFAULT 0,
                trunk TEXT NOT NULL DEFAULT '{}',
                PRIMARY KEY (user_id, device_id)
            )""",
            """CREATE TABLE bindings (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                device_id TEXT NOT NULL,
                aor TEXT NOT NULL,
                contact_uri TEXT NOT NULL,
                source_host TEXT NOT NULL,
                source_port INTEGER NOT NULL,
                transport TEXT NOT NULL,
                sidecar TEXT NOT NULL,
                user_agent TEXT NOT NULL DEFAULT '',
                q_milli INTEGER NOT NULL DEFAULT 1000,
                call_id TEXT NOT NULL DEFAULT '',
                cseq BIGINT NOT NULL DEFAULT 0,
                instance_id TEXT NOT NULL DEFAULT '',
                expire_time DOUBLE PRECISION NOT NULL,
                create_time DOUBLE PRECISION NOT NULL,
                refresh_time DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX bindings_user ON bindings (user_id)",
            """CREATE TABLE presence (
                user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
                record TEXT NOT NULL
            )""",
            """CREATE TABLE settings (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            )""",
            """CREATE TABLE sidecars (
                name TEXT PRIMARY KEY,
                info TEXT NOT NULL,
                connect_time DOUBLE PRECISION NOT NULL,
                last_seen DOUBLE PRECISION NOT NULL
            )""",
        ),
        sqlite_only=(
            """CREATE TABLE presence_events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                user_id TEXT NOT NULL,
                change TEXT NOT NULL,
                at DOUBLE PRECISION NOT NULL
            )""",
        ),
        postgresql_only=(
            """CREATE TABLE presence_events (
                seq BIGSERIAL PRIMARY KEY,
                user_id TEXT NOT NULL,
                change TEXT NOT NULL,
                at DOUBLE PRECISION NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "call history",
        (
            """CREATE TABLE call_history (
                id TEXT PRIMARY KEY,
                start_time DOUBLE PRECISION NOT NULL,
                users TEXT NOT NULL,
                doc TEXT NOT NULL
            )""",
            "CREATE INDEX call_history_start ON call_history (start_time)",
        ),
    ),
    Migration(
        3,
        "connectors and their bridges' saved state",
        (
            """CREATE TABLE connectors (
                id TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                display_name TEXT NOT NULL DEFAULT '',
                settings TEXT NOT NULL DEFAULT '{}',
                secrets TEXT NOT NULL DEFAULT '{}',
                external BOOLEAN NOT NULL DEFAULT FALSE,
                disabled BOOLEAN NOT NULL DEFAULT FALSE,
                watch_cursor TEXT NOT NULL DEFAULT '',
                status TEXT NOT NULL DEFAULT '{}',
                create_time DOUBLE PRECISION NOT NULL,
                update_time DOUBLE PRECISION NOT NULL
            )""",
            """CREATE TABLE connector_state (
                connector_id TEXT NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (connector_id, key)
            )""",
        ),
    ),
    Migration(
        4,
        "users' Entra object id and user principal name",
        (
            "ALTER TABLE users ADD COLUMN entra_object_id TEXT",
            "ALTER TABLE users ADD COLUMN user_principal_name TEXT",
            "CREATE UNIQUE INDEX users_entra_object_id ON users (entra_object_id)",
            "CREATE UNIQUE INDEX users_user_principal_name ON users (user_principal_name)",
        ),
    ),
    Migration(
        5,
        "sidecar enrollments (credential hashes)",
        (
            """CREATE TABLE sidecar_enrollments (
                name TEXT PRIMARY KEY,
                token_hash TEXT NOT NULL UNIQUE,
                create_time DOUBLE PRECISION NOT NULL,
                last_connect_time DOUBLE PRECISION
            )""",
        ),
    ),
    Migration(
        6,
        "per-device digest algorithms",
        # Comma-separated, most preferred first; empty: the sidecar's default.
        ("ALTER TABLE devices ADD COLUMN digest_algorithms TEXT NOT NULL DEFAULT ''",),
    ),
    Migration(
        7,
        "external contacts of the shared address book",
        (
            """CREATE TABLE contacts (
                id TEXT PRIMARY KEY,
                display_name TEXT NOT NULL,
                phone TEXT NOT NULL DEFAULT '',
                mobile TEXT NOT NULL DEFAULT '',
                other TEXT NOT NULL DEFAULT '',
                company TEXT NOT NULL DEFAULT '',
                email TEXT NOT NULL DEFAULT '',
                source TEXT NOT NULL,
                source_id TEXT NOT NULL DEFAULT '',
                create_time DOUBLE PRECISION NOT NULL,
                update_time DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX contacts_source ON contacts (source, source_id)",
        ),
    ),
    Migration(
        8,
        "trunks to the UC platform",
        (
            """CREATE TABLE trunks (
                id TEXT PRIMARY KEY,
                settings TEXT NOT NULL DEFAULT '{}',
                password TEXT NOT NULL DEFAULT '',
                create_time DOUBLE PRECISION NOT NULL,
                update_time DOUBLE PRECISION NOT NULL
            )""",
        ),
    ),
    Migration(
        9,
        "short messages: the history and how far retention has trimmed it",
        (
            """CREATE TABLE messages (
                seq BIGINT PRIMARY KEY,
                sender_id TEXT NOT NULL,
                sender_uri TEXT NOT NULL,
                sender_display_name TEXT NOT NULL DEFAULT '',
                recipient_id TEXT NOT NULL,
                recipient_uri TEXT NOT NULL,
                body TEXT NOT NULL,
                origin TEXT NOT NULL,
                state TEXT NOT NULL,
                attempted INTEGER NOT NULL DEFAULT 0,
                delivered INTEGER NOT NULL DEFAULT 0,
                failed INTEGER NOT NULL DEFAULT 0,
                failure_reason TEXT NOT NULL DEFAULT '',
                create_time DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX messages_create_time ON messages (create_time)",
            "CREATE INDEX messages_sender ON messages (sender_id, seq)",
            "CREATE INDEX messages_recipient ON messages (recipient_id, seq)",
            """CREATE TABLE message_log (
                id INTEGER PRIMARY KEY,
                trimmed_through BIGINT NOT NULL
            )""",
            "INSERT INTO message_log (id, trimmed_through) VALUES (1, 0)",
        ),
    ),
)


async def current_version(conn: AsyncConnection) -> int:
    await conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
    )
    row = (await conn.execute(text("SELECT MAX(version) FROM schema_migrations"))).scalar()
    return int(row or 0)


async def migrate(conn: AsyncConnection, dialect: str) -> list[int]:
    """Apply every pending migration; returns the versions applied."""
    applied: list[int] = []
    version = await current_version(conn)
    latest = MIGRATIONS[-1].version
    if version > latest:
        raise RuntimeError(
            f"database schema version {version} is newer than this software ({latest}); upgrade sip2uc"
        )
    for migration in MIGRATIONS:
        if migration.version <= version:
            continue
        extra = migration.sqlite_only if dialect == "sqlite" else migration.postgresql_only
        for statement in (*migration.statements, *extra):
            await conn.execute(text(statement))
        await conn.execute(
            text(
                "INSERT INTO schema_migrations (version, description, applied_at) "
                "VALUES (:v, :d, CURRENT_TIMESTAMP)"
            ),
            {"v": migration.version, "d": migration.description},
        )
        applied.append(migration.version)
    return applied
