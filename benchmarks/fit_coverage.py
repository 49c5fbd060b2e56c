"""How often the 95% intervals of `svgap fit` cover the truth (docs/theory.md §2 fit; issue 16 item 5).

Replicates from orchestrator/theory/synthetic.py (as a new user would make them: a random true gap model per
replicate, 9-11 measured rounds, 1-2 % multiplicative noise on U_s and U_v). Prints the coverage of every reported interval and writes JSON to
benchmarks/out/fit_coverage.json. Usage: python benchmarks/fit_coverage.py [--replicates 300] [--n-boot 200]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from orchestrator.theory.synthetic import coverage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=300)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    res = coverage(a.replicates, a.n_boot, a.seed)
    res["seconds"] = time.perf_counter() - t0
    print(f"{'interval':<14}{'coverage':>10}   (nominal 95%, {a.replicates} replicates, n_boot {a.n_boot})")
    for k, c in res["coverage"].items():
        print(f"{k:<14}{c:>10.3f}")
    print(f"no-number verdicts: {res['verdicts'] or 'none'}; {res['seconds']:.1f}s")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "fit_coverage.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
