"""Persistence of the control plane: SQLite by default, PostgreSQL by URL, one code path."""

from .db import Database, open_database

__all__ = ["Database", "open_database"]
