"""prodloop's capabilities: one module each, plain functions over explicit collaborators."""
