"""The reliability dashboard: server-rendered pages under `/dashboard`, behind a session the MCP bearer token opens."""

from prodloop.server.dashboard.app import dashboard_routes

__all__ = ["dashboard_routes"]
