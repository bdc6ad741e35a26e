"""MCP resources over prodloop's store (issues, events, code paths, provenance, policy)."""
