"""What the capabilities run on: the git boundary, confined runs, diffs, function extents, small helpers."""
