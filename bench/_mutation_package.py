"""The package `bench/mutation.py` measures: "storefront", a small shop back end with one real bug.

`storefront.orders` imports order rows ("sku;qty;price[;note]"); `storefront.text` does slugs,
whitespace and truncation; `storefront.locales.<cc>` (12 markets) parses and formats money, checks
postcodes and phone numbers, computes VAT, shipping bands and instalments, masks and checks card
numbers, and has `Coupon` and `Basket` classes. Each locale's tests are written with expected values
computed by running the generated code, so the whole suite passes. The bug: `orders.parse_price`
unpacks `text.split(".")` into two names, so a price without cents ("€12") raises ValueError.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from string import Template
from typing import Any

PACKAGE = "storefront"
BUGGY_PATH = "storefront/orders.py"
TEST_PATH = "tests/test_orders_regression.py"
TEST_NAME = "test_a_price_without_cents_parses"

# code, currency, symbol, symbol first, decimal, thousands, VAT %, postcode, good and bad postcode, phone prefix
_LOCALES = [
    ("de", "EUR", "€", False, ",", ".", 19, r"\d{5}", "10115", "1011", "+49"),
    ("fr", "EUR", "€", False, ",", " ", 20, r"\d{5}", "75001", "7500A", "+33"),
    ("nl", "EUR", "€", True, ",", ".", 21, r"\d{4} ?[A-Z]{2}", "1012 AB", "1012", "+31"),
    ("es", "EUR", "€", False, ",", ".", 21, r"\d{5}", "28001", "2800", "+34"),
    ("it", "EUR", "€", False, ",", ".", 22, r"\d{5}", "00118", "0011", "+39"),
    ("uk", "GBP", "£", True, ".", ",", 20, r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}", "SW1A 1AA", "SW1", "+44"),
    ("us", "USD", "$", True, ".", ",", 7, r"\d{5}(-\d{4})?", "10001", "1000", "+1"),
    ("ca", "CAD", "$", True, ".", ",", 5, r"[A-Z]\d[A-Z] ?\d[A-Z]\d", "K1A 0B1", "K1A", "+1"),
    ("ch", "CHF", "CHF ", True, ".", "'", 8, r"\d{4}", "8001", "80011", "+41"),
    ("se", "SEK", "kr", False, ",", " ", 25, r"\d{3} ?\d{2}", "111 22", "1112", "+46"),
    ("pl", "PLN", "zł", False, ",", " ", 23, r"\d{2}-\d{3}", "00-001", "00001", "+48"),
    ("jp", "JPY", "¥", True, ".", ",", 10, r"\d{3}-\d{4}", "100-0001", "1000001", "+81"),
]

_LOCALE = Template('''"""Money, addresses, tax, shipping and baskets for the $code market."""

import re

CURRENCY = "$currency"
SYMBOL = "$symbol"
SYMBOL_FIRST = $first
DECIMAL = "$decimal"
THOUSANDS = "$thousands"
VAT_PERCENT = $vat
POSTCODE = re.compile(r"^$postcode$$")
PHONE_PREFIX = "$phone"
SHIPPING_BANDS = $bands
FREE_SHIPPING_FROM = $free
CHARM_ENDING = $charm
_COUPON = re.compile(r"^(SAVE|FLAT)(\\d{1,5})$$")


def parse_amount(text):
    """Parse a local amount such as '1.234,56 €' into cents."""
    cleaned = text.strip().replace(SYMBOL.strip(), "").replace(CURRENCY, "").strip()
    negative = cleaned.startswith("-")
    if negative:
        cleaned = cleaned[1:].strip()
    cleaned = cleaned.replace(THOUSANDS, "")
    units, _, fraction = cleaned.partition(DECIMAL)
    if not units.isdigit() or len(fraction) > 2 or (fraction and not fraction.isdigit()):
        raise ValueError(f"not an amount in {CURRENCY}: {text!r}")
    cents = int(units) * 100 + int(fraction.ljust(2, "0"))
    return -cents if negative else cents


def format_amount(cents):
    """Format cents the local way, e.g. 123456 -> '1.234,56 €'."""
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(cents), 100)
    digits = str(units)
    groups = []
    while len(digits) > 3:
        groups.insert(0, digits[-3:])
        digits = digits[:-3]
    groups.insert(0, digits)
    number = THOUSANDS.join(groups) + DECIMAL + f"{rest:02d}"
    if SYMBOL_FIRST:
        return f"{sign}{SYMBOL}{number}"
    return f"{sign}{number} {SYMBOL}"


def charm_price(cents, ending=CHARM_ENDING):
    """Round up to the next price ending in `ending` cents."""
    if cents <= 0:
        return 0
    candidate = cents - cents % 100 + ending
    return candidate if candidate >= cents else candidate + 100


def parse_weight(text):
    """'1,5 kg' or '250 g' -> grams."""
    number, _, unit = text.strip().lower().partition(" ")
    try:
        value = float(number.replace(DECIMAL, "."))
    except ValueError:
        raise ValueError(f"not a weight: {text!r}") from None
    factor = {"kg": 1000, "g": 1}.get(unit.strip())
    if factor is None or value < 0:
        raise ValueError(f"not a weight: {text!r}")
    return round(value * factor)


def valid_postcode(text):
    return bool(POSTCODE.match(text.strip().upper()))


def normalize_phone(text):
    """'030 1234-567' -> '+49301234567'; ValueError for too few digits."""
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) < 6:
        raise ValueError(f"too few digits in {text!r}")
    if text.strip().startswith("+"):
        return "+" + digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    return PHONE_PREFIX + digits.lstrip("0")


def tax_for(net_cents, exempt=False):
    """VAT on a net amount, rounded half up to the cent."""
    if exempt or net_cents <= 0:
        return 0
    return (net_cents * VAT_PERCENT + 50) // 100


def shipping_cost(weight_grams, subtotal_cents):
    if weight_grams <= 0:
        raise ValueError("weight must be positive")
    if subtotal_cents >= FREE_SHIPPING_FROM:
        return 0
    for max_grams, cents in SHIPPING_BANDS:
        if weight_grams <= max_grams:
            return cents
    raise ValueError(f"{weight_grams} g is over the heaviest band")


def instalments(total_cents, months):
    """Split a total into monthly payments; the first ones carry the remainder."""
    if months < 1:
        raise ValueError("months must be at least 1")
    base, remainder = divmod(total_cents, months)
    plan = []
    while len(plan) < months:
        plan.append(base + (1 if len(plan) < remainder else 0))
    return plan


def split_address(text):
    """'Main Street 5, 10115 Berlin' -> street, postcode and city."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) < 2:
        raise ValueError(f"need a street and a town in {text!r}")
    street, words = parts[0], " ".join(parts[1:]).split()
    for size in (2, 1):
        candidate = " ".join(words[:size])
        if len(words) > size and valid_postcode(candidate):
            return {"street": street, "postcode": candidate.upper(), "city": " ".join(words[size:])}
    raise ValueError(f"no valid postcode in {text!r}")


