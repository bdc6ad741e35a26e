"""Sentry-compatible ingest: envelopes and store requests in, scrubbed grouped events out."""
