"""Pretrain the tiny Llama of the arithmetic workload from scratch, on a mixture of solving and verifying examples
(examples.py), in two phases:

1. *verifier first*: mostly verifying examples (`verify_share_first`) until the step-by-step TF verifier separates
   right answers from answers with one wrong digit on dev problems (ROC-AUC >= `verifier_ready_auc`); if the
   solver takes off first (dev accuracy >= half the target), verifying examples only until the verifier is ready;
2. *solver*: the mixture `verify_share` until the solver's expected one-sample accuracy at temperature 1 on dev
   problems reaches `target_accuracy` (checked every 5 steps; it stops there whatever the phase).

Also essential for a ~2-minute build on 2 CPU cores: initialisation std 0.1 instead of transformers' 0.02 (with
0.02 both the solver and the verifier sat on a loss plateau for most of the budget) and lr 6e-3.

Why: the solver learns abruptly (a few % to 80% within ~100 steps), so a fixed step count would land anywhere;
stopping when it enters the target band is robust. The verifier has to be ahead of the solver when that happens
(it is what best-of-N -- and so self-improvement -- feeds on), hence it goes first. Both phases are capped by
`max_steps` / `max_seconds` (phase 1 by 60% of them). Dev problems are a band of the train split kept out of the
training stream; held-out problems are never seen.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from orchestrator.run.metrics import roc_auc

from .examples import Example, ExampleMaker, collate
from .options import ArithmeticOptions
from .tokenizer import BOS, EOS, PAD, VOCAB

log = logging.getLogger(__name__)

EVAL_EVERY = 5  # steps between solver dev checks (one forward pass over DEV_SIZE short sequences)
VERIFIER_EVAL_EVERY = 10
DEV_SIZE = 512
WARMUP = 30
FIRST_PHASE_CAP = 0.6  # share of max_steps the verifier-first phase may take


def model_config(opts: ArithmeticOptions) -> LlamaConfig:
    h = opts.hidden_size
    return LlamaConfig(
        vocab_size=len(VOCAB), hidden_size=h, intermediate_size=opts.mlp_ratio * h, num_hidden_layers=opts.layers,
        num_attention_heads=opts.heads, num_key_value_heads=opts.heads, max_position_embeddings=64,
        rms_norm_eps=1e-5, rope_theta=10000.0, initializer_range=opts.init_std, tie_word_embeddings=True,
        attention_bias=False, bos_token_id=VOCAB[BOS], eos_token_id=VOCAB[EOS], pad_token_id=VOCAB[PAD],
    )


def token_logprobs(model: LlamaForCausalLM, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[B, L-1] log-probabilities of the targets (0 where there is no target)."""
    logits = model(input_ids=x).logits[:, :-1].float()
    tgt = y[:, 1:]
    lp = torch.log_softmax(logits, -1).gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(tgt >= 0, lp, torch.zeros_like(lp))


def lm_loss(model: LlamaForCausalLM, groups: list[list[Example]]) -> torch.Tensor:
    """Mean cross-entropy over every target of every group (groups are padded separately)."""
    total, count = 0.0, 0
    for g in groups:
        if not g:
            continue
        x, y = collate(g)
        logits = model(input_ids=x).logits[:, :-1]
        tgt = y[:, 1:]
        total = total + F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100,
                                        reduction="sum")
        count += int((tgt >= 0).sum())
    return total / max(count, 1)


class SolverDev:
    """Expected one-sample accuracy at temperature 1 = mean over problems of pi(answer + <eos> | prompt)."""

    def __init__(self, opts: ArithmeticOptions, seed: int, n: int = DEV_SIZE):
        mk = ExampleMaker(opts, seed + 1, split="dev")
        self.x, self.y = collate([mk.solve(p, a) for p, a in mk.texts(n)])

    @torch.no_grad()
    def accuracy(self, model: LlamaForCausalLM) -> float:
        return float(token_logprobs(model, self.x, self.y).sum(-1).exp().mean())


class VerifierDev:
    """ROC-AUC of the TF score between right answers and answers with one wrong digit (the hard case)."""

    def __init__(self, opts: ArithmeticOptions, seed: int, n: int = 256):
        mk = ExampleMaker(opts, seed + 2, split="dev")
        exs, self.labels = [], []
        for i, (p, a) in enumerate(mk.texts(n)):
            cand = a if i % 2 == 0 else mk.corrupt(a, p_digit=0.0)
            exs.append(mk.tf(p, a, cand))
            self.labels.append(cand == a)
        self.x, y = collate(exs)
        judged = torch.zeros_like(y, dtype=torch.bool)
        for i, e in enumerate(exs):
            for p, t in e.targets:
                if t in (VOCAB["T"], VOCAB["F"]):
                    judged[i, p] = True
        self.judged = judged[:, 1:]

    @torch.no_grad()
    def auc(self, model: LlamaForCausalLM) -> float:
        logits = model(input_ids=self.x).logits[:, :-1].float()
        margin = logits[..., VOCAB["T"]] - logits[..., VOCAB["F"]]
        log_s = torch.where(self.judged, F.logsigmoid(margin), torch.zeros_like(margin)).sum(-1)
        return roc_auc(log_s.tolist(), self.labels)


