"""The end-of-run table: the numbers printed are the numbers logged (same records, same rounding)."""
from __future__ import annotations

from rich.table import Table

from orchestrator.store.records import RoundRecord

COLUMNS = [("round", None), ("U_s", "U_s"), ("U_v", "U_v"), ("G", "G"), ("acc_s", "acc_s"), ("acc_v", "acc_v"),
           ("held-out acc", "heldout_acc"), ("fallback", "fallback_rate"), ("s/round", None)]


def round_table(records: list[RoundRecord]) -> Table:
    table = Table(title="self-improvement rounds (uncertainties: total NLL in nats)")
    for name, _ in COLUMNS:
        table.add_column(name, justify="right")
    for r in records:
        cells = [str(r.round)]
        for name, key in COLUMNS[1:]:
            if key is None:
                cells.append(f"{r.timings.get('round', float('nan')):.1f}")
            else:
                cells.append(f"{r.metrics[key]:.4f}")
        table.add_row(*cells)
    return table
