"""GPU path check: the HF backend, the LoRA trainer and the DeepSpeed engine on CUDA in float32 and bfloat16, next to
the CPU numbers.

Run on a machine with a GPU (torch + transformers + peft, and deepspeed for its rows: no Ray, no MLflow). Prints one
table and writes benchmarks/out/gpu_check.json. Each row says what was checked, the numbers, and PASS / FAIL / SKIP
with the reason.

    python benchmarks/gpu_check.py [--model DIR] [--real-model DIR] [--devices cpu,cuda] [--prompts 256]

--model is a saved base model (the arithmetic one: `svgap base-model` prints where it is cached); without it the
workload builds (or reuses) its base model in ~/.cache/svgap. --real-model is any saved HF causal LM (e.g. a
Qwen2.5-0.5B-Instruct folder) for the real-architecture rows: GSM8K-style prompts through its chat template, sampled
vs teacher-forced logprobs and the TF/QE verifier on its own tokens; without it a tiny random-weight Gemma2 (final
logit soft-capping, chat template) is built here (tests/tiny_hf.py). Where CUDA is absent the cuda rows SKIP with
that reason, so the script itself can be run and checked on any machine.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "out"
# bf16 keeps 8 mantissa bits: logprobs agree with themselves (sampling vs teacher forcing) only to ~1e-2 per token.
LOGPROB_TOL = {"float32": 1e-4, "bfloat16": 5e-2}
ACC_TOL = 0.05  # a precision/device change may move accuracies a little, not more


@dataclass
class Row:
    check: str
    device: str
    dtype: str
    status: str
    numbers: dict = field(default_factory=dict)
    why: str = ""


def base_model(path: str | None) -> Path:
    if path:
        return Path(path)
    from orchestrator.log import setup_logging
    from workloads.arithmetic.workload import ArithmeticWorkload

    setup_logging()  # the build's progress lines on stderr
    return ArithmeticWorkload().base_model(Path("~/.cache/svgap").expanduser())


def inference_rows(model_dir: Path, device: str, dtype: str, prompts: int, ref: dict | None) -> list[Row]:
    """Sampling, teacher-forced scoring and the TF verifier on one device/precision."""
    from orchestrator.engines.hf import HFBackend
    from orchestrator.run.metrics import evaluate, prompt_seed
    from workloads.arithmetic.workload import ArithmeticWorkload

    wl = ArithmeticWorkload()
    problems = wl.problems("heldout", prompts, seed=0)
    be = HFBackend(model_dir, device=device, dtype=dtype, threads=None if device != "cpu" else 1)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    samples = be.sample([p.prompt for p in problems], n=8, temperature=1.0, max_new_tokens=8,
                        seeds=[prompt_seed(0, p.id) for p in problems])
    sync()
    gen_s = time.perf_counter() - t0
    flat = [(p.prompt, s) for p, cs in zip(problems, samples) for s in cs]
    scored = be.score([x for x, _ in flat], [s.token_ids for _, s in flat])
    diff = max(abs(a - b) for (_, s), sc in zip(flat, scored) for a, b in zip([-lp for lp in s.logprobs], sc.token_nll))
    tokens = sum(s.length for _, s in flat)
    ev = evaluate(be, wl, problems, n=8, temperature=1.0, max_new_tokens=8, threshold=0.5, seed=0, methods=("tf",))
    nums = {"solver_acc": round(ev.solver_accuracy, 4), "bon_acc": round(ev.verifiers["tf"].bon_accuracy, 4),
            "tf_auc": round(ev.verifiers["tf"].auc, 4), "U_s": round(ev.u_s, 4)}
    rows = [
        Row("sample logprobs = teacher-forced NLL", device, dtype,
            "PASS" if diff <= LOGPROB_TOL[dtype] else "FAIL", {"max_abs_diff": diff, "tol": LOGPROB_TOL[dtype]}),
        Row("sampling throughput", device, dtype, "PASS", {"tokens": tokens, "tokens_per_s": round(tokens / gen_s, 1)}),
    ]
    if ref is None:
        rows.append(Row("base-model numbers (reference)", device, dtype, "PASS", nums))
    else:
        worst = max(abs(nums[k] - ref[k]) for k in ("solver_acc", "bon_acc", "tf_auc"))
        rows.append(Row("base-model numbers match the reference", device, dtype,
                        "PASS" if worst <= ACC_TOL else "FAIL", {**nums, "worst_abs_diff": round(worst, 4)}))
    return rows


def real_model(path: str | None) -> Path:
    """--real-model, or a tiny random Gemma2 with a chat template built in a temporary folder."""
    if path:
        return Path(path).expanduser()
    import atexit
    import shutil
    import sys
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import tiny_hf

    tmp = Path(tempfile.mkdtemp(prefix="svgap-gpu-check-"))
    atexit.register(shutil.rmtree, tmp, True)
    return tiny_hf.build(tmp / "gemma2", "gemma2")


REAL_PROMPTS = ["Tom has 3 apples and buys 4 more. How many apples does he have?",
                "A box holds 6 pens. How many pens are in 2 boxes?", "Sara had 10 cookies and ate 3. How many are left?",
                "Each bag has 5 marbles. How many marbles are in 4 bags?"]


def real_model_rows(model_dir: Path, device: str, dtype: str, prompts: int) -> list[Row]:
    """A real architecture (any save_pretrained folder): GSM8K prompts through its chat template (if it has one),
    sampled logprobs = teacher-forced NLL (max_abs_diff), and the TF / QE verifier read from its own tokens
    (finite, in [0, 1])."""
    import math

    from orchestrator.engines.hf import HFBackend
    from workloads import math_prompts

    be = HFBackend(model_dir, device=device, dtype=dtype, threads=None if device != "cpu" else 1)
    texts = [math_prompts.solve("gsm8k", REAL_PROMPTS[i % len(REAL_PROMPTS)], be.prompts.chat)
             for i in range(max(4, prompts // 8))]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = be.sample(texts, n=4, temperature=1.0, max_new_tokens=32, seeds=list(range(len(texts))))
    sync()
    gen_s = time.perf_counter() - t0
    flat = [(t, s) for t, cs in zip(texts, out) for s in cs]
    scored = be.score([t for t, _ in flat], [s.token_ids for _, s in flat])
    diff = max(abs(-a - b) for (_, s), sc in zip(flat, scored) for a, b in zip(s.logprobs, sc.token_nll))
    tf = be.tf_score([math_prompts.tf_query(t, s.text, be.prompts.chat) for t, s in flat])
    qe = be.qe_score([math_prompts.qe_query(t, s.text, be.prompts.chat) for t, s in flat])
    scores_ok = all(math.isfinite(x) and 0.0 <= x <= 1.0 for x in tf + qe)
    tokens = sum(s.length for _, s in flat)
    arch = type(be.model).__name__
    return [Row(f"real architecture ({arch})", device, dtype,
                "PASS" if diff <= LOGPROB_TOL[dtype] and scores_ok else "FAIL",
                {"model": str(model_dir), "chat_template": be.prompts.chat, "max_abs_diff": diff,
                 "tol": LOGPROB_TOL[dtype], "tf_mean": round(sum(tf) / len(tf), 4),
                 "qe_mean": round(sum(qe) / len(qe), 4), "tokens_per_s": round(tokens / gen_s, 1)})]


def training_rows(model_dir: Path, device: str, dtype: str, prompts: int) -> list[Row]:
    """One LoRA round on reference answers: the loss falls, and the adapter merged into an inference model gives
    the trainer's own NLL (what weight sync relies on)."""
    from orchestrator.engines.hf import HFBackend
    from orchestrator.trainers.lora import LoRATrainer, TrainingExample
    from orchestrator.config import TrainingConfig
    from orchestrator.engines.weights import WeightsHolder
    from workloads.arithmetic.workload import ArithmeticWorkload

    wl = ArithmeticWorkload()
    problems = wl.problems("train", prompts, seed=1)
    examples = [TrainingExample(p.prompt, response_text=wl.reference(p), external=True) for p in problems]
    trainer = LoRATrainer(model_dir, TrainingConfig(), device=device, dtype=dtype, seed=0)
    stats, _ = trainer.train(examples, round_t=0)
    be = HFBackend(model_dir, device=device, dtype=dtype)
    before = be.score([e.prompt for e in examples[:64]],
                      [trainer._encode(e)[1] for e in examples[:64]])
    WeightsHolder(be.model).load(trainer.adapter())
    after = be.score([e.prompt for e in examples[:64]], [trainer._encode(e)[1] for e in examples[:64]])
    u_before = sum(s.nll for s in before) / len(before)
    u_after = sum(s.nll for s in after) / len(after)
    ok = stats.loss_last < stats.loss_first and u_after < u_before
    return [Row("LoRA round: loss falls, merged adapter lowers NLL", device, dtype, "PASS" if ok else "FAIL",
                {"loss_first": round(stats.loss_first, 4), "loss_last": round(stats.loss_last, 4),
                 "U_ref_before": round(u_before, 4), "U_ref_after": round(u_after, 4),
                 "train_s": round(stats.seconds, 2)})]


