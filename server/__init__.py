"""prodloop's server side: entry points, settings, the store, ingest and policy.

It wires capabilities from `prodloop.tools` to transports; it holds little logic itself.
"""
