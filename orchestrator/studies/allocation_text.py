"""The allocation table as text: the printed/markdown table with its summary lines, and the CSV (the table itself is
built by studies/allocation.py from the study's outcomes). Pure dicts in, text out."""
from __future__ import annotations


def _f(x, fmt=".3f") -> str:
    return "-" if x is None else format(x, fmt)


def _pm(m, sd, fmt=".3f", have: int | None = None, of: int | None = None) -> str:
    """mean ± s.d.; with fewer seeds than the row has, says how many (a fit can fail on a seed)."""
    if m is None:
        return "-"
    text = f"{m:{fmt}}" if sd is None else f"{m:{fmt}} ± {sd:{fmt}}"
    return text + (f" ({have} of {of} seeds)" if have is not None and of is not None and have < of else "")


HEADER = ["strategy", "seeds", "initial held-out acc", "final held-out acc", "gain over none", "fitted U_s,inf",
          "fitted gamma", "predicted U_s(T)", "predicted rank", "observed rank"]


def _or_verdict(text: str, x: dict) -> str:
    """A theory cell: its number, or (none) the verdict words of the seeds that gave no number."""
    if text != "-" or not x.get("verdicts"):
        return text if not x.get("verdicts") else f"{text}; {', '.join(x['verdicts'])} ({x['verdict_seeds']} seeds)"
    return f"{', '.join(x['verdicts'])} ({x['verdict_seeds']} of {len(x['seeds'])} seeds)"


def table_rows(table: dict) -> list[list[str]]:
    out = []
    for x in table["rows"]:
        seeds = ",".join(map(str, x["seeds"])) + (f" (failed: {x['failed_seeds']})" if x["failed_seeds"] else "")
        gain = "-" if x["gain_over_none"] is None else f"{x['gain_over_none']:+.3f}"
        out.append([x["strategy"], seeds, _pm(x["initial_acc"], x["initial_acc_sd"]),
                    _pm(x["final_acc"], x["final_acc_sd"]), gain,
                    _or_verdict(_pm(x["U_s_inf"], x["U_s_inf_sd"], ".4f", x["U_s_inf_seeds"], len(x["seeds"])), x),
                    _pm(x["gamma"], x["gamma_sd"], ".3g", x["gamma_seeds"], len(x["seeds"])),
                    _f(x["predicted_U_s_T"], ".4f"),
                    _f(x["predicted_rank"], "d"), _f(x["observed_rank"], "d")])
    return out


def summary_lines(table: dict) -> list[str]:
    s = table["summary"]
    lines = [f"budget M = {s['budget']} external examples over {s['rounds']} training rounds; "
             f"uncertainty: {s['quantity']} NLL; ± is the s.d. over seeds",
             f"observed order (final held-out acc, best first): {' > '.join(s['observed_order']) or '-'}",
             f"predicted order (theory: U_s at round {s['rounds']}, lowest first; pooled gamma "
             f"{_f(s['gamma_pooled'], '.3g')}): {' > '.join(s['predicted_order']) or '-'}"]
    if s["external_spread"] is not None:
        gain = "-" if s["external_mean_gain"] is None else f"{s['external_mean_gain']:+.3f}"
        lines.append(f"spread between external strategies: {s['external_spread']:.3f} "
                     f"(final held-out acc, max - min of seed means) vs their mean gain over none: {gain}"
                     + ("" if s["all_external_beat_none"] is None else
                        f"; every external strategy beats none: {'yes' if s['all_external_beat_none'] else 'no'}"))
    lines += [f"note: {n}" for n in s["notes"]]
    return lines


def to_markdown(table: dict) -> str:
    rows = table_rows(table)
    out = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out + [""] + summary_lines(table)) + "\n"


def to_csv(table: dict) -> str:
    keys = ["strategy", "seeds", "initial_acc", "initial_acc_sd", "final_acc", "final_acc_sd", "gain_over_none",
            "U_s_inf", "U_s_inf_sd", "gamma", "gamma_sd", "predicted_U_s_T", "predicted_rank", "observed_rank"]
    from orchestrator.studies.table import csv_text

    return csv_text(keys, table["rows"])
