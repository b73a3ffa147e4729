"""The reconciliation itself: the raw zone's rows against what each store
holds of them, as a report. Pure: the reads are done (reconcile/window.py,
reconcile/stores.py) before anything here runs.

Drift is counted in events:
- missing: in the raw zone, not in the store;
- doubled: in the store more than once (the warehouse; DynamoDB's key is the
  event, it cannot double);
- differing: in the store with another quantity or amount;
- lost (raw zone): an object the warehouse's ledger says it loaded from the
  window's days is gone from the raw zone, so nothing can be rebuilt from it
  (an hourly window's days are whole days: each of their runs says so).
An object the ledger has not recorded is listed but is not drift by itself:
its rows may have come in through another cut of the same batch, and any
that did not are counted missing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, Mapping

from reconcile.stores import Held
from reconcile.window import RawRow, RawWindow, Window

STORES = ("raw_zone", "dynamodb", "warehouse")
AMOUNT_STEP = Decimal("0.0001")  # a price has at most 4 decimals, so an amount too: exact at this scale


def money(amount: Decimal) -> str:
    """An amount as the report spells it, the same for every store. Pure."""
    return format(amount.quantize(AMOUNT_STEP), "f")


@dataclass(frozen=True)
class Report:
    window: Window
    figures: dict[str, dict]  # per store: rows, quantity, amount and drift counts
    missing: dict[str, list[RawRow]]  # per store
    doubled: dict[str, list[RawRow]]
    differing: dict[str, list[RawRow]]
    lost_objects: list[str]
    unloaded_objects: list[str]
    settling_objects: int
    drift_by_store: dict[str, int] = field(default_factory=dict)

    @property
    def drift(self) -> int:
        return sum(self.drift_by_store.values())

    def as_dict(self, max_listed: int = 1000) -> dict:
        """The JSON report; each list names at most `max_listed` events (its count is always whole)."""
        def listed(rows: list[RawRow]) -> list[dict]:
            return [_event(r) for r in rows[:max_listed]]

        by_shard: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for kind in (self.missing, self.doubled, self.differing):
            for store, rows in kind.items():
                for row in rows:
                    by_shard[row.found_in.shard_id][store] += 1
        return {
            "window": self.window.as_dict(),
            "drift": self.drift,
            "drift_by_store": self.drift_by_store,
            "stores": self.figures,
            "missing": {store: listed(rows) for store, rows in self.missing.items()},
            "doubled": {store: listed(rows) for store, rows in self.doubled.items()},
            "differing": {store: listed(rows) for store, rows in self.differing.items()},
            "by_shard": {shard: dict(counts) for shard, counts in sorted(by_shard.items())},
            "lost_objects": self.lost_objects[:max_listed],
            "unloaded_objects": self.unloaded_objects[:max_listed],
            "settling_objects": self.settling_objects,
        }


def _event(row: RawRow) -> dict:
    name = row.found_in
    return {"event_id": row.event_id, "invoice_no": row.invoice_no, "shard_id": name.shard_id,
            "first": name.first.label, "last": name.last.label, "object": name.key}


def reconcile(window: Window, raw: RawWindow, dynamodb: Mapping[str, Held], warehouse: Mapping[str, Held],
              loaded: Iterable[str], ledger_keys: Iterable[str]) -> Report:
    """Compare every raw row with what DynamoDB and the warehouse hold of it."""
    rows = sorted(raw.rows.values(), key=lambda r: (r.found_in.key, r.event_id))
    quantity = sum(r.quantity for r in rows)
    amount = sum((r.amount for r in rows), Decimal(0))
    figures = {"raw_zone": {"objects": len(raw.objects), "records": raw.records, "rows": len(rows),
                            "quantity": quantity, "amount": money(amount)}}
    missing, doubled, differing = {}, {}, {}
    for store, held in (("dynamodb", dynamodb), ("warehouse", warehouse)):
        missing[store] = [r for r in rows if r.event_id not in held]
        doubled[store] = [r for r in rows if r.event_id in held and held[r.event_id].copies > 1]
        differing[store] = [r for r in rows if r.event_id in held and _differs(r, held[r.event_id])]
        present = [held[r.event_id] for r in rows if r.event_id in held]
        figures[store] = {
            "rows": sum(h.copies for h in present),
            "events": len(present),
            "quantity": sum(h.quantity for h in present),
            "amount": money(sum((h.amount for h in present), Decimal(0))),
            "missing": len(missing[store]),
            "doubled": len(doubled[store]),
            "differing": len(differing[store]),
        }
    read = {name.key for name in raw.objects}
    lost = sorted(set(ledger_keys) - raw.listed)
    unloaded = sorted(read - set(loaded))
    figures["raw_zone"]["lost_objects"] = len(lost)
    figures["warehouse"]["unloaded_objects"] = len(unloaded)
    drift = {"raw_zone": len(lost)}
    for store in ("dynamodb", "warehouse"):
        drift[store] = len(missing[store]) + len(doubled[store]) + len(differing[store])
    for store in STORES:
        figures[store]["drift"] = drift[store]
    return Report(window, figures, missing, doubled, differing, lost, unloaded, len(raw.settling), drift)


def _differs(row: RawRow, held: Held) -> bool:
    """Whether a store's copy (each copy, when doubled) says another quantity or amount. Pure."""
    return held.quantity != row.quantity * held.copies or held.amount != row.amount * held.copies
