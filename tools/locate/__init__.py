"""Where a failure lives in the repository at the commit that ran it: frames, release, blame, fault
candidates, related tests."""
