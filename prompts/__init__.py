"""MCP prompt templates that guide an agent through the loop."""
