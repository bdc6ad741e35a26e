"""Storing events that did not come over HTTP (files, Sentry's API) through the same pipeline."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prodloop.server.context import AppContext
from prodloop.server.errors import IngestError
from prodloop.server.ingest.pipeline import EventProcessor
from prodloop.server.store import EventRecord, Project


@dataclass
class ImportReport:
    stored: int = 0
    duplicates: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)


def import_events(
    ctx: AppContext, project: Project, events: Iterable[tuple[str, dict[str, Any]]], *, source: str
) -> ImportReport:
    """Scrub, group and store events; a refused event is reported by where it came from, the rest are kept."""
    processor = EventProcessor(ctx.settings, ctx.clock)
    report = ImportReport()
    batch: list[EventRecord] = []
    for where, raw in events:
        try:
            batch.append(
                processor.process(raw, project_id=project.id, user_salt=project.public_key, source=source, what=where)
            )
        except IngestError as exc:
            report.refused.append((where, str(exc)))
        if len(batch) >= 500:
            _flush(ctx, batch, report)
    _flush(ctx, batch, report)
    return report


def _flush(ctx: AppContext, batch: list[EventRecord], report: ImportReport) -> None:
    if not batch:
        return
    for new in ctx.store.write_events(batch):
        if new:
            report.stored += 1
        else:
            report.duplicates += 1
    batch.clear()