# fp32: the same arithmetic up to reduction order; bf16: DeepSpeed keeps fp32 master weights, the torch engine doesn't
DS_TOL = {"float32": {"loss": 1e-5, "weights": 1e-4}, "bfloat16": {"loss": 5e-2, "weights": 5e-2}}


def deepspeed_rows(model_dir: Path, device: str, dtype: str) -> list[Row]:
    """One DeepSpeed rank (ZeRO-2, nccl on CUDA / gloo on CPU), one optimizer step on 16 reference answers, against
    the torch engine's step on the same batch: the loss is finite and equal, the LoRA weights after it too."""
    import math
    import socket

    import numpy as np

    from orchestrator.trainers.deepspeed import DeepSpeedTrainer
    from orchestrator.trainers.lora import TorchTrainer
    from orchestrator.trainers.base import RankEnv, TrainingExample
    from orchestrator.config import DeepSpeedSection, TrainingConfig
    from workloads.arithmetic.workload import ArithmeticWorkload

    wl = ArithmeticWorkload()
    examples = [TrainingExample(p.prompt, response_text=wl.reference(p), external=True)
                for p in wl.problems("train", 16, seed=2)]
    ref_stats, ref = TorchTrainer(model_dir, TrainingConfig(batch_size=16, epochs=1), device=device, dtype=dtype,
                                  seed=0).train(examples, 0)
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    cfg = TrainingConfig(engine="deepspeed", batch_size=16, epochs=1, deepspeed=DeepSpeedSection(
        zero_stage=2, precision="bf16" if dtype == "bfloat16" else "fp32"))
    t0 = time.perf_counter()
    ds = DeepSpeedTrainer(model_dir, cfg, device=device, seed=0, env=RankEnv(master_port=port))
    init_s = time.perf_counter() - t0
    try:
        stats, up = ds.train(examples, 0)
    finally:
        ds.close()
    flat = lambda u: np.concatenate([np.asarray(x, np.float64).ravel() for k in sorted(u.tensors)  # noqa: E731
                                     for x in u.tensors[k]])
    loss_diff = abs(stats.loss_first - ref_stats.loss_first)
    w_diff = float(np.abs(flat(up) - flat(ref)).max())
    tol = DS_TOL[dtype]
    ok = stats.steps == 1 and math.isfinite(stats.loss_first) and loss_diff <= tol["loss"] and w_diff <= tol["weights"]
    return [Row("DeepSpeed ZeRO-2 step = torch engine step", device, dtype, "PASS" if ok else "FAIL",
                {"loss": round(stats.loss_first, 5), "loss_diff": loss_diff, "weight_diff": w_diff,
                 "tol": tol, "init_s": round(init_s, 1), "step_s": round(stats.seconds, 2)})]


