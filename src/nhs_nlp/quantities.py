"""Parsing QUANTITY spans into values: ``parse_quantity("about 2 million people")``.

Pure functions, no model: value, unit or counted noun, qualifier and kind
(count, money, data size, duration, percentage), in words or digits.
"""
from __future__ import annotations

import re
from typing import Dict, List, Literal, Optional, Tuple

from pydantic import BaseModel

Kind = Literal["count", "money", "data", "duration", "percentage"]
Qualifier = Literal["exact", "approximate", "at least", "more than", "fewer than", "up to", "range"]


class Quantity(BaseModel):
    """A parsed quantity. ``value`` is normalised: money in currency units, data in
    bytes, durations in days, percentages as the number; ranges fill ``value_high``."""

    text: str
    value: float
    value_high: Optional[float] = None
    unit: Optional[str] = None
    qualifier: Qualifier = "exact"
    kind: Kind = "count"
    currency: Optional[str] = None


UNITS_WORDS: Dict[str, int] = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    "a": 1, "an": 1, "half": 0.5,
}
SCALES: Dict[str, float] = {
    "hundred": 1e2, "thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "mn": 1e6, "mln": 1e6,
    "billion": 1e9, "bn": 1e9, "b": 1e9, "trillion": 1e12, "tn": 1e12,
}
# "dozens of", "hundreds of": the lower bound the text commits to.
VAGUE: Dict[str, Tuple[float, Qualifier]] = {
    "dozen": (12, "exact"), "dozens": (24, "at least"), "a dozen": (12, "exact"), "scores": (40, "at least"),
    "hundreds": (200, "at least"), "thousands": (2000, "at least"), "tens of thousands": (20000, "at least"),
    "hundreds of thousands": (200000, "at least"), "millions": (2e6, "at least"), "tens of millions": (2e7, "at least"),
    "billions": (2e9, "at least"),
}
CURRENCIES: Dict[str, str] = {
    "£": "GBP", "$": "USD", "€": "EUR", "¥": "JPY", "us$": "USD", "a$": "AUD", "au$": "AUD", "c$": "CAD",
    "s$": "SGD", "hk$": "HKD",
    "nz$": "NZD", "pounds": "GBP", "pound": "GBP", "dollars": "USD", "dollar": "USD", "euros": "EUR",
    "euro": "EUR", "yen": "JPY", "usd": "USD", "gbp": "GBP", "eur": "EUR", "bitcoin": "BTC", "btc": "BTC",
    "ether": "ETH", "eth": "ETH", "rupees": "INR", "crore": "INR",
}
DATA_UNITS: Dict[str, float] = {
    "b": 1, "byte": 1, "bytes": 1, "kb": 1e3, "kilobytes": 1e3, "mb": 1e6, "megabytes": 1e6, "gb": 1e9,
    "gigabytes": 1e9, "gigabyte": 1e9, "tb": 1e12, "terabytes": 1e12, "terabyte": 1e12, "pb": 1e15, "petabytes": 1e15,
}
DURATION_DAYS: Dict[str, float] = {
    "second": 1 / 86400, "seconds": 1 / 86400, "minute": 1 / 1440, "minutes": 1 / 1440, "hour": 1 / 24,
    "hours": 1 / 24, "day": 1, "days": 1, "week": 7, "weeks": 7, "fortnight": 14, "fortnights": 14,
    "month": 30, "months": 30, "year": 365, "years": 365, "decade": 3650, "decades": 3650,
}
QUALIFIERS: List[Tuple[str, Qualifier]] = [
    (r"no fewer than|no less than|at least|a minimum of|as many as|upwards of", "at least"),
    (r"more than|over|above|in excess of|upward of|exceeding", "more than"),
    (r"fewer than|less than|under|below|just under", "fewer than"),
    (r"up to|as much as|at most|a maximum of|no more than", "up to"),
    (r"about|around|approximately|roughly|some|nearly|almost|close to|an estimated|estimated|circa|c\.|~|just over|more or less", "approximate"),
]
NUMBER = r"\d[\d,]*(?:\.\d+)?"


