"""A sweep's summary: one row per grid point (seed mean ± s.d.), and plots of its numbers against each swept axis.

Per point: final held-out accuracy, the gap fit on each seed's rounds (rate, U_s,inf, G_inf, R² of U_s; `svgap fit`'s
fit, or its verdict), the trial's wall time, generation tokens/s, and each stage's mean time per round; for a trial
the theory scheduler stopped, its stop round, predicted limit and the compute saved. The scaling study adds the
speed-up of a round and of generation against the point with the fewest generation actors.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from pathlib import Path

from orchestrator.errors import SvgapError
from orchestrator.theory import verdicts as vd


def csv_text(keys: list[str], rows: list[dict]) -> str:
    """A study table's rows as CSV (seeds space-separated, a missing number empty): one writer for every study."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(keys)
    for r in rows:
        w.writerow([" ".join(map(str, r[k])) if k == "seeds" else ("" if r[k] is None else r[k]) for k in keys])
    return buf.getvalue()


STAGES = ("generate", "verify", "train", "sync", "round")


def _mean_sd(xs) -> tuple[float | None, float | None]:
    xs = [x for x in xs if x is not None and isinstance(x, (int, float)) and math.isfinite(x)]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def _fit(records: list, quantity: str) -> dict:
    from orchestrator.theory.fit import fit_gap

    sfx = "" if quantity == "total" else "_per_token"
    if len(records) < 4:
        return {"verdict": f"{len(records)} rounds (a fit needs 4)"}
    try:
        f = fit_gap([r.round for r in records], [r.metrics["U_s" + sfx] for r in records],
                    [r.metrics["U_v" + sfx] for r in records], n_boot=0, quantity=quantity, backtest=False)
    except (SvgapError, KeyError) as e:
        return {"verdict": str(e)}
    if not f.decaying:
        return {"verdict": f.verdict}
    return {"rate": f.rate, "U_s_inf": f.U_s_inf, "G_inf": f.G_inf, "r2": (f.r2 or {}).get("U_s"), "verdict": None}


def _stage_means(records: list) -> dict[str, float | None]:
    out = {}
    for s in STAGES:
        xs = [r.timings[s] for r in records if s in r.timings]
        out[s] = statistics.fmean(xs) if xs else None
    return out