def guarded(fn, label: Row, *args) -> list[Row]:
    """A failing path is a FAIL row with its error, not the end of the check."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - the table must show every path's outcome
        label.status, label.why = "FAIL", f"{type(e).__name__}: {e}"[:200]
        return [label]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--real-model", help="a saved HF causal LM for the real-architecture rows (default: a tiny "
                                         "random Gemma2 built here)")
    ap.add_argument("--out", default=str(OUT / "gpu_check.json"), help="where the JSON table goes")
    args = ap.parse_args()
    model_dir = base_model(args.model)
    real_dir = real_model(args.real_model)
    rows: list[Row] = []
    ref: dict | None = None
    cuda = torch.cuda.is_available()
    rows.append(Row("CUDA visible", "cuda", "-", "PASS" if cuda else "SKIP",
                    {"name": torch.cuda.get_device_name(0)} if cuda else {}, "" if cuda else "no CUDA device here"))
    for device in args.devices.split(","):
        for dtype in ("float32", "bfloat16"):
            if device == "cuda" and not cuda:
                rows.append(Row("inference + training", device, dtype, "SKIP", why="no CUDA device here"))
                rows.append(Row("real architecture", device, dtype, "SKIP", why="no CUDA device here"))
                continue
            if device == "cpu" and dtype == "bfloat16":
                continue  # bf16 is a GPU path; the CPU float32 numbers are the reference
            got = guarded(inference_rows, Row("inference", device, dtype, "FAIL"), model_dir, device, dtype,
                          args.prompts, ref)
            rows += got
            if ref is None and got and got[-1].status == "PASS":
                ref = {k: got[-1].numbers[k] for k in ("solver_acc", "bon_acc", "tf_auc")}
            rows += guarded(training_rows, Row("training", device, dtype, "FAIL"), model_dir, device, dtype,
                            args.prompts)
            rows += guarded(real_model_rows, Row("real architecture", device, dtype, "FAIL"), real_dir, device,
                            dtype, args.prompts)
    # DeepSpeed picks its accelerator once per process: the CUDA rows on a GPU machine, else the CPU row here
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        rows.append(Row("DeepSpeed on CUDA", "cuda", "-", "SKIP", why="deepspeed is not installed (svgap[deepspeed])"))
    elif cuda and "cuda" in args.devices.split(","):
        for dtype in ("float32", "bfloat16"):
            rows += guarded(deepspeed_rows, Row("DeepSpeed on CUDA", "cuda", dtype, "FAIL"), model_dir, "cuda", dtype)
    else:
        rows += guarded(deepspeed_rows, Row("DeepSpeed on CPU", "cpu", "float32", "FAIL"), model_dir, "cpu",
                        "float32")
        rows.append(Row("DeepSpeed on CUDA", "cuda", "-", "SKIP", why="no CUDA device here"))
    print(f"{'check':52} {'device':6} {'dtype':9} {'status':6} numbers / why")
    for r in rows:
        detail = r.why or ", ".join(f"{k}={v}" for k, v in r.numbers.items())
        print(f"{r.check:52} {r.device:6} {r.dtype:9} {r.status:6} {detail}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    print(f"wrote {out}")
    return 1 if any(r.status == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