@dataclass
class PretrainResult:
    model: LlamaForCausalLM
    steps: int
    seconds: float
    dev_solver_accuracy: float
    dev_verifier_auc: float
    verifier_phase_steps: int  # steps of phase 1
    stopped_by: str  # "target" | "max_steps" | "max_seconds"


def pretrain(opts: ArithmeticOptions) -> PretrainResult:
    """Runs on one thread: on a shared 2-core machine a second OpenMP thread made steps up to 6x slower, and one
    thread keeps the float arithmetic -- hence the model -- the same from run to run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _pretrain(opts, log.info)
    finally:
        torch.set_num_threads(threads)


def _pretrain(opts: ArithmeticOptions, say: Callable[[str], None]) -> PretrainResult:
    torch.manual_seed(opts.seed)
    model = LlamaForCausalLM(model_config(opts))
    maker = ExampleMaker(opts, opts.seed)
    solver_dev, verifier_dev = SolverDev(opts, opts.seed), VerifierDev(opts, opts.seed)
    optim = torch.optim.AdamW(model.parameters(), lr=opts.lr, betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / WARMUP))
    say(f"  pretraining a {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M-parameter Llama "
        f"(hidden {opts.hidden_size}, {opts.layers} layers) -- verifier first, then solver to "
        f"{opts.target_accuracy:.0%} dev accuracy")
    t0 = last_say = time.monotonic()
    acc, auc, loss_avg = 0.0, math.nan, math.nan
    first_phase, phase1_steps, stopped_by, step = True, 0, "max_steps", 0

    model.train()
    share = opts.verify_share_first
    for step in range(1, opts.max_steps + 1):
        lv = _train_step(model, optim, sched, maker.batch(opts.batch_size, share))
        loss_avg = lv if math.isnan(loss_avg) else 0.9 * loss_avg + 0.1 * lv
        elapsed = time.monotonic() - t0
        if step % EVAL_EVERY == 0:
            acc = _evaluated(model, solver_dev.accuracy)
            if acc >= opts.target_accuracy:
                stopped_by = "target"
                break
            if first_phase and acc >= opts.target_accuracy / 2 and share < 1.0:
                share = 1.0  # the solver is taking off before the verifier is ready: verifier only until it is
                say(f"  step {step}: solver taking off (dev acc {acc:.1%}) before the verifier is ready: "
                    f"verifying examples only for now")
        if first_phase and step % VERIFIER_EVAL_EVERY == 0:
            auc = _evaluated(model, verifier_dev.auc)
            capped = step >= FIRST_PHASE_CAP * opts.max_steps  # by steps, not seconds: the same model everywhere
            if auc >= opts.verifier_ready_auc or capped:
                first_phase, phase1_steps, share = False, step, opts.verify_share
                say(f"  step {step}: verifier {'ready' if not capped else 'NOT ready (phase capped)'} "
                    f"(dev AUC {auc:.3f}); training the solver now ({elapsed:.0f} s)")
        if elapsed > opts.max_seconds:  # safety cap only: where it fires, the model depends on the machine's speed
            stopped_by = "max_seconds"
            say(f"  step {step}: time cap of {opts.max_seconds:g} s reached before the target -- this model is "
                f"not reproducible on other machines; raise workload.options.max_seconds to avoid it")
            break
        if time.monotonic() - last_say >= 10:
            last_say = time.monotonic()
            say(f"  step {step}  loss {loss_avg:.3f}  dev solver acc {acc:.1%}  dev verifier AUC {auc:.3f}  "
                f"({elapsed:.0f} s)")
    model.eval()
    acc, auc = solver_dev.accuracy(model), verifier_dev.auc(model)
    seconds = time.monotonic() - t0
    say(f"  stopped at step {step} ({stopped_by}): dev solver acc {acc:.1%}, dev verifier AUC {auc:.3f}, "
        f"{seconds:.0f} s")
    return PretrainResult(model, step, seconds, acc, auc, phase1_steps or step, stopped_by)


def _train_step(model: LlamaForCausalLM, optim, sched, batch) -> float:
    """One optimizer step on a batch (solving and verifying examples); its loss."""
    loss = lm_loss(model, list(batch))
    optim.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optim.step()
    sched.step()
    return float(loss.detach())


def _evaluated(model: LlamaForCausalLM, measure: Callable[[LlamaForCausalLM], float]) -> float:
    """A dev measure taken in eval mode; training mode again after."""
    model.eval()
    v = measure(model)
    model.train()
    return v
