"""`svgap base-model [CONFIG] [--set k=v ...] [--json]`: build (or load from cache) the workload's base model -- or
load any saved model named by model.path -- and measure its room to self-improve on the workload's held-out prompts
(orchestrator/run/metrics.py), before any round is spent on the pair. Progress is logged to stderr, the table (or
JSON) to stdout. The targets column applies to the default arithmetic recipe only."""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from orchestrator.errors import SvgapError

# the base model is measured with the reference engine of the engine registry, whatever model.engine the runs use:
# its numbers are the ones the rounds' are compared with
REFERENCE_ENGINE = "hf"
log = logging.getLogger(__name__)
RECIPE_FILE = "svgap-recipe.json"  # written by workloads that build their base model (build info, recipe)


def add_parser(sub):
    p = sub.add_parser("base-model", help="build or load the base model and print its room to self-improve",
                       description=__doc__)
    p.add_argument("config", nargs="?", default=None, help="experiment YAML (default: configs/arithmetic.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set generation.n=8 (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def checks(m: dict) -> dict[str, dict]:
    """The room-to-self-improve targets of the default recipe (issue 2), evaluated on measured numbers `m`."""
    acc = m["solver_accuracy"]
    out = {
        "solver_accuracy": (acc, "25% .. 70%", 0.25 <= acc <= 0.70),
        "pass_at_n": (m["pass_at_n"], f">= 1.5 x solver = {1.5 * acc:.1%}", m["pass_at_n"] >= 1.5 * acc),
        "auc": (m["auc"], ">= 0.75", not math.isnan(m["auc"]) and m["auc"] >= 0.75),
        "below_threshold": (m["below_threshold"], "> 0", m["below_threshold"] > 0),
        "bon_accuracy": (m["bon_accuracy"], f">= solver + 10 pt = {acc + 0.10:.1%}", m["bon_accuracy"] >= acc + 0.10),
    }
    if m.get("build_seconds") is not None:
        out["build_seconds"] = (m["build_seconds"], "<= 180 s", m["build_seconds"] <= 180)
    return {k: {"value": v, "target": t, "ok": bool(ok)} for k, (v, t, ok) in out.items()}


def room_checks(m: dict) -> dict[str, dict]:
    """Room to self-improve for any other model + workload: the solver-verifier gap the theory needs (a solver
    that is sometimes right, candidates of which some are right, a verifier better than chance)."""
    acc, auc = m["solver_accuracy"], m["auc"]
    out = {
        "solver_accuracy": (acc, "20% .. 70%", 0.20 <= acc <= 0.70),
        "pass_at_n": (m["pass_at_n"], f">= solver + 10 pt = {acc + 0.10:.1%}", m["pass_at_n"] >= acc + 0.10),
        "auc": (auc, ">= 0.6", not math.isnan(auc) and auc >= 0.6),
    }
    return {k: {"value": v, "target": t, "ok": bool(ok)} for k, (v, t, ok) in out.items()}


def no_room(m: dict) -> list[str]:
    """Warnings for a pair that cannot show self-improvement, whatever the targets."""
    acc, auc, out = m["solver_accuracy"], m["auc"], []
    if acc <= 0.02:
        out.append(f"solver accuracy {acc:.1%}: the model almost never solves this task; there is nothing to select "
                   f"(choose an easier task or another model)")
    elif acc >= 0.98:
        out.append(f"solver accuracy {acc:.1%}: the model already solves this task; nothing to improve")
    if math.isnan(auc) or 0.45 <= auc <= 0.55:
        out.append(f"verifier ROC-AUC {auc:.2f}: the self-verifier cannot tell right from wrong here; best-of-N "
                   f"selection will pick at random")
    if m.get("capped_share", 0) >= 0.25:
        out.append(f"{m['capped_share']:.0%} of candidates hit generation.max_new_tokens: answers are cut off")
    return out


def model_dir(cfg, workload) -> Path:
    """model.path, or the base model the workload builds (or finds in its cache)."""
    if cfg.model.path:
        path = Path(cfg.model.path).expanduser()
        if not path.is_dir():
            from orchestrator.models.packaged import import_hint

            raise SvgapError(f"model.path: no model directory at {path}" + import_hint(path))
        log.info(f"base model: using {path}")
        return path
    if callable(getattr(workload, "base_model", None)):
        return Path(workload.base_model(Path(cfg.model.cache_dir).expanduser()))
    raise SvgapError(f"workload {cfg.workload.name} builds no base model; set model.path to a saved model")


def measure(cfg) -> dict:
    """Build/load the model of `cfg` and measure it; returns the JSON-able report."""
    from orchestrator.engines.chat import workload_for

    workload = workload_for(cfg)
    t0 = time.time()
    path = model_dir(cfg, workload)
    ready_s = time.time() - t0
    info, cached = _recipe(path, t0)
    from orchestrator.engines.registry import make_engine  # torch: only once the model folder is known
    from orchestrator.run.metrics import evaluate
    from orchestrator.models.source import system_prompt_of

    method = cfg.verification.method
    log.info(f"measuring on {cfg.workload.heldout_prompts} held-out prompts, N = {cfg.generation.n}, "
             f"temperature {cfg.generation.temperature:g}, verifier {method}, sigma = {cfg.verification.threshold:g}")
    t1 = time.time()
    backend = make_engine(REFERENCE_ENGINE, path, device=cfg.model.device, dtype=cfg.model.dtype,
                          threads=cfg.resources.verification.threads, chat_template=cfg.model.chat_template,
                          system_prompt=system_prompt_of(cfg))
    load_s = time.time() - t1
    problems = workload.problems("heldout", cfg.workload.heldout_prompts, cfg.seed)
    ev = evaluate(backend, workload, problems, n=cfg.generation.n, temperature=cfg.generation.temperature,
                  max_new_tokens=cfg.generation.max_new_tokens, threshold=cfg.verification.threshold,
                  seed=cfg.seed, methods=("tf", "qe"), batch_size=cfg.generation.batch_size)
    report = _report(cfg, path, backend, ev, info, cached=cached, ready_s=ready_s, load_s=load_s, t1=t1)
    default_recipe = cfg.workload.name == "arithmetic" and not cfg.model.path
    report["checks"] = checks(report) if default_recipe else room_checks(report)
    report["warnings"] = no_room(report)
    return report


def _recipe(path: Path, t0: float) -> tuple[dict, bool]:
    """(build info, cached): what the workload's recipe file says of the build, and whether the model folder was
    there before this command started (t0)."""
    info: dict = {}
    cached = True
    try:
        meta = json.loads((path / RECIPE_FILE).read_text())
        info = meta.get("build", {})
        cached = (path / RECIPE_FILE).stat().st_mtime < t0
    except (OSError, ValueError):
        pass
    return info, cached


def _report(cfg, path: Path, backend, ev, info: dict, *, cached: bool, ready_s: float, load_s: float,
            t1: float) -> dict:
    """The JSON-able report of one evaluation, its chosen verifier's numbers at the top level."""
    method = cfg.verification.method
    v = ev.verifiers[method]
    return {
        "model_dir": str(path),
        "workload": cfg.workload.name,
        "chat_template": backend.prompts.chat,  # prompts went through the model's chat template
        "cached": cached,
        "ready_seconds": round(ready_s, 2),  # find (or build) the model directory
        "load_seconds": round(load_s, 2),  # load it into the backend
        "build_seconds": info.get("seconds") if not cfg.model.path else None,
        "build": info,
        "heldout_prompts": ev.prompts,
        "n": ev.n,
        "temperature": ev.temperature,
        "method": method,
        "threshold": ev.threshold,
        "solver_accuracy": ev.solver_accuracy,
        "pass_at_n": ev.pass_at_n,
        "auc": v.auc,
        "below_threshold": v.below_threshold,
        "bon_accuracy": v.bon_accuracy,
        "fallback_rate": v.fallback_rate,
        "nll_pick_accuracy": ev.nll_pick_accuracy,
        "u_s": ev.u_s,
        "u_v": v.u_v,
        "gap": ev.u_s - v.u_v,
        "verifiers": {k: vars(x) for k, x in ev.verifiers.items()},
        "intervals": {"solver_accuracy": ev.intervals["solver_accuracy"], "pass_at_n": ev.intervals["pass_at_n"],
                      "auc": ev.intervals[f"{method}_auc"], "bon_accuracy": ev.intervals[f"{method}_bon_accuracy"]},
        "capped_share": ev.capped_share,
        "answered_share": ev.answered_share,
        "parsed_share": ev.parsed_share,
        "system_prompt": backend.prompts.system_prompt,
        "eval_seconds": round(time.time() - t1, 2),
    }


def _pct(x: float) -> str:
    return "nan" if x is None or math.isnan(x) else f"{x:.1%}"


def _ci(r: dict, key: str, pct: bool = True) -> str:
    lo, hi = r.get("intervals", {}).get(key, (math.nan, math.nan))
    return f" [{lo:.1%}, {hi:.1%}]" if pct else f" [{lo:.2f}, {hi:.2f}]"


def table(r: dict) -> str:
    how = "cached" if r["cached"] else "built now"
    b = r["build"]
    built = f"; built in {b['seconds']:g} s, {b.get('steps')} steps, stopped by {b.get('stopped_by')}" if b else ""
    n, m = r["n"], r["method"].upper()
    rows = [
        ("solver accuracy (1 sample)", _pct(r["solver_accuracy"]) + _ci(r, "solver_accuracy"), "solver_accuracy"),
        (f"pass@{n}", _pct(r["pass_at_n"]) + _ci(r, "pass_at_n"), "pass_at_n"),
        (f"{m} verifier ROC-AUC", f"{r['auc']:.3f}" + _ci(r, "auc", pct=False), "auc"),
        (f"candidates below sigma={r['threshold']:g}", _pct(r["below_threshold"]), "below_threshold"),
        (f"best-of-{n} accuracy ({m}, BoN rule)", _pct(r["bon_accuracy"]) + _ci(r, "bon_accuracy"), "bon_accuracy"),
        ("BoN fallbacks (none passed sigma)", _pct(r["fallback_rate"]), None),
        (f"lowest-NLL-of-{n} accuracy (no verifier)", _pct(r["nll_pick_accuracy"]), None),
    ]
    for k, v in r["verifiers"].items():
        if k != r["method"]:
            rows.append((f"{k.upper()} verifier ROC-AUC / best-of-{n}", f"{v['auc']:.3f} / {_pct(v['bon_accuracy'])}",
                         None))
    rows += [
        ("U_s  (mean NLL of a candidate)", f"{r['u_s']:.3f}", None),
        ("U_v  (mean NLL of the BoN pick)", f"{r['u_v']:.3f}", None),
        ("G = U_s - U_v", f"{r['gap']:.3f}", None),
    ]
    if r.get("build_seconds") is not None:
        rows.append(("build time", f"{r['build_seconds']:g} s", "build_seconds"))
    lines = [f"base model  {r['model_dir']}",
             f"  ({how}, ready in {r['ready_seconds']:g} s, loaded in {r['load_seconds']:g} s{built})",
             (f"  {r['heldout_prompts']} held-out prompts, N = {n}, temperature {r['temperature']:g}, "
              f"eval {r['eval_seconds']:g} s"), ""]
    w = max(len(name) for name, _, _ in rows)
    lines.append(f"{'metric':<{w}}  {'value (95% interval)':>28}  target")
    for name, val, key in rows:
        c = r["checks"].get(key) if key else None
        tail = f"{c['target']:<30} {'ok' if c['ok'] else 'MISSED'}" if c else ""
        lines.append(f"{name:<{w}}  {val:>28}  {tail}".rstrip())
    lines += [f"warning: {x}" for x in r.get("warnings", [])]
    return "\n".join(lines)


def run(args) -> int:
    from orchestrator.config import resolve

    cfg = resolve(args.config, args.overrides)
    report = measure(cfg)
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0
