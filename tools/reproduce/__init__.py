"""A regression test rebuilt from production inputs: call plans, value reconstruction, request replay,
characterization."""
