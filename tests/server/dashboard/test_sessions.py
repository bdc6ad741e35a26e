"""Dashboard sessions: random ids that expire, and a CSRF token bound to each."""

from __future__ import annotations

from prodloop.server.clock import FixedClock
from prodloop.server.dashboard.sessions import Sessions, csrf_matches, token_matches


def test_a_session_expires_and_ends() -> None:
    clock = FixedClock()
    sessions = Sessions(clock, lifetime=60)
    one, two = sessions.start("Ada"), sessions.start("Ada")
    assert one.id != two.id and one.csrf != two.csrf and len(one.id) >= 40
    assert sessions.get(one.id) == one
    sessions.end(two.id)
    assert sessions.get(two.id) is None
    clock.advance(60)
    assert sessions.get(one.id) is None
    assert sessions.get(None) is None and sessions.get("") is None


def test_csrf_and_token_checks() -> None:
    session = Sessions(FixedClock()).start("Ada")
    assert csrf_matches(session, session.csrf)
    assert not csrf_matches(session, None) and not csrf_matches(session, "") and not csrf_matches(session, "x")
    assert token_matches("a" * 20, "a" * 20) and not token_matches("a" * 19, "a" * 20)
