"""What scrubbing costs per event, and the share of it the secret-format patterns add.

Events are the ingest bench's pool: the demo shop's failing handlers under the real sentry-sdk
(locals, request data, breadcrumbs, a card number among them). Times `Scrubber.scrub` per event
(CPU time, several rounds, best round; and the first round of a fresh scrubber, before it remembers
any clean text: the pool's events share frames, like a service's), then the secret-format pass
alone over every string and key of the same events (`SECRET_FORMATS` behind its `_MAYBE_FORMAT`
pre-test, as the scrubber runs it), and the IP / home-directory pass over free text, and prints each with its share.

    python bench/scrub.py [--events 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _ingest_pool import sample_events  # the ingest bench's sentry-sdk event pool

from prodloop.server.ingest import scrub
from prodloop.server.ingest.scrub import SECRET_FORMATS, Scrubber


def _strings(value: Any) -> list[str]:
    out: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            out += [str(k) for k in node]
            stack += list(node.values())
        elif isinstance(node, list):
            stack += node
        elif isinstance(node, str):
            out.append(node)
    return out


def _located(node: Any, path: Any) -> list[tuple[Any, str]]:
    """Every string leaf with its path, as the scrubber's walk sees it (walked once, outside the timing)."""
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in _located(v, (path, str(k)))]
    if isinstance(node, list):
        return [pair for i, v in enumerate(node) for pair in _located(v, (path, str(i)))]
    return [(path, node)] if isinstance(node, str) else []


def _best(rounds: int, work: Any) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    events = sample_events(args.events)
    scrubber = Scrubber()
    strings = [_strings(e) for e in events]

    def scrub_all() -> None:
        for e in events:
            scrubber.scrub(json.loads(json.dumps(e)))

    def copies() -> None:
        for e in events:
            json.loads(json.dumps(e))

    def formats_only() -> None:
        maybe = scrub._MAYBE_FORMAT
        for texts in strings:
            for text in texts:
                if maybe.search(text.lower()):
                    for _, pattern in SECRET_FORMATS:
                        pattern.search(text)

    located = [_located(e, None) for e in events]

    def personal_only() -> None:
        for pairs in located:
            for path, text in pairs:
                if scrub._is_free_text(path) and scrub._MAYBE_PERSONAL.search(text):
                    scrub._scrub_personal(text, path, [])

    copy_cost = _best(args.rounds, copies)
    start = time.process_time()
    scrub_all()
    first = time.process_time() - start - copy_cost
    total = _best(args.rounds, scrub_all) - copy_cost
    formats = _best(args.rounds, formats_only)
    personal = _best(args.rounds, personal_only)
    n = len(events)
    print(f"{n} events, {sum(len(s) for s in strings) / n:.0f} strings and keys each")
    print(f"scrub per event, first round:    {first / n * 1e6:8.1f} us CPU (a fresh scrubber)")
    print(f"scrub per event:                 {total / n * 1e6:8.1f} us CPU (relay + prodloop's pass)")
    print(f"secret-format pass per event:    {formats / n * 1e6:8.1f} us CPU")
    print(f"share of scrubbing:              {formats / total:8.1%}")
    print(f"IP / user-path pass per event:   {personal / n * 1e6:8.1f} us CPU")
    print(f"share of scrubbing:              {personal / total:8.1%}")


if __name__ == "__main__":
    main()
