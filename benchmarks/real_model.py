"""The real-model experiment's result: SmolLM2-135M-Instruct self-improving on chat arithmetic (configs/smollm2.yaml).

    python benchmarks/real_model.py                     # run the config (about 20 min on 2 cores), then summarise
    python benchmarks/real_model.py --run-dir runs/ID   # summarise a finished run folder

Prints a table and writes benchmarks/results/smollm2.json and the report figures (benchmarks/results/smollm2/):
held-out accuracy per round with its 95 % interval (problems resampled), U_s / U_v / G per round, the gap fit
(rate, limits, R², intervals) and the paired test of held-out accuracy, last round against round 0, on the same
problems (sign-flip permutation test of the per-problem differences, and Wilcoxon's signed-rank test).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results"
SERIES = ("U_s", "U_v", "G", "acc_s", "acc_v", "heldout_acc", "pass_at_n", "verifier_auc", "share_passing",
          "capped_share_v", "fallback_rate")


def heldout_interval(counts: np.ndarray, samples: int, reps: int = 2000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    acc = counts / samples
    means = acc[rng.integers(0, len(acc), (reps, len(acc)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def paired_test(before: np.ndarray, after: np.ndarray, samples: int, reps: int = 20000, seed: int = 0) -> dict:
    """Two-sided tests of mean(after - before) = 0 over the same held-out problems."""
    from scipy import stats

    d = (after - before) / samples
    rng = np.random.default_rng(seed)
    flips = rng.choice([-1.0, 1.0], size=(reps, len(d)))
    null = np.abs((flips * d).mean(axis=1))
    p_perm = float((np.sum(null >= abs(d.mean()) - 1e-12) + 1) / (reps + 1))
    nonzero = d[d != 0]
    p_wil = float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) else 1.0
    return {"gain": float(d.mean()), "problems": int(len(d)), "improved": int((d > 0).sum()),
            "worsened": int((d < 0).sum()), "p_permutation": p_perm, "p_wilcoxon": p_wil}


def summarise(run_dir: Path) -> dict:
    import yaml

    from orchestrator.report.html import render
    from orchestrator.theory.fit import fit_gap

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    samples = int(cfg["workload"]["heldout_samples"])
    recs = [json.loads(p.read_text()) for p in sorted((run_dir / "rounds").glob("round_*.json"))]
    rounds = []
    for r in recs:
        counts = np.asarray(r["heldout"], dtype=float)
        row = {"round": r["round"], **{k: r["metrics"].get(k) for k in SERIES},
               "heldout_ci": heldout_interval(counts, samples), "seconds": r["timings"].get("round")}
        rounds.append(row)
    first, last = (np.asarray(recs[i]["heldout"], dtype=float) for i in (0, -1))
    t = [r["round"] for r in recs]
    fit = fit_gap(t, [r["metrics"]["U_s"] for r in recs], [r["metrics"]["U_v"] for r in recs], n_boot=200)
    series = {k: {r["round"]: r["metrics"][k] for r in recs if r["metrics"].get(k) is not None} for k in SERIES}
    fig_dir = OUT / "smollm2"
    files = render(series, fig_dir, title="SmolLM2-135M-Instruct, chat arithmetic")
    fit_d = {k: v for k, v in asdict(fit).items() if k not in ("boot", "backtest")}
    test = paired_test(first, last, samples)
    base = rounds[0]["heldout_acc"]
    target = {"gain_points": 100 * test["gain"], "met": bool(test["gain"] >= 0.05 and test["p_permutation"] < 0.05
                                                            and rounds[-1]["U_s"] < rounds[0]["U_s"])}
    return {"config": cfg, "run_dir": str(run_dir), "rounds": rounds, "base_heldout": base,
            "paired_test_last_vs_0": test, "target_plus_5_points": target, "fit": fit_d,
            "figures": [str(p.relative_to(ROOT)) for p in files.figures]}


def table(res: dict) -> str:
    lines = [f"{'t':>2} {'held-out (95% CI)':>24} {'U_s':>7} {'U_v':>7} {'G':>6} {'acc_s':>6} {'acc_v':>6} "
             f"{'AUC':>5} {'s/round':>7}"]
    for r in res["rounds"]:
        lo, hi = r["heldout_ci"]
        auc = r["verifier_auc"] if r["verifier_auc"] is not None else float("nan")
        lines.append(f"{r['round']:>2} {r['heldout_acc']:>8.3f} [{lo:.3f}, {hi:.3f}] {r['U_s']:>7.3f} "
                     f"{r['U_v']:>7.3f} {r['G']:>6.3f} {r['acc_s']:>6.3f} {r['acc_v']:>6.3f} {auc:>5.2f} "
                     f"{(r['seconds'] or 0):>7.0f}")
    p = res["paired_test_last_vs_0"]
    f = res["fit"]
    lines.append(f"held-out gain last vs round 0: {100 * p['gain']:+.1f} points over {p['problems']} problems "
                 f"(improved {p['improved']}, worsened {p['worsened']}); permutation p = {p['p_permutation']:.4f}, "
                 f"Wilcoxon p = {p['p_wilcoxon']:.4f}; target met: {res['target_plus_5_points']['met']}")
    lines.append(f"fit: {f['verdict']}; rate {f['rate']}, U_s,inf {f['U_s_inf']}, U_v,inf {f['U_v_inf']}, "
                 f"R2 {f['r2']}, CI {f['ci']}")
    return "\n".join(lines)


def run_config(config: str) -> Path:
    out = Path("/tmp") / f"svgap-real-model-{int(time.time())}"
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", config, "--set", f"tracking.out_dir={out}",
                        "--tracking-uri", f"sqlite:///{out}.db"], cwd=ROOT, text=True, capture_output=True)
    sys.stderr.write(r.stderr[-4000:])
    if r.returncode != 0:
        raise SystemExit(f"the run failed (exit {r.returncode})")
    run_id = re.search(r"MLflow run id: (\w+)", r.stdout).group(1)
    return out / run_id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default=None, help="a finished run folder (default: run --config now)")
    ap.add_argument("--config", default="configs/smollm2.yaml")
    args = ap.parse_args()
    run_dir = Path(args.run_dir) if args.run_dir else run_config(args.config)
    res = summarise(run_dir)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "smollm2.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(table(res))


if __name__ == "__main__":
    main()