class SweepSummary:
    tag = "sweep"

    def __init__(self, kind: str = "sweep") -> None:
        self.kind = kind

    def name(self, spec, base) -> str:
        return f"{self.kind} " + " ".join(f"{k}={','.join(map(str, v))}" for k, v in spec.grid.items())

    def summarize(self, outcomes: list, base, spec) -> dict:
        points: dict[str, list] = {}
        for o in outcomes:
            points.setdefault(o.variant.point_label, []).append(o)
        rows = []
        for label, outs in points.items():
            ok = [o for o in outs if o.records]
            fits = [_fit(o.records, base.fit.quantity) for o in ok]
            stages = [_stage_means(o.records) for o in ok]
            row = {"point": label, "values": outs[0].variant.point, "seeds": [o.variant.seed for o in outs],
                   "failed_seeds": [o.variant.seed for o in outs if o.error],
                   "run_ids": [o.run_id for o in outs], "attempts": [o.attempts for o in outs],
                   "rounds_run": [len(o.records) for o in outs]}
            for key, xs in (("initial_acc", [o.records[0].metrics.get("heldout_acc") for o in ok]),
                            ("final_acc", [o.records[-1].metrics.get("heldout_acc") for o in ok]),
                            ("rate", [f.get("rate") for f in fits]), ("U_s_inf", [f.get("U_s_inf") for f in fits]),
                            ("G_inf", [f.get("G_inf") for f in fits]), ("r2_U_s", [f.get("r2") for f in fits]),
                            ("wall_s", [o.seconds for o in ok]),
                            ("tokens_per_s", [statistics.fmean(r.metrics["tokens_per_s"] for r in o.records
                                                               if "tokens_per_s" in r.metrics) for o in ok
                                              if any("tokens_per_s" in r.metrics for r in o.records)])):
                row[key], row[key + "_sd"] = _mean_sd(xs)
            for s in STAGES:
                row[f"time/{s}"], _ = _mean_sd([st[s] for st in stages])
            row["verdicts"] = sorted({vd.word_of(f["verdict"]) or f["verdict"] for f in fits if f.get("verdict")})
            stops = [o.stop for o in outs if o.stop]
            row["stopped"] = [{"seed": o.variant.seed, "round": o.stop["round"], "rounds": o.stop["rounds"],
                               "predicted_U_s_inf": o.stop["prediction"]["limit"],
                               "interval": [o.stop["prediction"]["lo"], o.stop["prediction"]["hi"]],
                               "seconds_saved": o.stop["seconds_saved"], "share_saved": o.stop["share_saved"],
                               "reason": o.stop["reason"]} for o in outs if o.stop]
            row["seconds_saved"] = sum(s["seconds_saved"] for s in stops) if stops else None
            rows.append(row)
        self._speedup(rows, spec)
        summary = {"kind": self.kind, "grid": spec.grid, "seeds": spec.seeds, "rounds": base.rounds,
                   "quantity": base.fit.quantity, "trials": len(outcomes),
                   "failed": sum(bool(o.error) for o in outcomes), "stopped": sum(bool(o.stop) for o in outcomes),
                   "seconds_saved": sum(o.stop["seconds_saved"] for o in outcomes if o.stop)}
        return {"rows": rows, "summary": summary}

    @staticmethod
    def _speedup(rows: list[dict], spec) -> None:
        """Speed-up of a round and of generation vs the point with the fewest generation actors (scaling study)."""
        key = "resources.generation.actors"
        ref = min((r for r in rows if key in r["values"] and r["time/round"]), key=lambda r: r["values"][key],
                  default=None)
        for r in rows:
            ok = ref is not None and key in r["values"] and r["time/round"]
            r["speedup_round"] = ref["time/round"] / r["time/round"] if ok else None
            r["speedup_generate"] = (ref["time/generate"] / r["time/generate"]
                                     if ok and r["time/generate"] and ref["time/generate"] else None)

    # ---- text ----
    HEADER = ["point", "seeds", "final held-out acc", "rate", "U_s,inf", "G_inf", "R2(U_s)", "wall s", "gen tok/s",
              "s/round", "stopped (round: predicted U_s,inf, saved)"]
    SCALING = ["generate s", "verify s", "train s", "sync s", "speed-up round", "speed-up generate"]

    def rows_text(self, table: dict) -> tuple[list[str], list[list[str]]]:
        header = self.HEADER + (self.SCALING if self.kind == "scaling" else [])
        out = []
        for r in table["rows"]:
            seeds = ",".join(map(str, r["seeds"])) + (f" (failed: {r['failed_seeds']})" if r["failed_seeds"] else "")
            fit_cells = [_pm(r["rate"], r["rate_sd"], ".3f"), _pm(r["U_s_inf"], r["U_s_inf_sd"], ".4f"),
                         _pm(r["G_inf"], r["G_inf_sd"], ".4f"), _pm(r["r2_U_s"], None, ".3f")]
            if r["U_s_inf"] is None and r["verdicts"]:
                fit_cells = [", ".join(r["verdicts"])] + ["-"] * 3
            stopped = "; ".join(f"seed {s['seed']} at {s['round']}/{s['rounds']}: {s['predicted_U_s_inf']:.4f}, "
                                f"{s['seconds_saved']:.0f}s ({100 * s['share_saved']:.0f}% of rounds)"
                                for s in r["stopped"]) or "-"
            cells = [r["point"], seeds, _pm(r["final_acc"], r["final_acc_sd"], ".3f"), *fit_cells,
                     _pm(r["wall_s"], None, ".0f"), _pm(r["tokens_per_s"], None, ".0f"),
                     _pm(r["time/round"], None, ".2f"), stopped]
            if self.kind == "scaling":
                cells += [_pm(r[f"time/{s}"], None, ".2f") for s in ("generate", "verify", "train", "sync")]
                cells += [_pm(r["speedup_round"], None, ".2f") + "x", _pm(r["speedup_generate"], None, ".2f") + "x"]
            out.append(cells)
        return header, out

    def to_markdown(self, table: dict) -> str:
        header, rows = self.rows_text(table)
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        s = table["summary"]
        lines += ["", f"{s['trials']} trials ({s['seeds']} seed(s) per point), {s['rounds']} rounds; ± is the s.d. "
                      f"over seeds; fits of the {s['quantity']} NLL on all measured rounds"]
        if s["stopped"]:
            lines.append(f"stopped by the theory: {s['stopped']} trial(s), {s['seconds_saved']:.0f}s of rounds saved")
        if s.get("wall_s") is not None:
            lines.append(f"wall time {s['wall_s']:.0f}s, at most {s.get('concurrency')} trial(s) at a time, "
                         f"{s.get('trials_run')} run by this command")
        return "\n".join(lines) + "\n"

    def to_csv(self, table: dict) -> str:
        keys = ["point", "seeds", "final_acc", "final_acc_sd", "initial_acc", "rate", "U_s_inf", "G_inf", "r2_U_s",
                "wall_s", "tokens_per_s"] + [f"time/{s}" for s in STAGES] + ["speedup_round", "speedup_generate",
                                                                            "seconds_saved"]
        return csv_text(keys, table["rows"])

    def write(self, table: dict, folder: Path) -> list[Path]:
        from orchestrator import redact

        stem = "scaling" if self.kind == "scaling" else "sweep"
        files = {f"{stem}_table.json": json.dumps(redact.data(table), indent=1, default=str),
                 f"{stem}_table.md": self.to_markdown(table), f"{stem}_table.csv": self.to_csv(table)}
        paths = []
        for name, text in files.items():
            (folder / name).write_text(redact.text(text))
            paths.append(folder / name)
        return paths + plot(table, folder, stem)

    def metrics(self, table: dict) -> dict[str, float]:
        out = {}
        for i, r in enumerate(table["rows"]):
            for k in ("final_acc", "U_s_inf", "tokens_per_s", "time/round", "speedup_round"):
                if r.get(k) is not None:
                    out[f"{k}/{_safe(r['point'])}"] = r[k]
        s = table["summary"]
        out.update({k: s[k] for k in ("wall_s", "seconds_saved") if s.get(k) is not None})
        return out


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\- /]", "_", text)[:200]


