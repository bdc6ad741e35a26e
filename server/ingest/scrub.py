"""Scrubbing production events before anything is stored.

Two passes, like sentry.io's own ingest:
1. Sentry's normalizer and data scrubber (`sentry-relay`, the Rust code sentry.io runs) with the rules of its
   defaults that prodloop's pass does not cover: card numbers (in numbers too), US social security numbers,
   IBANs in log messages, home-directory user names and IP addresses outside free text, and the IP address fields
   removed, plus the user's extra `sensitive_fields` (relay's own key-substring rule).
2. prodloop's own pass over every string relay leaves alone by design (exception values and
   log messages) and over data relay's defaults keep:
   - e-mail addresses (relay's defaults keep them; a production error should not carry them),
   - `Bearer <token>` and `password=...`-style pairs inside free text (`aws_secret_access_key=...` too),
   - well-known secret formats anywhere, in any string or key (`SECRET_FORMATS`): cloud access keys,
     GitHub/GitLab/Slack/Stripe/Google/Sentry/npm/PyPI tokens, JWTs, PEM private keys, passwords in
     URLs (`scheme://user:pass@host`), Slack webhooks,
   - values under keys matching the default denylist below or `sensitive_fields` (cookies among them),
   - command-line arguments (sentry-sdk's `extra["sys.argv"]`) past the program name: a secret
     passed as a positional argument cannot be told apart from any other argument,
   - IP addresses (`[ip]`) and home-directory user names (`/home/[user]/`) in messages, exception values
     and source lines, as relay already does in the fields it scrubs (a frame's `abs_path` stays: code
     mapping reads it).
Each filtered value becomes "[Filtered]" and is recorded as (path, rule).

Why not one relay pass: relay's binding takes its PII config as JSON text on every call and compiles it each
time (no binding keeps a compiled config), so each rule is paid per event: prodloop's secret formats as relay
`pattern` rules cost ~1 ms per event (bench/scrub.py), five times prodloop's own pass over the same strings. Relay
keeps only the rules above; e-mail, PEM keys and URL passwords, which relay's defaults also filter, are left to
prodloop's pass, which finds them everywhere; the long cookie and gen-AI selectors of relay's defaults (~0.3 ms
per event) give way to `cookies` on the denylist. Strings and keys found clean are remembered (a bounded set):
stack frames, source lines and keys repeat across the events of one service.

A scrubbing failure never leaks: if relay rejects an event it is refused, never stored raw.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sentry_relay.processing import StoreNormalizer, convert_datascrubbing_config, pii_strip_event

from prodloop.server.errors import IngestError

FILTERED = "[Filtered]"

# Keys whose values are secrets wherever they appear. A key matches when one of these is a whole word of it, or
# a run of its words (`db_password`, `apiKey`, `X-Auth-Token`, `session_id`), never a mere substring: `author`,
# `tokenizer`, `discard` or `sessions_count` are program data a regression test needs.
DEFAULT_DENYLIST: tuple[str, ...] = (
    "password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "access_key", "secret_key",
    "private_key", "privatekey", "authorization", "auth", "credentials", "credential", "session", "sessionid",
    "session_key", "cookie", "csrf", "csrftoken", "xsrf", "dsn", "sentry_key", "card", "card_number", "cvv",
    "cvc", "ssn", "passphrase", "mysql_pwd", "jwt", "bearer", "cookies",
)  # fmt: skip
# Relay's value rules prodloop's pass does not cover, in place of its `@common` set: without its key rule
# (`@password`, which matches key substrings: prodloop matches keys by words) and without the rules prodloop's pass
# covers everywhere (`@email`, `@pemkey`, `@urlauth`).
_RELAY_VALUE_RULES = ["@creditcard:filter", "@usssn:filter", "@userpath:replace"]
# Log messages: what relay's default log-message rules hold beyond prodloop's pass (e-mail, cards, bearer tokens).
_RELAY_LOG_RULES = ["@iban:replace", "@usssn:replace"]
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_BEARER = re.compile(r"(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_SECRET_PAIR = re.compile(
    r"(?i)\b((?:[a-z0-9]+[_-])*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)"
    r"(?:[_-][a-z0-9]+)*)([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
)
# Well-known secret formats, found wherever they appear (free text, keys, paths), each named for the record.
SECRET_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("aws_access_key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b"),
        ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
        ("gitlab_token", r"\bglpat-[A-Za-z0-9_-]{20,}"),
        ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
        ("slack_webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,}"),
        ("stripe_key", r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"),
        ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}"),
        ("sentry_token", r"\bsntr[ysu]_[A-Za-z0-9+/=_-]{20,}"),
        ("npm_token", r"\bnpm_[A-Za-z0-9]{36}\b"),
        ("pypi_token", r"\bpypi-AgE[A-Za-z0-9_-]{40,}"),
        ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        (
            "pem_private_key",
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----|[\s\S]*)",
        ),
        ("url_password", r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),
    )
)
_MAYBE_FORMAT = re.compile(
    r"akia|asia|ag|aid|aro|anp|anv|aip|gh|glpat|xox|hooks|_live_|_test_|aiza|sntr|npm_|pypi|eyj|begin|://"
)
_DSN_KEY = re.compile(r"(https?://)[0-9a-f]{32}(?::[0-9a-f]{32})?@")
# Cheap tests every rule below implies: a string that passes neither is left as it is.
_MAYBE_WORDS = re.compile(r"pass|pwd|secret|token|key|bearer|basic|@")  # on the lowercased string
_MAYBE_CARD = re.compile(r"\d[\d -]{11,}\d")  # 13+ digits with single separators lie inside such a run
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")


def _words_key(key: str) -> str:
    return "_".join(w.lower() for w in _WORD.findall(key))


def _lean(config: dict[str, Any]) -> dict[str, Any]:
    """Relay's converted config cut to what prodloop's pass does not do (see the module's docstring): its value
    rules in place of `@common`, the IP fields' removal, and the log-message rules above. Every other application
    of relay's defaults (cookies by name, gen-AI span data, log bodies) is covered by prodloop's pass."""
    applications: dict[str, list[str]] = {}
    for selector, rules in config.get("applications", {}).items():
        if "@common:filter" in rules:
            applications[selector] = [
                r for rule in rules for r in (_RELAY_VALUE_RULES if rule == "@common:filter" else [rule])
            ]
        elif rules == ["@anything:remove"]:
            applications[selector] = rules
    applications["$logentry.formatted"] = _RELAY_LOG_RULES
    return {**config, "applications": applications}


def _luhn_ok(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass
class ScrubResult:
    event: dict[str, Any]
    filtered: list[tuple[str, str]] = field(default_factory=list)


class Scrubber:
    def __init__(
        self,
        *,
        project_id: int = 1,
        sensitive_fields: Iterable[str] = (),
        scrub_emails: bool = True,
        scrub_ip_addresses: bool = True,
    ) -> None:
        extra = [f for f in sensitive_fields if f]
        self._normalizer = StoreNormalizer(project_id=project_id)
        self._relay_config = _lean(
            convert_datascrubbing_config(
                {
                    "scrubData": True,
                    "scrubDefaults": True,
                    "scrubIpAddresses": scrub_ip_addresses,
                    "sensitiveFields": extra,
                    "excludeFields": [],
                }
            )
        )
        self._relay_config_json = json.dumps(self._relay_config)
        self._denylist = frozenset(_words_key(k) for k in (*DEFAULT_DENYLIST, *extra))
        self._joined_denylist = frozenset(w.replace("_", "") for w in self._denylist)
        self._scrub_emails = scrub_emails
        # What the walk found before, for text that repeats across events (never a secret: only what was clean):
        # a key that scrubs to itself -> whether it is sensitive; a string no rule changes -> whether it is also
        # clear of IP addresses and user paths.
        self._clean_keys: dict[str, bool] = {}
        self._clean_texts: dict[str, bool] = {}

    def scrub(self, event: dict[str, Any]) -> ScrubResult:
        try:
            # Relay's JSON text goes from the normalizer straight into the scrubber (one parse, not three).
            normalized = self._normalizer.normalize_event(event, json_loads=_as_text)
            stripped = pii_strip_event(self._relay_config, normalized, json_dumps=self._relay_json)
        except Exception as exc:  # relay raises its own error types; none may let a raw event through
            raise IngestError(
                f"the event could not be normalized ({type(exc).__name__})",
                "send an event in Sentry's event schema (what sentry-sdk produces)",
            ) from exc
        meta = stripped.pop("_meta", None) or {}
        result = ScrubResult(event=stripped)
        # Relay's record names the original keys: each passes the key scrub first, so a key that was a secret
        # never reaches the record.
        _collect_meta(meta, [], result.filtered, lambda key: self._key(key, None, []))
        stripped.pop("_prodloop", None)
        _drop_argv(stripped, result.filtered)
        result.event = self._walk(stripped, None, result.filtered, sensitive=False)
        return result

    def scrub_string(self, text: str) -> str:
        """One free-text string (a transaction name) scrubbed like a message: secrets, e-mails, card numbers, IP
        addresses and home-directory user names."""
        out: list[tuple[str, str]] = []
        path: _Path = (None, "value")
        if _maybe_secret(text):
            text = self._scrub_text(text, path, out)
        if _MAYBE_PERSONAL.search(text):
            text = _scrub_personal(text, path, out)
        return text

    def is_sensitive_key(self, key: str) -> bool:
        """Whether values under this key are filtered (the denylist and `sensitive_fields`, matched by words)."""
        return self._is_sensitive(key)

    def _relay_json(self, value: Any) -> Any:
        if value is self._relay_config:
            return self._relay_config_json
        return value if isinstance(value, (str, bytes)) else json.dumps(value)

    def _walk(self, value: Any, path: _Path, out: list[tuple[str, str]], *, sensitive: bool) -> Any:
        if isinstance(value, str):
            if sensitive:
                if value in (FILTERED, ""):
                    return value
                out.append((_dotted(path), "@denylist:filter"))
                return FILTERED
            personal_free = self._clean_texts.get(value)
            if personal_free is None:
                text = self._scrub_text(value, path, out) if _maybe_secret(value) else value
                personal_free = not _MAYBE_PERSONAL.search(text)
                if text is value or text == value:
                    _remember(self._clean_texts, value, personal_free)
                value = text
            if not personal_free and _is_free_text(path):
                return _scrub_personal(value, path, out)
            return value
        if isinstance(value, dict):
            # Under a sensitive key everything is sensitive; keys themselves are text that can carry secrets
            # (two keys that scrub alike stay two entries).
            walked: dict[str, Any] = {}
            for k, v in value.items():
                raw = str(k)
                key_sensitive = self._clean_keys.get(raw)
                if key_sensitive is None:
                    key = self._key(raw, path, out)
                    key_sensitive = self._is_sensitive(raw)
                    if key == raw:
                        _remember(self._clean_keys, raw, key_sensitive)
                else:
                    key = raw
                while key in walked:
                    key += "'"
                # The record's path carries the scrubbed key: a key that was a secret never reaches the record.
                walked[key] = self._walk(v, (path, key), out, sensitive=sensitive or key_sensitive)
            return walked
        if isinstance(value, list):
            # Header and query lists arrive as [key, value] pairs after normalization.
            if len(value) == 2 and isinstance(value[0], str) and not isinstance(value[1], (dict, list)):
                key_sensitive = sensitive or self._is_sensitive(value[0])
                return [value[0], self._walk(value[1], (path, "1"), out, sensitive=key_sensitive)]
            return [self._walk(v, (path, str(i)), out, sensitive=sensitive) for i, v in enumerate(value)]
        if sensitive and value is not None and not isinstance(value, bool):
            out.append((_dotted(path), "@denylist:filter"))
            return FILTERED
        return value

    def _key(self, key: str, path: _Path, out: list[tuple[str, str]]) -> str:
        if _maybe_secret(key):
            return self._scrub_text(key, (path, "<key>"), out)
        return key

    def _is_sensitive(self, key: str) -> bool:
        known = self._clean_keys.get(key)
        if known is None:
            words = [w.lower() for w in _WORD.findall(key)]
            known = (
                any(
                    "_".join(words[i:j]) in self._denylist
                    for i in range(len(words))
                    for j in range(i + 1, len(words) + 1)
                )
                or "".join(words) in self._joined_denylist
            )
        return known

    def _scrub_text(self, text: str, path: _Path, out: list[tuple[str, str]]) -> str:
        original = text
        rules = []
        text, n = _SECRET_PAIR.subn(lambda m: f"{m.group(1)}{m.group(2)}{FILTERED}", text)
        if n:
            rules.append("@secretpair:filter")
        text, n = _BEARER.subn(lambda m: f"{m.group(1)} {FILTERED}", text)
        if n:
            rules.append("@bearer:filter")
        text, n = _DSN_KEY.subn(lambda m: f"{m.group(1)}{FILTERED}@", text)
        if n:
            rules.append("@dsnkey:filter")
        if _MAYBE_FORMAT.search(text.lower()):
            for name, pattern in SECRET_FORMATS:
                text, n = pattern.subn(FILTERED, text)
                if n:
                    rules.append(f"@{name}:filter")
        text, n = _CARD.subn(lambda m: FILTERED if _luhn_ok(m.group(0)) else m.group(0), text)
        if n and text != original:
            rules.append("@creditcard:filter")
        if self._scrub_emails:
            text, n = _EMAIL.subn(FILTERED, text)
            if n:
                rules.append("@email:filter")
        if text is not original:
            where = _dotted(path)
            for rule in rules:
                out.append((where, rule))
        return text


_Path = tuple[Any, Any] | None

_REMEMBERED = 32_768  # entries per cache; a full cache starts over
_REMEMBERED_CHARS = 512  # longer text is rarely repeated


def _remember(cache: dict[str, bool], text: str, value: bool) -> None:
    if len(text) <= _REMEMBERED_CHARS:
        if len(cache) >= _REMEMBERED:
            cache.clear()
        cache[text] = value


# IP addresses and home-directory user names in free text (relay replaces them only in fields it marks as PII).
_MAYBE_PERSONAL = re.compile(
    r"\d\.\d{1,3}\.\d{1,3}\.\d|::|(?:[0-9A-Fa-f]{1,4}:){4}|/home/|/Users/|\\Users\\", re.IGNORECASE
)
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?!\.?\d)(?!\w)")  # "refused by 10.1.2.3." too
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
_USER_PATH = re.compile(r"(?i)(/home/|/Users/|[A-Z]:\\+Users\\+)(?!\[user\])[^/\\\s'\"]+")
_FREE_TEXT_KEYS = frozenset({"value", "message", "formatted", "context_line"})
_FREE_TEXT_LISTS = frozenset({"pre_context", "post_context", "params"})


def _is_free_text(path: _Path) -> bool:
    """Messages, exception values and source lines: the text relay leaves alone (locals, request and user data
    go through its own `@ip` and `@userpath` rules; a frame's `abs_path` stays, code mapping reads it)."""
    if path is None:
        return False
    parent = path[0]
    return path[1] in _FREE_TEXT_KEYS or (parent is not None and parent[1] in _FREE_TEXT_LISTS)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return any(c.isdigit() for c in text) and (text.count(":") == 7 or "::" not in text or len(text) > 6)


def _scrub_personal(text: str, path: _Path, out: list[tuple[str, str]]) -> str:
    original = text
    text = _IPV4.sub(lambda m: "[ip]" if _is_ip(m.group(0)) else m.group(0), text)
    text = _IPV6.sub(lambda m: "[ip]" if _is_ip(m.group(0)) else m.group(0), text)
    if text != original:
        out.append((_dotted(path), "@ip:replace"))
    before = text
    text = _USER_PATH.sub(lambda m: f"{m.group(1)}[user]", text)
    if text != before:
        out.append((_dotted(path), "@userpath:replace"))
    return text


_MAYBE_ANY = re.compile(f"{_MAYBE_WORDS.pattern}|{_MAYBE_FORMAT.pattern}")  # one pass for both pre-tests


def _maybe_secret(text: str) -> bool:
    return bool(_MAYBE_ANY.search(text.lower()) or _MAYBE_CARD.search(text))


def secret_findings(text: str, *, production_values: bool = False) -> list[str]:
    """Names (never values) of the secret formats in a text prodloop is about to write into a repository or a PR.
    With `production_values`, a scrubbed production value (`[Filtered]`) counts too: a test must not carry one."""
    found = [name for name, pattern in SECRET_FORMATS if pattern.search(text)]
    if production_values and FILTERED in text:
        found.append("a scrubbed production value")
    return found


def keyed_hash(salt: str, identity: str) -> str:
    """What prodloop keeps of a user's identity: a keyed hash (the project's key), never the identity."""
    return hmac.new(salt.encode(), identity.encode(), hashlib.sha256).hexdigest()[:32]


def _dotted(path: _Path) -> str:
    """The dotted path of a linked (parent, key) chain, built only when something is filtered."""
    parts = []
    while path is not None:
        path, key = path
        parts.append(str(key))
    return ".".join(reversed(parts))


def _as_text(raw: str | bytes) -> str | bytes:
    return raw


def _drop_argv(event: dict[str, Any], out: list[tuple[str, str]]) -> None:
    extra = event.get("extra")
    argv = extra.get("sys.argv") if isinstance(extra, dict) else None
    if isinstance(argv, list) and len(argv) > 1:
        assert isinstance(extra, dict)
        extra["sys.argv"] = [argv[0], *([FILTERED] * (len(argv) - 1))]
        out.append(("extra.sys.argv", "@argv:filter"))


def _collect_meta(node: Any, path: list[str], out: list[tuple[str, str]], scrub_key: Callable[[str], str]) -> None:
    if not isinstance(node, dict):
        return
    for key, child in node.items():
        if key == "" and isinstance(child, dict):
            for removal in child.get("rem") or []:
                if isinstance(removal, list) and removal and isinstance(removal[0], str):
                    out.append((".".join(path), removal[0]))
        else:
            _collect_meta(child, [*path, scrub_key(str(key))], out, scrub_key)
