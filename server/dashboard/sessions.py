"""Dashboard sessions: the bearer token, given once at the login form, is exchanged for a random session id held here
(in memory: a restart logs everyone out) with the person's name, a CSRF token bound to the session, and an expiry."""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass

from prodloop.server.clock import Clock, new_token

COOKIE = "prodloop_session"
LIFETIME_SECONDS = 8 * 3600
_MAX_SESSIONS = 1000


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    person: str
    csrf: str
    expires_at: float


def token_matches(given: str, expected: str) -> bool:
    """The bearer token compared in constant time (as /mcp's BearerAuth does)."""
    return hmac.compare_digest(given.encode(), expected.encode())


class Sessions:
    """Live sessions by id; expired ones are dropped when met and when a new one is made."""

    def __init__(self, clock: Clock, lifetime: float = LIFETIME_SECONDS) -> None:
        self._clock = clock
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._live: dict[str, Session] = {}

    def start(self, person: str) -> Session:
        now = self._clock.now()
        session = Session(id=new_token(), person=person, csrf=new_token(), expires_at=now + self._lifetime)
        with self._lock:
            self._live = {k: s for k, s in self._live.items() if s.expires_at > now}
            if len(self._live) >= _MAX_SESSIONS:  # the oldest goes
                del self._live[min(self._live, key=lambda k: self._live[k].expires_at)]
            self._live[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._live.get(session_id)
            if session is not None and session.expires_at <= self._clock.now():
                del self._live[session_id]
                return None
        return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._live.pop(session_id or "", None)


def csrf_matches(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), session.csrf.encode())
