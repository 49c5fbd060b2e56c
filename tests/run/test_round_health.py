"""Warnings an uninformative round calls for (orchestrator/run/round_health.py)."""
from orchestrator.store.records import RoundRecord
from orchestrator.run.round_health import warnings


def rec(t, **m):
    base = {"acc_s": 0.3, "pass_at_n": 0.8, "fallback_rate": 0.1, "capped_share_v": 0.0, "capped_share": 0.0,
            "verifier_auc": 0.7, "share_passing": 0.5}
    return RoundRecord(t, t, {**base, **m}, {}, {})


def test_healthy_round_says_nothing():
    assert warnings([rec(0), rec(1, verifier_auc=0.68, share_passing=0.55)]) == []


def test_no_room_fallbacks_and_caps():
    got = " | ".join(warnings([rec(0, acc_s=0.0, pass_at_n=0.0, fallback_rate=1.0, capped_share_v=0.7,
                                   capped_share=0.8, verifier_auc=0.5)]))
    assert "no candidate is correct" in got and "100% of prompts had no candidate passing" in got
    assert "70% of BoN picks were cut off" in got and "barely tells right from wrong" in got


def test_collapsing_verifier():
    got = warnings([rec(0, verifier_auc=0.58, share_passing=0.48), rec(2, verifier_auc=0.31, share_passing=0.82)])
    assert len(got) == 1 and "collapsing: ROC-AUC 0.58 -> 0.31" in got[0] and "48% -> 82%" in got[0]