def luhn_ok(number):
    total = 0
    for index, ch in enumerate(reversed([c for c in number if c.isdigit()])):
        digit = int(ch)
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def mask_card(number):
    digits = [ch for ch in number if ch.isdigit()]
    if not 12 <= len(digits) <= 19:
        raise ValueError("a card number has 12 to 19 digits")
    hidden = ["****"] * ((len(digits) - 4 + 3) // 4)
    return " ".join([*hidden, "".join(digits[-4:])])


class Coupon:
    """SAVE<n>: n percent off; FLAT<n>: n cents off, never below zero."""

    def __init__(self, code):
        match = _COUPON.match(code.strip().upper())
        if match is None:
            raise ValueError(f"unknown coupon {code!r}")
        self.kind, self.amount = match.group(1), int(match.group(2))
        if self.kind == "SAVE" and not 0 < self.amount <= 90:
            raise ValueError(f"percent off must be 1-90, not {self.amount}")

    def discount(self, subtotal_cents):
        if self.kind == "SAVE":
            return subtotal_cents * self.amount // 100
        return min(self.amount, subtotal_cents)


class Basket:
    def __init__(self):
        self.lines = {}
        self.coupon = None

    def add(self, sku, unit_cents, qty=1, grams=0):
        if qty <= 0 or unit_cents < 0:
            raise ValueError("quantity must be positive and the price not negative")
        unit, old_qty, old_grams = self.lines.get(sku, (unit_cents, 0, grams))
        if unit != unit_cents:
            raise ValueError(f"{sku} is already in the basket at {format_amount(unit)}")
        self.lines[sku] = (unit, old_qty + qty, old_grams)

    def remove(self, sku, qty=1):
        unit, old_qty, grams = self.lines[sku]
        if qty >= old_qty:
            del self.lines[sku]
        else:
            self.lines[sku] = (unit, old_qty - qty, grams)

    def subtotal(self):
        return sum(unit * qty for unit, qty, _ in self.lines.values())

    def weight(self):
        return sum(grams * qty for _, qty, grams in self.lines.values())

    def apply(self, code):
        self.coupon = Coupon(code)

    def total(self, exempt=False):
        subtotal = self.subtotal()
        net = subtotal - (self.coupon.discount(subtotal) if self.coupon else 0)
        shipping = shipping_cost(max(self.weight(), 1), subtotal) if self.lines else 0
        return net + tax_for(net, exempt) + shipping

    def receipt(self):
        rows = [f"{sku:<12}{qty:>4} x {format_amount(unit)}" for sku, (unit, qty, _) in sorted(self.lines.items())]
        rows.append(f"{'TOTAL':<12}{format_amount(self.total())}")
        return "\\n".join(rows)
''')

_NAMES = "Basket, Coupon, charm_price, format_amount, instalments, luhn_ok, mask_card, normalize_phone, parse_amount"
_NAMES += ", parse_weight, shipping_cost, split_address, tax_for, valid_postcode"
_BASKET = "b = Basket(); b.add('tea', 450, 2, 250); b.add('mug', 1299, 1, 400); b.add('tea', 450)"
# (test name, setup statements, expressions compared with their value, expressions that must raise ValueError)
_LOCALE_TESTS: list[tuple[str, str, list[str], list[str]]] = [
    ("parse_amount_reads_local_notation", "", ['parse_amount("1{t}234{d}56")', 'parse_amount(" 12 ")',
     'parse_amount("-0{d}5")', "parse_amount({money})"], ['parse_amount("12{d}345")', 'parse_amount("1x")',
     'parse_amount("")']),
    ("format_amount_groups_thousands", "", ["format_amount(123456789)", "format_amount(-5)", "format_amount(0)",
     "format_amount(100000)"], []),
    ("charm_price_rounds_up", "", ["charm_price(1000)", "charm_price(1099)", "charm_price(1)", "charm_price(0)",
     "charm_price(250, ending=49)"], []),
    ("parse_weight_in_grams", "", ['parse_weight("1{d}5 kg")', 'parse_weight("250 g")', 'parse_weight(" 2 KG ")'],
     ['parse_weight("heavy")', 'parse_weight("5 lb")', 'parse_weight("-1 kg")']),
    ("postcodes_are_checked", "", ["valid_postcode({good})", "valid_postcode({bad})",
     "valid_postcode(' ' + {good}.lower())"], []),
    ("phone_numbers_get_the_country_prefix", "", ['normalize_phone("0301 234-567")',
     'normalize_phone("+1 (555) 010-9999")', 'normalize_phone("0044 20 7946 0000")'], ['normalize_phone("12-34")']),
    ("vat_rounds_half_up", "", ["tax_for(10000)", "tax_for(999)", "tax_for(50)", "tax_for(10000, exempt=True)",
     "tax_for(-5)"], []),
    ("shipping_bands_and_free_shipping", "", ["shipping_cost(1, 0)", "shipping_cost(500, 0)", "shipping_cost(501, 0)",
     "shipping_cost(10000, 0)", "shipping_cost(100, {free})", "shipping_cost(100, {free} - 1)"],
     ["shipping_cost(0, 0)", "shipping_cost(10001, 0)"]),
    ("instalments_carry_the_remainder", "", ["instalments(1000, 3)", "instalments(7, 7)", "instalments(5, 1)"],
     ["instalments(100, 0)"]),
    ("addresses_split_at_the_postcode", "", ['split_address("Main Street 5, " + {good} + " Springfield")',
     'split_address("Dock 1,, " + {good}.lower() + " Port Town")'],
     ['split_address("Main Street 5")', 'split_address("Main Street 5, Springfield")']),
    ("cards_are_checked_and_masked", "", ['luhn_ok("4539 1488 0343 6467")', 'luhn_ok("4539 1488 0343 6468")',
     'mask_card("4539-1488-0343-6467")', 'mask_card("6011000990139424123")'], ['mask_card("1234")']),
    ("coupons_take_percent_or_cents_off", "", ['Coupon("save10").discount(2599)', 'Coupon(" FLAT500").discount(300)',
     'Coupon("FLAT500").discount(2000)', 'Coupon("SAVE90").discount(1000)'],
     ['Coupon("SAVE95")', 'Coupon("SAVE0")', 'Coupon("BOGUS")']),
    ("basket_totals_with_coupon_shipping_and_tax", _BASKET, ["b.subtotal()", "b.weight()", "b.total()",
     "(b.apply('save10'), b.total())[1]", "b.total(exempt=True)", "b.receipt()"], ["b.add('tea', 500)",
     "b.add('cup', 100, 0)"]),
    ("basket_removes_lines", _BASKET, ["(b.remove('tea'), b.lines)[1]", "(b.remove('tea', 5), b.lines)[1]",
     "(b.remove('mug'), b.total())[1]"], []),
]  # fmt: skip

FILES: dict[str, str] = {
    "pyproject.toml": '[project]\nname = "storefront"\nversion = "2.4.0"\n\n[tool.pytest.ini_options]\n'
    'testpaths = ["tests"]\n',
    "storefront/__init__.py": '"""A small shop back end."""\n\n__version__ = "2.4.0"\n',
    "storefront/locales/__init__.py": f'"""Per-market rules."""\n\nMARKETS = {[c[0] for c in _LOCALES]!r}\n',
    "storefront/text.py": '''"""Text helpers: slugs, whitespace, truncation, titles."""

import unicodedata


def normalize_whitespace(text):
    return " ".join(text.split())


def slugify(text, separator="-"):
    """'Äpfel & Birnen!' -> 'apfel-birnen'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words, word = [], []
    for ch in ascii_text.lower():
        if ch.isalnum():
            word.append(ch)
        elif word:
            words.append("".join(word))
            word = []
    if word:
        words.append("".join(word))
    return separator.join(words)


def truncate(text, width, ellipsis="..."):
    """Cut at a word boundary so the result, with the ellipsis, fits `width`."""
    if width <= len(ellipsis):
        raise ValueError("width must exceed the ellipsis")
    if len(text) <= width:
        return text
    cut = text[: width - len(ellipsis)]
    space = cut.rfind(" ")
    if space > 0:
        cut = cut[:space]
    return cut.rstrip(" ,.;") + ellipsis


def title_case(text, small=("a", "an", "and", "of", "the", "in", "on")):
    words = normalize_whitespace(text).lower().split(" ")
    out = []
    for index, word in enumerate(words):
        keep_small = 0 < index < len(words) - 1 and word in small
        out.append(word if keep_small else word[:1].upper() + word[1:])
    return " ".join(out)
''',
    BUGGY_PATH: '''"""Order import: one row per line, "sku;qty;price[;note]", prices as people type them."""

from storefront.text import normalize_whitespace, slugify

CURRENCY_SIGNS = ("EUR", "USD", "GBP", "€", "$", "£")


class OrderLine:
    def __init__(self, sku, qty, unit_cents, note=""):
        self.sku, self.qty, self.unit_cents, self.note = sku, qty, unit_cents, note

    def total(self):
        return self.qty * self.unit_cents

    def __eq__(self, other):
        return isinstance(other, OrderLine) and vars(self) == vars(other)

    def __repr__(self):
        return f"OrderLine({self.sku!r}, {self.qty}, {self.unit_cents}, {self.note!r})"


def parse_price(text):
    """'€1.299,50', '1,299.50 USD', '3,75' -> cents."""
    cleaned = text.strip()
    for sign in CURRENCY_SIGNS:
        cleaned = cleaned.replace(sign, "")
    cleaned = cleaned.strip()
    if "," in cleaned and "." in cleaned:
        if cleaned.rfind(",") > cleaned.rfind("."):
            cleaned = cleaned.replace(".", "").replace(",", ".")
        else:
            cleaned = cleaned.replace(",", "")
    elif "," in cleaned:
        cleaned = cleaned.replace(",", ".")
    units, fraction = cleaned.split(".")
    if not units.isdigit() or not fraction.isdigit() or len(fraction) > 2:
        raise ValueError(f"not a price: {text!r}")
    return int(units) * 100 + int(fraction.ljust(2, "0"))


def parse_order_line(row):
    fields = [f.strip() for f in row.split(";")]
    if len(fields) not in (3, 4):
        raise ValueError(f"expected 3 or 4 fields, got {len(fields)}: {row!r}")
    sku, qty, price = fields[:3]
    if not qty.isdigit() or int(qty) == 0:
        raise ValueError(f"bad quantity {qty!r} in {row!r}")
    note = normalize_whitespace(fields[3]) if len(fields) == 4 else ""
    return OrderLine(slugify(sku), int(qty), parse_price(price), note)


def import_orders(text):
    """Order lines of a pasted sheet; blank lines and '#' comments are skipped."""
    lines = []
    for row in text.splitlines():
        if row.strip() and not row.lstrip().startswith("#"):
            lines.append(parse_order_line(row))
    return lines


def summarize(lines):
    """Quantity and cents per SKU, largest total first."""
    totals = {}
    for line in lines:
        qty, cents = totals.get(line.sku, (0, 0))
        totals[line.sku] = (qty + line.qty, cents + line.total())
    return sorted(totals.items(), key=lambda item: (-item[1][1], item[0]))
''',
    "tests/__init__.py": "",
    "tests/test_text.py": """import pytest

from storefront.text import normalize_whitespace, slugify, title_case, truncate


def test_whitespace_collapses():
    assert normalize_whitespace("  a \\t b\\n c ") == "a b c"


def test_slugs_are_ascii_words():
    assert slugify("Äpfel & Birnen!") == "apfel-birnen"
    assert slugify("  Tea -- Pot 2 ", separator="_") == "tea_pot_2"
    assert slugify("!!!") == ""


def test_truncate_cuts_at_a_word():
    assert truncate("short", 10) == "short"
    assert truncate("the quick brown fox", 13) == "the quick..."
    assert truncate("abcdefghijkl", 8) == "abcde..."
    with pytest.raises(ValueError):
        truncate("text", 3)


def test_title_case_keeps_small_words():
    assert title_case("the  lord of the rings") == "The Lord of the Rings"
    assert title_case("a tale") == "A Tale"
""",
    "tests/test_orders.py": """import pytest

from storefront.orders import OrderLine, import_orders, parse_order_line, parse_price, summarize


def test_prices_in_both_notations():
    assert parse_price("€1.299,50") == 129950
    assert parse_price("1,299.50 USD") == 129950
    assert parse_price("3,75") == 375
    assert parse_price(" £0.5 ") == 50
    with pytest.raises(ValueError):
        parse_price("1.2.3")


def test_order_lines_are_parsed():
    assert parse_order_line("Green Tea; 2; €4,50; gift  wrap") == OrderLine("green-tea", 2, 450, "gift wrap")
    assert parse_order_line("mug;1;9.99") == OrderLine("mug", 1, 999, "")
    for row in ("mug;1", "mug;0;9.99", "mug;x;9.99", "a;1;2.00;b;c"):
        with pytest.raises(ValueError):
            parse_order_line(row)


def test_import_skips_blanks_and_comments():
    text = "# sheet\\nmug;1;9.99\\n\\n  # note\\ntea;3;1.00\\n"
    assert import_orders(text) == [OrderLine("mug", 1, 999), OrderLine("tea", 3, 100)]


def test_summary_orders_by_total():
    lines = import_orders("tea;3;1.00\\nmug;1;9.99\\ntea;2;1.00\\ncup;5;1.00")
    assert summarize(lines) == [("mug", (1, 999)), ("cup", (5, 500)), ("tea", (5, 500))]
    assert repr(lines[0]) == "OrderLine('tea', 3, 100, '')"
""",
}

CRASH = 'from storefront.orders import import_orders\nimport_orders("green tea;2;€1,50\\nmug;1;€12\\n")\n'

REGRESSION_TEST = f"""import pytest

from storefront.orders import parse_price


def {TEST_NAME}():
    assert parse_price("€12") == 1200
    assert parse_price(" 7 USD") == 700
    assert parse_price("1.299,5 EUR") == 129950
    assert parse_price("$1,299.05") == 129905
    assert parse_price("3,75") == 375
    for bad in ("12.345", "1x.00", "12.a", "", "-3.00"):
        with pytest.raises(ValueError, match="^not a price"):
            parse_price(bad)
"""

FIXED_SOURCE = (
    FILES[BUGGY_PATH]
    .replace('units, fraction = cleaned.split(".")', 'units, _, fraction = cleaned.partition(".")')
    .replace("or not fraction.isdigit() or", "or (fraction and not fraction.isdigit()) or")
)
FIX_DIFF = "".join(
    difflib.unified_diff(
        FILES[BUGGY_PATH].splitlines(keepends=True),
        FIXED_SOURCE.splitlines(keepends=True),
        f"a/{BUGGY_PATH}",
        f"b/{BUGGY_PATH}",
    )
)

_CAPTURE = """
import json, sys
import sentry_sdk
from sentry_sdk.transport import Transport
events = []
class Capture(Transport):
    def capture_envelope(self, envelope):
        events.extend(json.loads(i.get_bytes()) for i in envelope.items if i.type == "event")
    def flush(self, timeout, callback=None):
        pass
sentry_sdk.init(dsn="http://public@127.0.0.1:9/1", transport=Capture, release=sys.argv[2], environment="production",
                include_local_variables=True)
try:
    exec(compile(sys.argv[3], "<request>", "exec"), {"__name__": "request"})
except Exception:
    sentry_sdk.capture_exception()
sentry_sdk.flush()
with open(sys.argv[1], "w") as fh:
    json.dump(events, fh)
"""


def _locale_files(index: int, loc: tuple[Any, ...]) -> tuple[str, str]:
    code, currency, symbol, first, dec, thou, vat, postcode, good, bad, phone = loc
    bands = [(500, 390 + 10 * index), (2000, 690 + 25 * index), (10000, 1490 + 40 * index)]
    free = 5000 + 500 * index
    source = _LOCALE.substitute(
        code=code, currency=currency, symbol=symbol, first=first, decimal=dec, thousands=thou, vat=vat,
        postcode=postcode, phone=phone, bands=bands, free=free, charm=99 - index % 3 * 4,
    )  # fmt: skip
    module: dict[str, Any] = {}
    exec(compile(source, f"{code}.py", "exec"), module)  # noqa: S102 (our own generated code, for expected values)
    money = repr(module["format_amount"](1234567))
    out = [f"import pytest\n\nfrom storefront.locales.{code} import {_NAMES}\n"]
    for name, setup, equal, raising in _LOCALE_TESTS:
        body = [f"    {s.strip()}" for s in setup.split(";") if s.strip()]
        scope = dict(module)
        exec(setup, scope)  # noqa: S102
        for expr in equal:
            expr = expr.format(d=dec, t=thou, money=money, good=repr(good), bad=repr(bad), free=free)
            body.append(f"    assert {expr} == {eval(expr, scope)!r}")  # noqa: S307
        for expr in raising:
            body += ["    with pytest.raises(ValueError):", f"        {expr.format(d=dec, free=free)}"]
        out.append(f"\ndef test_{name}():\n" + "\n".join(body) + "\n")
    return source, "\n".join(out)


def files() -> dict[str, str]:
    """Every file of the package at the deployed commit (the bug included)."""
    out = dict(FILES)
    for index, loc in enumerate(_LOCALES):
        out[f"storefront/locales/{loc[0]}.py"], out[f"tests/test_locale_{loc[0]}.py"] = _locale_files(index, loc)
    return out


def build(root: Path) -> str:
    """Write the package into a new git repository at `root`; the commit's sha."""
    for rel, text in files().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    env = {**os.environ, "GIT_AUTHOR_DATE": "1780000000 +0000", "GIT_COMMITTER_DATE": "1780000000 +0000"}
    author = ["-c", "user.name=Ada Dev", "-c", "user.email=ada@example.com"]
    commit = [*author, "commit", "-q", "-m", "storefront 2.4.0"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], commit, ["tag", "v2.4.0"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, env=env)
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    return done.stdout.strip()


def capture(root: Path, release: str) -> dict[str, Any]:
    """The event a real sentry-sdk reports when the package's code at `root` runs CRASH."""
    runner, out = root.parent / "capture.py", root.parent / "events.json"
    runner.write_text(_CAPTURE)
    subprocess.run(
        [sys.executable, str(runner), str(out), release, CRASH],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    events: list[dict[str, Any]] = json.loads(out.read_text())
    assert len(events) == 1, events
    return events[0]
