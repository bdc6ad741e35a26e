"""The embedded store: one SQLite file in WAL mode, with versioned migrations."""

from prodloop.server.store.db import Store
from prodloop.server.store.records import EventRecord, IssueRow, Project

__all__ = ["EventRecord", "IssueRow", "Project", "Store"]
