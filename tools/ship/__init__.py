"""What prodloop puts into the repository: the pull request, its provenance, proposals for the suite."""
