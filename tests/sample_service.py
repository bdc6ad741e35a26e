"""A small realistic service with real bugs, in a real git repository, reporting through a real sentry-sdk."""

from __future__ import annotations

import difflib
import textwrap
from pathlib import Path
from typing import Any

from tests.repos import GitFixture, new_repo

FILES: dict[str, str] = {
    ".gitignore": ".prodloop\n__pycache__/\n",
    "shop/__init__.py": "",
    "shop/pricing.py": '''
        """Prices of a shopping cart."""

        PRICES = {"apple": 30, "pear": 45}


        def line_total(item):
            return PRICES[item["sku"]] * item["qty"]


        def cart_total(cart):
            return sum(line_total(item) for item in cart["items"])


        def _audit(total):
            return total >= 0
    ''',
    "shop/checkout.py": '''
        """Checkout: coupons and order totals."""

        from shop.pricing import cart_total


        def checkout(order):
            coupon = order.pop("coupon")
            total = cart_total(order["cart"])
            return total - total // coupon["divisor"]


        def handle(payload):
            return checkout({"cart": payload["cart"], "coupon": payload["coupon"]})
    ''',
    "shop/auth.py": '''
        """Logins."""


        def login(user, password):
            if len(password) < 12:
                raise ValueError("password too short for " + user)
            return user
    ''',
    "shop/loyalty.py": '''
        """Loyalty points, memoized per (level, rate)."""

        _CACHE = {}


        def points_needed(level, per_level):
            key = (level, per_level)
            if key not in _CACHE:
                total = 0
                while level > 0:
                    total += 1000 // per_level
                    level -= 1
                _CACHE[key] = total
            return _CACHE[key]
    ''',
    "tests/__init__.py": "",
    "tests/test_pricing.py": """
        from shop.pricing import cart_total, line_total


        def test_line_total():
            assert line_total({"sku": "apple", "qty": 2}) == 60


        def test_cart_total():
            assert cart_total({"items": [{"sku": "pear", "qty": 1}]}) == 45
    """,
}

CRASHES: dict[str, str] = {
    "unknown_sku": """
        from shop.pricing import cart_total
        cart_total({"items": [{"sku": "apple", "qty": 2}, {"sku": "kiwi", "qty": 1}]})
    """,
    "zero_divisor": """
        from shop.checkout import handle
        handle({"cart": {"items": [{"sku": "apple", "qty": 1}]}, "coupon": {"divisor": 0}})
    """,
    "zero_rate": """
        from shop.loyalty import points_needed
        points_needed(2, 0)
    """,
    "short_password": """
        from shop.auth import login
        login("ann", "hunter2")
    """,
}


def fix_diff(path: str, old: str, new: str, files: dict[str, str] | None = None) -> str:
    """A unified diff (as `git diff` makes) replacing `old` by `new` in one of `files` (the sample's FILES)."""
    before = textwrap.dedent((files or FILES)[path]).lstrip()
    after = before.replace(old, new)
    assert after != before, old
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return "".join(lines)


FIX_ZERO_RATE = fix_diff(
    "shop/loyalty.py",
    "    key = (level, per_level)\n",
    '    if per_level <= 0:\n        raise ValueError("per_level must be positive")\n    key = (level, per_level)\n',
)
FIX_UNKNOWN_SKU = fix_diff("shop/pricing.py", 'PRICES[item["sku"]]', 'PRICES.get(item["sku"], 0)')


class SampleService:
    def __init__(self, root: Path) -> None:
        self.git: GitFixture = new_repo(root)
        self.commit = self.git.commit(FILES, "shop 1.0.0", author="Ada Dev")
        self.git.tag("v1.0.0")
        self._events: dict[str, dict[str, Any]] = {}

    @property
    def root(self) -> Path:
        return self.git.root

    def event(self, crash: str) -> dict[str, Any]:
        """The event a real sentry-sdk reports for one of CRASHES, run at v1.0.0 (captured once)."""
        if crash not in self._events:
            events = self.git.capture(CRASHES[crash], release="shop@1.0.0")
            assert len(events) == 1, events
            self._events[crash] = events[0]
        return self._events[crash]
