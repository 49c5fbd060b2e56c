"""A pool actor's start skips scikit-learn and scipy (orchestrator/engines/lean_import.py), and nothing else notices:
transformers' own availability checks give the real answers afterwards and the engine samples and scores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys
from orchestrator.models.source import ModelSource
from orchestrator.roles.worker import InferenceWorker, WorkerSpec
spec = WorkerSpec("generation", ModelSource("arithmetic", {}, sys.argv[1], "unused"), "cpu", "float32", 1.0, None)
w = InferenceWorker(spec)
cands = w.backend.sample(["12+7="], n=2, temperature=1.0, max_new_tokens=4, seeds=[0])[0]
scored = w.backend.score(["12+7="], [cands[0].token_ids])[0]
import transformers.utils as tu
print(json.dumps({"sklearn": "sklearn" in sys.modules, "scipy.optimize": "scipy.optimize" in sys.modules,
                  "sklearn_available": tu.is_sklearn_available(), "scipy_available": tu.is_scipy_available(),
                  "logprob_diff": max(abs(-a - b) for a, b in zip(cands[0].logprobs, scored.token_nll))}))
"""


def test_actor_start_skips_sklearn_and_scipy_and_still_works(base_model_dir):
    proc = subprocess.run([sys.executable, "-c", PROBE, str(base_model_dir)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["sklearn"] is False and out["scipy.optimize"] is False, out
    # both are installed here (mlflow needs them): the checks are restored for everything imported later
    assert out["sklearn_available"] is True and out["scipy_available"] is True, out
    assert out["logprob_diff"] < 1e-4, out
