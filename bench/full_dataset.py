"""A full-size stand-in for the UCI Online Retail file, shaped like the real
one (../shared/notes/foreign-input.md), for runs at the data set's size where
the file itself cannot be downloaded.

    python -m bench.full_dataset OUT.csv [--rows 541909] [--encoding cp1252 --crlf]
                                         [--layout "Online Retail II"] [--pandas]

Deterministic (seeded). What it reproduces, in the real file's proportions:
invoices of about 20 lines sorted by time from 12/1/2010 8:26 to 12/9/2011
12:50 (no Saturdays, a Christmas break), a quarter of the rows without a
customer (whole invoices), `C` cancellations with negative quantities, 3 `A`
adjustments with negative prices, rows without a description at price 0,
negative quantities off `C` invoices, zero prices, fully duplicated lines,
descriptions with quoted commas, doubled quotes, trailing spaces and `£`,
the odd stock codes (POST, M, m, BANK CHARGES, DCGS0003, gift_0001_20) and
countries (EIRE, RSA, Unspecified, European Community). Every row is valid,
as in the real file. The last line on stdout is JSON: rows, and the sums of
quantity and of quantity x unit price, computed here, not by the parser.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
from decimal import Decimal
from pathlib import Path

from producer.csv_source import LAYOUTS

FULL_ROWS = 541_909
START = dt.datetime(2010, 12, 1, 8, 26)
END = dt.datetime(2011, 12, 9, 12, 50)
CHRISTMAS = (dt.date(2010, 12, 24), dt.date(2011, 1, 3))  # no trading in between
# Shares of rows in the real file (counts over 541,909).
NO_CUSTOMER = 135_080 / FULL_ROWS
CANCELLED_INVOICES = 3_836 / 25_900  # holding 9,288 rows: cancellations are short
NO_DESCRIPTION = 1_454 / FULL_ROWS
NEGATIVE_OFF_C = 1_336 / FULL_ROWS
ZERO_PRICE = (2_515 - 1_454) / FULL_ROWS
DUPLICATED = 5_268 / FULL_ROWS
QUOTED_COMMA = 4_796 / FULL_ROWS
POUND = 32 / FULL_ROWS
LINES_PER_INVOICE = 21
COUNTRIES = [("United Kingdom", 0.914), ("Germany", 0.017), ("France", 0.016), ("EIRE", 0.015),
             ("Spain", 0.005), ("Netherlands", 0.004), ("Belgium", 0.004), ("Switzerland", 0.004),
             ("Portugal", 0.003), ("Australia", 0.002), ("Norway", 0.002), ("Italy", 0.001),
             ("Channel Islands", 0.001), ("Finland", 0.001), ("Cyprus", 0.001), ("Unspecified", 0.001),
             ("European Community", 0.0005), ("RSA", 0.0005), ("Japan", 0.0005), ("USA", 0.0005)]
WORDS = ("WHITE HANGING HEART T-LIGHT HOLDER|METAL LANTERN|CREAM CUPID HEARTS COAT HANGER|KNITTED UNION FLAG "
         "HOT WATER BOTTLE|RED WOOLLY HOTTIE|SET 7 BABUSHKA NESTING BOXES|GLASS STAR FROSTED T-LIGHT HOLDER|"
         "HAND WARMER UNION JACK|ASSORTED COLOUR BIRD ORNAMENT|POPPY'S PLAYHOUSE BEDROOM|FELTCRAFT PRINCESS "
         "CHARLOTTE DOLL|IVORY KNITTED MUG COSY|BOX OF VINTAGE JIGSAW BLOCKS|ALARM CLOCK BAKELIKE PINK|"
         "JUMBO BAG RED RETROSPOT|LUNCH BAG SPACEBOY DESIGN|PARTY BUNTING|REGENCY CAKESTAND 3 TIER").split("|")
ODD_CODES = [("POST", "POSTAGE", "18.00"), ("M", "Manual", "0.85"), ("m", "Manual", "2.55"),
             ("BANK CHARGES", "Bank Charges", "15.00"), ("DCGS0003", "BOXED GLASS ASHTRAY", "2.46"),
             ("gift_0001_20", "Dotcomgiftshop Gift Voucher 20.00", "16.67"), ("DOT", "DOTCOM POSTAGE", "11.17"),
             ("C2", "CARRIAGE", "50.00"), ("D", "Discount", "27.50")]


def catalogue(rng: random.Random, size: int = 3_900) -> list[tuple[str, str, str]]:
    """(stock code, description, unit price) of every product."""
    products = []
    for number in range(size):
        code = f"{20_000 + number * 17 % 70_000}{rng.choice(['', '', '', 'A', 'B', 'C', 'E', 'G', 'L'])}"
        words = rng.choice(WORDS).split()
        rng.shuffle(words)
        description = " ".join(words[: rng.randint(2, len(words))])
        roll = rng.random()
        if roll < QUOTED_COMMA:
            description = f"{description}, {rng.choice(['SET OF 3', 'ASSORTED', 'PACK OF 12'])}"
        elif roll < QUOTED_COMMA + 0.002:
            description = f'{description} "{rng.choice(["HELLO", "LOVE", "NOEL"])}" SIGN'
        if rng.random() < 0.2:
            description += " "  # meaningful trailing space: the real file has 113k of these rows
        price = Decimal(rng.choice([0.29, 0.42, 0.55, 0.85, 1.25, 1.65, 2.1, 2.55, 2.95, 3.39, 4.95, 7.95,
                                    12.75, 14.95])).quantize(Decimal("0.01"))
        products.append((code, description, str(price)))
    return products + ODD_CODES


def trading_minutes(rng: random.Random, invoices: int) -> list[dt.datetime]:
    """`invoices` times, sorted, START first and END last: weekdays and
    Sundays, 7:00 to 20:00."""
    days = []
    day = START.date()
    while day <= END.date():
        if day.weekday() != 5 and not CHRISTMAS[0] <= day <= CHRISTMAS[1]:
            days.append(day)
        day += dt.timedelta(days=1)
    inside = [dt.datetime.combine(day, dt.time(rng.randint(7, 19), rng.randint(0, 59)))
              for day in (rng.choice(days) for _ in range(max(invoices - 2, 0)))]
    return [START, *sorted(min(max(time, START), END) for time in inside), END][:invoices]


def rows(count: int, seed: int = 2010) -> list[dict]:
    """`count` rows as dicts of typed values, in file order."""
    rng = random.Random(seed)  # nosec B311: a reproducible data set, not a secret
    products = catalogue(rng)
    customers = [12_346 + 3 * n for n in range(4_372)]
    country_names, weights = zip(*COUNTRIES)
    invoices: list[list[dict]] = []
    total = 0
    while total < count:
        cancelled = rng.random() < CANCELLED_INVOICES
        invoice = f"C{536_365 + len(invoices)}" if cancelled else str(536_365 + len(invoices))
        customer = None if rng.random() < NO_CUSTOMER else rng.choice(customers)
        country = rng.choices(country_names, weights)[0]
        lines: list[dict] = []
        for _ in range(rng.randint(1, 4) if cancelled else rng.randint(1, 2 * LINES_PER_INVOICE)):
            code, description, price = rng.choice(products)
            quantity = rng.choice([1, 1, 2, 3, 4, 6, 6, 8, 10, 12, 12, 24, 25, 48, 96])
            roll = rng.random()
            unpriced = roll < NO_DESCRIPTION
            if cancelled:
                quantity = -quantity
            elif unpriced:  # stock found or written off, unpriced and unnamed
                description, price = "", "0"
                quantity = -rng.randint(1, 100) if rng.random() < 0.6 else rng.randint(1, 100)
            elif roll < NO_DESCRIPTION + NEGATIVE_OFF_C - 0.6 * NO_DESCRIPTION:
                description, price, quantity = rng.choice(["damages", "wet", "?", "check"]), "0", -quantity
            elif roll < NO_DESCRIPTION + NEGATIVE_OFF_C + ZERO_PRICE:
                price = "0"
            elif roll < NO_DESCRIPTION + NEGATIVE_OFF_C + ZERO_PRICE + POUND:
                description = f"Dotcomgiftshop Gift Voucher £{rng.choice([10, 20, 30, 40, 50])}.00"
            row = {"invoice": invoice, "code": code, "description": description, "quantity": quantity,
                   "price": price, "customer": None if unpriced and not cancelled else customer,
                   "country": country}
            lines.append(row)
            if rng.random() < DUPLICATED:
                lines.append(dict(row))  # the same line again, as the real file has 5,268 times
        invoices.append(lines)
        total += len(lines)
    out = [{**row, "date": when} for lines, when in zip(invoices, trading_minutes(rng, len(invoices)))
           for row in lines]
    # The real file's extremes: 3 bad-debt adjustments at a negative price, and
    # the largest order (80,995) cancelled minutes later.
    specials = [{"invoice": f"A{563_185 + n}", "code": "B", "description": "Adjust bad debt", "quantity": 1,
                 "date": dt.datetime(2011, 8, 12, 14, 50 + n), "price": "-11062.06", "customer": None,
                 "country": "United Kingdom"} for n in range(3)]
    specials += [{"invoice": invoice, "code": "23843", "description": "PAPER CRAFT , LITTLE BIRDIE",
                  "quantity": quantity, "date": dt.datetime(2011, 12, 9, 9, minute), "price": "2.08",
                  "customer": 16446, "country": "United Kingdom"}
                 for invoice, quantity, minute in (("581483", 80_995, 15), ("C581484", -80_995, 27))]
    return out[: max(count - len(specials), 0)] + specials[:count]


def quote(value: str) -> str:
    return f'"{value.replace(chr(34), chr(34) * 2)}"' if any(c in value for c in ',"\n') else value


def render(row: dict, pandas: bool) -> str:
    date = row["date"].strftime("%Y-%m-%d %H:%M:%S") if pandas else (
        f"{row['date'].month}/{row['date'].day}/{row['date'].year} {row['date'].hour}:{row['date'].minute:02d}")
    customer = "" if row["customer"] is None else (f"{row['customer']}.0" if pandas else str(row["customer"]))
    if pandas and not customer:
        customer = "nan"
    fields = [row["invoice"], row["code"], row["description"], str(row["quantity"]), date, row["price"],
              customer, row["country"]]
    return ",".join(quote(field) for field in fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.full_dataset", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=FULL_ROWS)
    parser.add_argument("--encoding", choices=("utf-8", "cp1252"), default="utf-8")
    parser.add_argument("--crlf", action="store_true", help="Windows line endings")
    parser.add_argument("--layout", choices=tuple(LAYOUTS), default="Online Retail")
    parser.add_argument("--pandas", action="store_true", help="ISO dates, 17850.0 customer ids, nan for missing")
    parser.add_argument("--seed", type=int, default=2010)
    args = parser.parse_args(argv)
    data = rows(args.rows, args.seed)
    newline = "\r\n" if args.crlf else "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding=args.encoding, newline="") as out:
        out.write(",".join(LAYOUTS[args.layout]) + newline)
        for row in data:
            out.write(render(row, args.pandas) + newline)
    totals = {"rows": len(data), "quantity_sum": sum(r["quantity"] for r in data),
              "amount_sum": str(sum(r["quantity"] * Decimal(r["price"]) for r in data).quantize(Decimal("0.0001")))}
    print(f"wrote {len(data):,} rows to {args.out}", file=sys.stderr)
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