def _pm(m, sd, fmt) -> str:
    if m is None:
        return "-"
    return f"{m:{fmt}}" if sd is None else f"{m:{fmt}} ± {sd:{fmt}}"


def plot(table: dict, folder: Path, stem: str) -> list[Path]:
    """One PNG per swept axis: final held-out acc, U_s,inf, tokens/s and s/round against the axis' values (the
    other axes' points as separate lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table["rows"]
    axes = list(table["summary"]["grid"])
    paths = []
    panels = [("final_acc", "final held-out acc"), ("U_s_inf", "fitted U_s,inf"), ("tokens_per_s", "gen tokens/s"),
              ("time/round", "s / round")]
    if table["summary"]["kind"] == "scaling":
        panels[1] = ("speedup_round", "speed-up of a round vs fewest actors")
    for axis in axes:
        fig, ax = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
        groups: dict[str, list] = {}
        for r in rows:
            rest = ", ".join(f"{k}={v}" for k, v in r["values"].items() if k != axis) or "all"
            groups.setdefault(rest, []).append(r)
        for rest, rs in groups.items():
            xs = [str(r["values"][axis]) for r in rs]
            for a, (key, title) in zip(ax, panels):
                ys = [r.get(key) if r.get(key) is not None else float("nan") for r in rs]
                err = [r.get(key + "_sd") or 0.0 for r in rs]
                a.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=rest)
                if all(math.isnan(y) for y in ys):  # a fit that is a verdict, or a point without the number
                    a.text(0.5, 0.5, "no number (see the table)", ha="center", transform=a.transAxes, fontsize=8)
                a.set_title(title, fontsize=9)
                a.set_xlabel(axis, fontsize=8)
        if len(groups) > 1:
            ax[0].legend(fontsize=7)
        fig.tight_layout()
        path = folder / f"{stem}_{_safe(axis).replace('/', '_')}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths
