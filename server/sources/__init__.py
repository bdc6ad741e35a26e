"""Event sources besides live ingest: exported event files and Sentry's REST API."""
