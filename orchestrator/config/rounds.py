"""`generation` and `verification`: how a round samples candidates and how the model judges them."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from orchestrator.config.fields import Num, Range, Section


class GenerationConfig(Section):
    """The solver's sampling: N candidates per prompt."""
    n: Annotated[int, Range(1)] = Field(8, description="candidates per prompt (best-of-N)")
    temperature: Annotated[Num, Range(0.0, 10.0, lo_open=True)] = Field(1.0, description="sampling temperature")
    max_new_tokens: Annotated[int, Range(1)] = Field(8, description="longest candidate, tokens")
    batch_size: Annotated[int, Range(1)] = Field(512, description="sequences per generation batch")


class VerificationConfig(Section):
    """The model judges its own candidates (docs/theory.md §1) and, with `uncertainty: scored`, also measures their
    uncertainty U = -log pi_t(y|x) by a teacher-forced pass -- independent of the sampling engine's kernels and
    precision. `sampled` takes U from the generation engine's logprobs instead (free; with the HF engine in
    float32 the two agree to 1e-4, and each round logs `U_s_sampled` next to U_s so any difference shows)."""
    method: Literal["tf", "qe"] = Field("tf", description="tf: true/false judgment; qe: graded quality estimate")
    threshold: Annotated[Num, Range(0.0, 1.0)] = Field(0.5, description="score sigma a pick must reach")
    batch_size: Annotated[int, Range(1)] = Field(512, description="queries per verification batch")
    uncertainty: Literal["scored", "sampled"] = Field(
        "scored", description="scored: U by a teacher-forced pass (the HF engine in float32 computes the same numbers "
                              "while sampling, so it reuses them and runs no second pass); sampled: from the "
                              "generation engine's logprobs")