def _word_number(words: List[str]) -> Optional[float]:
    """'twenty three', 'two hundred', 'a dozen', 'one and a half' -> number."""
    total, current, seen = 0.0, 0.0, False
    for w in words:
        w = w.strip(",").lower()
        if w in ("and", "-"):
            continue
        if w in UNITS_WORDS:
            current += UNITS_WORDS[w]
            seen = True
        elif w == "dozen":
            current = (current or 1) * 12
            seen = True
        elif w in ("hundred",):
            current = (current or 1) * 100
            seen = True
        elif w in ("thousand", "million", "billion", "trillion"):
            total += (current or 1) * SCALES[w]
            current = 0
            seen = True
        else:
            return None
    return total + current if seen else None


def _parse_number(token: str) -> Optional[float]:
    try:
        return float(token.replace(",", ""))
    except ValueError:
        return None


def parse_quantity(text: str) -> Optional[Quantity]:
    """Parse a quantity expression.

    text (str): a QUANTITY span such as "more than 1,700 procedures", "£4.5m",
        "400GB of data", "three weeks", "between 10 and 20 hospitals", "40% of appointments".
    RETURNS (Optional[Quantity]): the parse, or None when no number can be read.
    """
    original = text
    s = " ".join(text.replace("\u2009", " ").replace("\xa0", " ").split())
    low = s.lower()
    low = re.sub(r"^(?:all|the|some of the)\s+(?=[\d£$€a-z])", "", low) if re.match(r"^(?:all|the)\s+\S*\d", low) else low
    low = low.replace("a single ", "one ")
    # "five-day period", "72-hour outage": a hyphenated duration adjective.
    low = re.sub(r"\b([a-z\d.]+)-(second|minute|hour|day|week|month|year)s?\b", r"\1 \2s", low)
    low = re.sub(rf"({NUMBER})-(million|billion|thousand)\b", r"\1 \2", low)
    qualifier: Qualifier = "exact"
    stripped = True
    while stripped:
        stripped = False
        for pattern, qual in QUALIFIERS:
            m = re.match(rf"^(?:{pattern})\s+", low)
            if m:
                qualifier = qual if qualifier == "exact" else qualifier
                low = low[m.end():]
                stripped = True
                break

    low = low.replace("and a half", "and half")
    # Money ranges: "£6m to £7m", "$1m-$2m"
    mr = re.match(rf"^(?:between\s+)?([£$€])({NUMBER})\s?(k|m|bn|million|billion)?\s*(?:-|–|to|and)\s*([£$€])?({NUMBER})\s?(k|m|bn|million|billion)?$", low)
    if mr:
        cur = CURRENCIES[mr.group(1)]
        hi_scale = SCALES.get(mr.group(6) or "", 1)
        lo_scale = SCALES.get(mr.group(3) or "", 0) or hi_scale
        return Quantity(text=original, value=_parse_number(mr.group(2)) * lo_scale, value_high=_parse_number(mr.group(5)) * hi_scale,
                        unit=cur, qualifier="range", kind="money", currency=cur)
    # Ranges: "between 10 and 20", "10-20", "10 to 20"
    rng = re.match(rf"^(?:between\s+)?({NUMBER}|[a-z]+)\s*(?:-|–|to|and)\s*({NUMBER}|[a-z]+)\b\s*(.*)$", low)
    if rng and (low.startswith("between") or re.match(rf"^(?:{NUMBER}\s*(?:-|–|to)\s*{NUMBER}|[a-z]+\s+to\s+[a-z]+)\s", low + " ")):
        a = _parse_number(rng.group(1)) if rng.group(1)[0].isdigit() else _word_number([rng.group(1)])
        b = _parse_number(rng.group(2)) if rng.group(2)[0].isdigit() else _word_number([rng.group(2)])
        if a is not None and b is not None:
            rest_q = parse_quantity(f"{rng.group(2)} {rng.group(3)}".strip())
            scale = (rest_q.value / b) if rest_q and b else 1
            unit = rest_q.unit if rest_q else None
            kind = rest_q.kind if rest_q else "count"
            return Quantity(text=original, value=a * scale, value_high=b * scale, unit=unit, qualifier="range",
                            kind=kind, currency=rest_q.currency if rest_q else None)

    # Money: currency symbol or code before, or currency word after.
    m = re.match(rf"^(us\$|a\$|au\$|c\$|nz\$|s\$|hk\$|[£$€¥]|usd|gbp|eur)\s?({NUMBER})(?![\d.])\s?(k|m|mn|bn|b|tn|thousand|million|billion|trillion)?\b", low)
    if m:
        value = _parse_number(m.group(2)) * SCALES.get(m.group(3) or "", 1)
        return Quantity(text=original, value=value, unit=CURRENCIES[m.group(1)], qualifier=qualifier, kind="money", currency=CURRENCIES[m.group(1)])

    # Percentages
    m = re.match(rf"^({NUMBER}|[a-z]+(?:[ -][a-z]+)?)\s?(%|per ?cent|percent)\s*(?:of\s+(.*))?$", low)
    if m:
        num = _parse_number(m.group(1)) if m.group(1)[0].isdigit() else _word_number(re.split(r"[ -]", m.group(1)))
        if num is not None:
            return Quantity(text=original, value=num, unit=m.group(3) or "%", qualifier=qualifier, kind="percentage")
    m = re.match(r"^(?:(?:a|one)\s+)?(half|third|quarter|fifth|tenth)\b(?:\s+(?:of\s+)?(.*))?$", low)
    if m and not (m.group(2) or "").split(" ")[0] in DURATION_DAYS:
        frac = {"half": 50, "third": 100 / 3, "quarter": 25, "fifth": 20, "tenth": 10}[m.group(1)]
        rest = re.sub(r"^(?:the|its)\s+", "", m.group(2) or "") or None
        return Quantity(text=original, value=frac, unit=rest, qualifier=qualifier, kind="percentage")

    # Data sizes: "6.5TB of data", "400 gigabytes"
    m = re.match(rf"^({NUMBER})\s?(kb|mb|gb|tb|pb|bytes?|kilobytes|megabytes|gigabytes?|terabytes?|petabytes)\b", low)
    if m:
        return Quantity(text=original, value=_parse_number(m.group(1)) * DATA_UNITS[m.group(2) if m.group(2) in DATA_UNITS else m.group(2) + "s"],
                        unit="bytes", qualifier=qualifier, kind="data")

    # Vague counts: "dozens of GP practices", "thousands of patients"
    for phrase in sorted(VAGUE, key=len, reverse=True):
        if low == phrase or low.startswith(phrase + " "):
            value, qual = VAGUE[phrase]
            rest = low[len(phrase):].strip()
            rest = rest[3:] if rest.startswith("of ") else rest
            return Quantity(text=original, value=value, unit=rest or None, qualifier=qual if qualifier == "exact" else qualifier, kind="count")

    # Number (digits with optional scale, or words) then the rest.
    m = re.match(rf"^({NUMBER})(?![\d.])\s?(k|m|mn|bn|b|tn|thousand|million|billion|trillion)?\b\s*(.*)$", low)
    if m and not re.match(r"^(kb|mb|gb|tb|pb)\b", low[len(m.group(1)):].strip()):
        value = _parse_number(m.group(1)) * SCALES.get(m.group(2) or "", 1)
        rest = m.group(3)
    else:
        m2 = re.match(rf"^({NUMBER})\s?(.*)$", low)
        words = low.split()
        value, rest = None, ""
        if m2:
            value, rest = _parse_number(m2.group(1)), m2.group(2)
        else:
            for i in range(len(words), 0, -1):
                v = _word_number([w for part in words[:i] for w in part.split("-")])
                if v is not None:
                    value, rest = v, " ".join(words[i:])
                    break
        if value is None:
            return None
    rest = rest.strip()
    # "2 million people": a scale word may follow a word number too ("two million").
    sm = re.match(r"^(thousand|million|billion|trillion)\b\s*(.*)$", rest)
    if sm:
        value *= SCALES[sm.group(1)]
        rest = sm.group(2)
    first = rest.split(" ")[0] if rest else ""
    if first in DATA_UNITS or re.match(r"^(kb|mb|gb|tb|pb)$", first):
        unit_rest = rest[len(first):].strip()
        unit_rest = unit_rest[3:] if unit_rest.startswith("of ") else unit_rest
        return Quantity(text=original, value=value * DATA_UNITS[first], unit="bytes", qualifier=qualifier, kind="data")
    if first in DURATION_DAYS:
        return Quantity(text=original, value=value * DURATION_DAYS[first], unit="days", qualifier=qualifier, kind="duration")
    if first in CURRENCIES:
        return Quantity(text=original, value=value, unit=CURRENCIES[first], qualifier=qualifier, kind="money", currency=CURRENCIES[first])
    if rest.startswith("of "):
        rest = rest[3:]
    return Quantity(text=original, value=value, unit=rest or None, qualifier=qualifier, kind="count")
