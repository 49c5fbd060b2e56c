"""The arithmetic workload: seeded d-digit addition/subtraction, exact-match checking, step-by-step TF and QE
verifier templates, the true answer as the stronger source, and a tiny Llama pretrained here on first use."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from workloads.base import Problem, QEQuery, Split, TFQuery

from . import templates
from .cache import cached_build
from .options import ArithmeticOptions
from .problems import ProblemSpace

# Bump when the problem format, templates, tokenizer or pretraining code change what a recipe builds.
RECIPE_VERSION = 1


class ArithmeticWorkload:
    name = "arithmetic"

    def __init__(self, options: ArithmeticOptions | None = None):
        self.options = options or ArithmeticOptions()
        self.space = ProblemSpace(self.options)

    def problems(self, split: Split, n: int, seed: int) -> list[Problem]:
        return self.space.problems(split, n, seed)

    def check(self, problem: Problem, response: str) -> bool:
        return response.strip() == problem.answer

    def tf_query(self, problem: Problem, response: str) -> TFQuery:
        return templates.tf_query(problem.prompt, response, self.space.width)

    def qe_query(self, problem: Problem, response: str) -> QEQuery:
        return templates.qe_query(problem.prompt, response, self.space.width)

    def reference(self, problem: Problem) -> str:
        a, op, b = self.space.parse_id(problem.id)
        return self.space.answer_text(a, op, b)

    def recipe(self) -> dict:
        return {"workload": self.name, "version": RECIPE_VERSION, "options": self.options.model_dump()}

    def base_model(self, cache_dir: Path, progress: Callable[[str], None] | None = None) -> Path:
        """The default recipe's weights shipped with the package (shipped.py: the same π_0 on every machine), or
        this recipe built here once and cached. It logs what it does; `progress` is deprecated and ignored."""
        from . import shipped

        if progress is not None:
            warnings.warn("base_model(progress=...) is deprecated and ignored: svgap logs through `logging`",
                          DeprecationWarning, stacklevel=2)
        found = shipped.shipped_model(self.recipe())
        if found is not None:  # copied into the cache under its own key: never mixed with a local build of the recipe
            return cached_build(cache_dir, self.name, shipped.cache_recipe(self.recipe(), found),
                                lambda out: shipped.install(out, found))
        return cached_build(cache_dir, self.name, self.recipe(), self._build)

    def _build(self, out: Path) -> dict:
        from .pretrain import pretrain  # torch only when a model is built
        from .tokenizer import build_tokenizer

        res = pretrain(self.options)
        res.model.save_pretrained(out)
        build_tokenizer().save_pretrained(out)
        return {"steps": res.steps, "seconds": round(res.seconds, 1), "stopped_by": res.stopped_by,
                "verifier_phase_steps": res.verifier_phase_steps,
                "dev_solver_accuracy": round(res.dev_solver_accuracy, 4),
                "dev_verifier_auc": round(res.dev_verifier_auc, 4)}
