"""parse_quantity(): a table of expressions as they appear in incident news."""
import pytest

from nhs_nlp.quantities import parse_quantity

CASES = [
    # text, value, value_high, unit, qualifier, kind
    ("six NHS trusts", 6, None, "nhs trusts", "exact", "count"),
    ("a dozen hospitals", 12, None, "hospitals", "exact", "count"),
    ("dozens of GP practices", 24, None, "gp practices", "at least", "count"),
    ("about 2 million people", 2e6, None, "people", "approximate", "count"),
    ("2m patients", 2e6, None, "patients", "exact", "count"),
    ("£4.5m", 4.5e6, None, "GBP", "exact", "money"),
    ("$22 million", 22e6, None, "USD", "exact", "money"),
    ("400GB of data", 400e9, None, "bytes", "exact", "data"),
    ("three weeks", 21, None, "days", "exact", "duration"),
    ("more than 1,700 procedures", 1700, None, "procedures", "more than", "count"),
    ("no fewer than six trusts", 6, None, "trusts", "at least", "count"),
    ("between 10 and 20 hospitals", 10, 20, "hospitals", "range", "count"),
    ("1.5bn records", 1.5e9, None, "records", "exact", "count"),
    ("40% of appointments", 40, None, "appointments", "exact", "percentage"),
    ("£3.5m", 3.5e6, None, "GBP", "exact", "money"),
    ("€69 million", 69e6, None, "EUR", "exact", "money"),
    ("at least €69 million", 69e6, None, "EUR", "at least", "money"),
    ("up to €2m", 2e6, None, "EUR", "up to", "money"),
    ("nearly $1.5bn", 1.5e9, None, "USD", "approximate", "money"),
    ("about $11 million", 11e6, None, "USD", "approximate", "money"),
    ("$4.4m", 4.4e6, None, "USD", "exact", "money"),
    ("US$10 million", 10e6, None, "USD", "exact", "money"),
    ("75 bitcoin", 75, None, "BTC", "exact", "money"),
    ("48.2 billion yen", 48.2e9, None, "JPY", "exact", "money"),
    ("3TB", 3e12, None, "bytes", "exact", "data"),
    ("6TB of data", 6e12, None, "bytes", "exact", "data"),
    ("700GB", 700e9, None, "bytes", "exact", "data"),
    ("1.5 terabytes of files", 1.5e12, None, "bytes", "exact", "data"),
    ("more than 17 gigabytes", 17e9, None, "bytes", "more than", "data"),
    ("72 hours", 3, None, "days", "exact", "duration"),
    ("46 days", 46, None, "days", "exact", "duration"),
    ("two months", 60, None, "days", "exact", "duration"),
    ("more than a week", 7, None, "days", "more than", "duration"),
    ("a fortnight", 14, None, "days", "exact", "duration"),
    ("nearly three weeks", 21, None, "days", "approximate", "duration"),
    ("four hours", 4 / 24, None, "days", "exact", "duration"),
    ("five years", 1825, None, "days", "exact", "duration"),
    ("10,000 outpatient appointments", 10000, None, "outpatient appointments", "exact", "count"),
    ("more than 10,000 outpatient appointments", 10000, None, "outpatient appointments", "more than", "count"),
    ("190 million people", 190e6, None, "people", "exact", "count"),
    ("9.7 million customers", 9.7e6, None, "customers", "exact", "count"),
    ("hundreds of servers", 200, None, "servers", "at least", "count"),
    ("thousands of appointments", 2000, None, "appointments", "at least", "count"),
    ("tens of thousands of patients", 20000, None, "patients", "at least", "count"),
    ("twenty-three councils", 23, None, "councils", "exact", "count"),
    ("two hundred staff", 200, None, "staff", "exact", "count"),
    ("one and a half million records", 1.5e6, None, "records", "exact", "count"),
    ("fewer than 25 staff", 25, None, "staff", "fewer than", "count"),
    ("around 80% of its IT environment", 80, None, "its it environment", "approximate", "percentage"),
    ("45 per cent", 45, None, "%", "exact", "percentage"),
    ("a fifth of patients", 20, None, "patients", "exact", "percentage"),
    ("10-20 hospitals", 10, 20, "hospitals", "range", "count"),
    ("£6m to £7m", 6e6, 7e6, "GBP", "range", "money"),
    ("between 30 and 45 minutes", 30 / 1440, 45 / 1440, "days", "range", "duration"),
    ("more than 100 systems", 100, None, "systems", "more than", "count"),
    ("some 1,500 businesses", 1500, None, "businesses", "approximate", "count"),
    ("roughly 15 billion transactions", 15e9, None, "transactions", "approximate", "count"),
    ("over 80 trusts", 80, None, "trusts", "more than", "count"),
    ("under 5% of systems", 5, None, "systems", "fewer than", "percentage"),
    ("as many as 10 other companies", 10, None, "other companies", "at least", "count"),
    ("seven teenagers", 7, None, "teenagers", "exact", "count"),
    ("£10.4m", 10.4e6, None, "GBP", "exact", "money"),
    ("$1bn", 1e9, None, "USD", "exact", "money"),
    ("£300m", 300e6, None, "GBP", "exact", "money"),
]


@pytest.mark.parametrize("text,value,high,unit,qualifier,kind", CASES, ids=[c[0] for c in CASES])
def test_parse_quantity(text, value, high, unit, qualifier, kind):
    q = parse_quantity(text)
    assert q is not None, text
    assert q.value == pytest.approx(value), (text, q)
    assert (q.value_high is None) == (high is None) and (high is None or q.value_high == pytest.approx(high)), (text, q)
    assert (q.qualifier, q.kind) == (qualifier, kind), (text, q)
    assert (q.unit or "").lower() == unit.lower() or (kind == "money" and q.currency == unit), (text, q)
    assert q.text == text


def test_unparseable_text_gives_none():
    assert parse_quantity("several trusts") is None
    assert parse_quantity("") is None


def test_table_has_enough_cases():
    assert len(CASES) >= 60


@pytest.mark.parametrize(
    "text,value,high,kind",
    [
        ("6.5TB of data", 6.5e12, None, "data"),
        ("$25-million", 25e6, None, "money"),
        ("S$250,000", 250000, None, "money"),
        ("three to four weeks", 21, 28, "duration"),
        ("five-day period", 5, None, "duration"),
        ("a single day", 1, None, "duration"),
        ("more than half the population", 50, None, "percentage"),
        ("up to approximately 350,000 items", 350000, None, "count"),
        ("all 6.5 million members", 6.5e6, None, "count"),
    ],
)
def test_forms_seen_in_the_corpus(text, value, high, kind):
    q = parse_quantity(text)
    assert q.value == pytest.approx(value) and q.kind == kind, q
    assert (high is None and q.value_high is None) or q.value_high == pytest.approx(high), q
