"""Warnings a round's numbers call for: an experiment that says nothing should say so (issue: a real model on a
task it cannot do ran 100 % fallbacks, accuracy 0 and a collapsing verifier without a word)."""
from __future__ import annotations

import math


def _get(metrics: dict, key: str) -> float:
    v = metrics.get(key)
    return math.nan if v is None else float(v)


def warnings(records: list) -> list[str]:
    """What is wrong with the latest round (records[-1]), judged against round 0 where that matters."""
    if not records:
        return []
    last, first = records[-1].metrics, records[0].metrics
    t = records[-1].round
    out = []
    acc, passing = _get(last, "acc_s"), _get(last, "pass_at_n")
    if acc == 0.0 and passing == 0.0:
        out.append(f"round {t}: no candidate is correct (accuracy 0, pass@N 0): the model has no room on this task "
                   f"and training would fit it to wrong answers; check the pair with `svgap base-model`")
    elif acc >= 0.99:
        out.append(f"round {t}: solver accuracy {acc:.1%}: nothing left to improve on this task")
    fb = _get(last, "fallback_rate")
    if fb >= 0.9:
        out.append(f"round {t}: {fb:.0%} of prompts had no candidate passing verification.threshold (BoN fell "
                   f"back to the top score): the verifier rejects almost everything")
    capped = _get(last, "capped_share_v")
    if capped >= 0.25:
        out.append(f"round {t}: {capped:.0%} of BoN picks were cut off at generation.max_new_tokens "
                   f"({_get(last, 'capped_share'):.0%} of candidates); training on them teaches cut-off answers")
    auc0, auc = _get(first, "verifier_auc"), _get(last, "verifier_auc")
    share0, share = _get(first, "share_passing"), _get(last, "share_passing")
    if t > 0 and auc0 - auc >= 0.1 and share > share0:
        out.append(f"round {t}: the self-verifier is collapsing: ROC-AUC {auc0:.2f} -> {auc:.2f} while it accepts "
                   f"{share0:.0%} -> {share:.0%} of its own candidates")
    elif not math.isnan(auc) and auc < 0.55:
        out.append(f"round {t}: verifier ROC-AUC {auc:.2f}: the self-verifier barely tells right from wrong")
    return out
