"""`fit`, `stop` and `external`: the online fit of the gap dynamics and what it steers (docs/theory.md §2, §5)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from orchestrator.config.fields import Num, Range, Section


class FitConfig(Section):
    """Online fit of the gap dynamics (docs/theory.md §2) after every round from `min_rounds` records on."""
    online: bool = Field(True, description="fit after every round")
    min_rounds: Annotated[int, Range(4)] = Field(4, description="records before the first fit")
    quantity: Literal["total", "per_token"] = Field("total", description="NLL the fit reads")
    eps: Annotated[Num, Range(0.0, lo_open=True)] = Field(0.05, description="tolerance of the fit's verdicts")


class StopConfig(Section):
    """Optional early stop: end the run when the predicted remaining gain U_s(t) - U_s,inf < this."""
    when_predicted_gain_below: Annotated[Num | None, Range(0.0, lo_open=True)] = Field(
        None, description="null: never stop early")


class ExternalConfig(Section):
    """A limited budget of external data spread over rounds (docs/theory.md §5)."""
    budget: Annotated[int, Range(0)] = Field(0, description="external examples in all")
    strategy: Literal["none", "early", "uniform", "late", "explicit", "planned"] = Field(
        "none", description="how the budget is spread over the rounds (planned: by the fitted dynamics)")
    shares: list[Num] | None = Field(None, description="explicit: the budget's share of each training round")
    source: str = Field("workload", description="where the external examples come from")
    gamma: Annotated[Num | None, Range(0.0, lo_open=True)] = Field(None, description="planned: the data's "
                                                                                     "strength (null: estimated)")
    warmup_rounds: Annotated[int, Range(0)] = Field(4, description="planned: rounds before the plan is made")
    objective: Literal["limit", "horizon"] = Field("limit", description="planned: what the plan optimizes")
