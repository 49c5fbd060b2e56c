"""What a run stores per round: the round's record and its training rows (plain data, written by the run store,
read back by resume, sync, studies and reports)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Metrics every round logs (step = t), in the order of the summary table's source.
ROUND_METRICS = ("U_s", "U_v", "G", "U_s_per_token", "U_v_per_token", "G_per_token", "len_s", "len_v",
                 "acc_s", "acc_v", "pass_at_n", "heldout_acc", "fallback_rate")


@dataclass
class PickRow:
    """One line of a round's JSONL: a training row (BoN pick or external example) and why it is there."""
    round: int
    problem_id: str
    prompt: str
    response: str
    external: bool
    correct: bool | None = None
    score: float | None = None
    nll: float | None = None
    length: int | None = None
    fallback: bool | None = None
    candidates_passing: int | None = None


@dataclass(frozen=True)
class RoundRecord:
    """Everything measured in round t with model version t; enough to resume after round t."""
    round: int
    version: int
    metrics: dict[str, float]
    timings: dict[str, float]
    counts: dict[str, int]
    train: dict[str, float] = field(default_factory=dict)
    # correct samples of each held-out problem (in the run's held-out order): paired tests between rounds
    heldout: list[int] = field(default_factory=list)

    def flat_metrics(self) -> dict[str, float]:
        """What goes to MLflow at step=t."""
        out = dict(self.metrics)
        out.update({f"time/{k}": v for k, v in self.timings.items()})
        out.update({f"train/{k}": v for k, v in self.train.items()})
        return out

    def to_json(self) -> dict:
        return asdict(self)


STOP_CODES = {"stop": 1.0, "continue": 0.0, "undetermined": -1.0}


def fit_metrics(data: dict | None) -> dict[str, float]:
    """The fit/* metrics of a round from its fit JSON (fits/round_XXX.json): what the run logs at step t, what sync
    and resume send."""
    if not data:
        return {}
    r2, to_eps = data.get("r2") or {}, data.get("rounds_to_eps") or {}
    out = {"fit/rate": data.get("rate"), "fit/U_s_inf": data.get("U_s_inf"), "fit/U_v_inf": data.get("U_v_inf"),
           "fit/G_inf": data.get("G_inf"), "fit/r2_U_s": r2.get("U_s"), "fit/r2_U_v": r2.get("U_v"),
           "fit/r2_G": r2.get("G"), "fit/rounds_to_eps": to_eps.get("rounds"),
           "fit/sensitivity": data.get("sensitivity"),
           "fit/decaying": float(str(data.get("verdict", "")).startswith("decaying"))}
    external = data.get("external")
    if isinstance(external, dict):
        out["fit/gamma"] = external.get("gamma")
        out["fit/U_s_inf_external"] = external.get("U_s_inf")
    stop = data.get("stop")
    if isinstance(stop, dict):  # the stop rule's decision (theory/decision.py): 1 stop, 0 continue, -1 undetermined
        out["fit/stop"] = STOP_CODES.get(stop.get("decision"))
        out["fit/stop_gain"], out["fit/stop_gain_upper"] = stop.get("gain"), stop.get("gain_upper")
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
