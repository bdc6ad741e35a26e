"""Whether a candidate test guards the failure: the gates, the static checks, mutation testing."""
