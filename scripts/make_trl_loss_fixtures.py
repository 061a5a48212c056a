#!/usr/bin/env python3
"""Builds crates/lpo-loss/tests/fixtures/trl_losses.json: what TRL 1.16.0's own
loss code returns for every pairwise loss type of its DPOTrainer, for the
SimPO / CPO losses of its CPOTrainer and for ORPO's odds-ratio loss, on seeded
random sequence log-probs. docs/trl-losses.md is the written specification
these numbers check; this file is the evidence (issue 28).

Run by hand (CI has no Python; the Rust tests read the committed JSON):

    # a virtualenv OUTSIDE the repository that sees /work/venv's torch 2.11.0
    # and transformers 5.24.0 (a .pth file; `--system-site-packages` would
    # expose the base interpreter, not /work/venv, and pip would then pull a
    # newer torch):
    /work/venv/bin/python -m venv /work/venv-trl
    echo /work/venv/lib/python3.11/site-packages \\
        > /work/venv-trl/lib/python3.11/site-packages/_work_venv.pth
    /work/venv-trl/bin/pip install trl==1.16.0
    # TRL 0.28.0's source, read (never imported) for the legacy bco_pair
    # running-mean reference (see "legacy" below):
    /work/venv-trl/bin/pip download --no-deps trl==0.28.0 -d /work/trl-0.28.0
    /work/venv-trl/bin/python scripts/make_trl_loss_fixtures.py

Versions it was run with (also written into the JSON): Python 3.11.7,
trl 1.16.0, torch 2.11.0+cu130 (CPU only), transformers 5.24.0,
accelerate 1.16.0, datasets 5.2.0. Every random choice is seeded and the
computation is CPU float arithmetic, so a rerun with these versions rewrites
the same bytes. Options: --out PATH, --legacy-wheel PATH (the TRL 0.28.0
wheel), --skip-legacy.

How TRL's own code is called
----------------------------
DPO. In TRL >= 0.29 there is no standalone `dpo_loss`: the loss lives inside
`DPOTrainer._compute_loss(model, inputs, return_outputs)`
(trl/trainer/dpo_trainer.py:1285-1612 in the 1.16.0 wheel), which runs the
policy itself. For every case the script builds a REAL `DPOTrainer` from a
`DPOConfig` holding the case's parameters (so every attribute the loss reads -
beta, loss_types, loss_weights, label_smoothing, f_divergence_type,
f_alpha_divergence_coef, use_weighting, ld_alpha, args.discopop_tau,
precompute_ref_logps, accelerator - is set by TRL's own __init__ and
validation), around a tiny random Llama, an in-memory word-level tokenizer
and a two-row dataset, with `precompute_ref_log_probs=True` (so the reference
log-probs are read from the batch: `inputs["ref_chosen_logps"]`,
`inputs["ref_rejected_logps"]`). It then calls TRL's `_compute_loss` with a
stand-in policy: a callable that returns what TRL's fused LM head returns
(`FusedCausalLMOutput`: per-token `log_probs` [2B, T-1], zero where the label
is -100, plus `entropy`, `mean_logits`, `is_top1` and `log_sum_sq_probs`).
Its `log_probs` row holds the whole sequence log-prob (a leaf tensor with
requires_grad) on the last completion token and exact zeros elsewhere, so
TRL's `per_token_logps.sum(dim=1)` reproduces the input exactly and autograd
gives d loss / d (sequence log-prob). The batch's `completion_mask` has
exactly n_c / n_r completion tokens per row after a prompt of p tokens, which
is what ipo / sigmoid_norm / sft / use_weighting / ld_alpha read. Everything
between the model call and `return loss` is TRL's code, unmodified. TRL
returns only the scalar loss; the per-example `per_sequence_loss` of each
loss type, and the final `chosen_rewards` / `rejected_rewards`, are read out
of `_compute_loss`'s frame with sys.settrace (the tensor TRL is about to
average, at the line `loss += per_sequence_loss.mean() * loss_weight`), and
the script asserts that sum_t weight_t * mean(losses_t) equals the returned
loss. A forward check (`forward_checks.dpo_real_model`) runs the same
`_compute_loss` with the trainer's real tiny Llama (fused head and all) and
confirms that the sequence log-probs TRL uses are sums of completion-token
log-softmax values and the token counts are completion lengths.

CPO / SimPO and ORPO (trl.experimental). `CPOTrainer.cpo_loss` and
`ORPOTrainer.odds_ratio_loss` take sequence log-probs directly. A real
trainer is built per case (tiny Llama, same tokenizer), and TRL's
`get_batch_loss_metrics` is called with the trainer's `concatenated_forward`
replaced by a stub that returns what that method returns: the chosen /
rejected log-probs (token sum, or sum / n for CPO's ipo and simpo and for
ORPO), and the chosen NLL (CPO: mean of -log p over the chosen completion
tokens of the whole batch, or a float32 0 when cpo_alpha == 0; ORPO: mean of
-log p over every attended token after the first of the chosen prompt +
completion sequences). `forward_checks.cpo_concatenated_forward` and
`forward_checks.orpo_concatenated_forward` run the REAL `concatenated_forward`
on random logits and confirm those definitions to float64 rounding.
`losses`, rewards and ORPO's per-example log odds are read from the frames
as for DPO.

Legacy (TRL 0.28.0, last release before the DPO refactor #3906). TRL 1.16.0's
bco_pair keeps no state (its running-mean reward baseline was removed in
v0.29.0), so the two consecutive bco_pair calls of the 1.16.0 section show
that the second call equals a fresh trainer's. The stateful version is
reproduced from TRL 0.28.0's own source: `DPOTrainer.dpo_loss` and
`RunningMoments` are cut out of the 0.28.0 wheel with `ast` and executed on
an object carrying `beta`, `running`, `reference_free`, `f_divergence_type`,
`label_smoothing` and `accelerator` (device "cpu", not distributed), the
attributes the bco_pair branch and the code before it read; two consecutive
calls record the running mean after each.

Inputs (all cases): B = 6 pairs. Reference sequence log-probs uniform in
[-20, -5]; policy = reference + uniform [-3, 3]; completion token counts
2..40, prompt lengths 2..8; rounded to 6 decimals (float64) and recorded
exactly as used (float32 cases: the float32 values, printed as doubles).
Gradients are of TRL's returned (mean) loss with respect to the policy's
chosen and rejected sequence log-probs (token sums).

Cases (name: trainer, loss, non-default settings; dtype float64 unless noted)
  dpo/sigmoid, dpo/sigmoid/beta=0.5, dpo/sigmoid/label_smoothing=0.1 (ignored
    by 1.16.0's sigmoid), dpo/sigmoid/float32
  dpo/hinge, dpo/hinge/beta=0.5
  dpo/ipo, dpo/ipo/beta=0.5, dpo/ipo/float32
  dpo/exo_pair/eps=1e-3, dpo/exo_pair/eps=0.1/beta=0.5, dpo/exo_pair/eps=1e-3/float32
  dpo/nca_pair, dpo/nca_pair/beta=0.5
  dpo/robust/label_smoothing=0.1, dpo/robust/label_smoothing=0 (= sigmoid),
    dpo/robust/label_smoothing=0.3/beta=0.5
  dpo/bco_pair/call1, dpo/bco_pair/call2 (second call, same trainer)
  dpo/sppo_hard, dpo/sppo_hard/beta=1
  dpo/aot, dpo/aot/label_smoothing=0.1
  dpo/aot_unpaired, dpo/aot_unpaired/label_smoothing=0.1
  dpo/apo_zero, dpo/apo_zero/beta=0.5, dpo/apo_down, dpo/apo_down/beta=0.5
  dpo/discopop, dpo/discopop/tau=0.5/beta=0.5
  dpo/sft, dpo/sft/float32
  dpo/sigmoid_norm, dpo/sigmoid_norm/beta=2
  dpo/mpo: loss_type [sigmoid, bco_pair, sft], loss_weights [0.8, 0.2, 1.0]
  dpo/rpo: [sigmoid, sft], loss_weights unset (1, 1)
  dpo/ipo+hinge: [ipo, hinge], loss_weights [0.3, 0.7], beta 0.5
  dpo/sigmoid/forward_kl, dpo/sigmoid/js_divergence,
    dpo/sigmoid/alpha_divergence/float32 (float64 raises in TRL),
    dpo/hinge/js_divergence
  dpo/sigmoid/use_weighting (WPO; extra input log_sum_sq_probs sums)
  dpo/sigmoid/ld_alpha=0.5 (extra inputs: the tail log-prob sums)
  cpo/sigmoid (CPO: cpo_alpha 1), cpo/hinge, cpo/ipo,
  cpo/simpo (defaults: beta 0.1, gamma 0.5, cpo_alpha 1),
  cpo/simpo/cpo_alpha=0 (plain SimPO), cpo/simpo/beta=2/gamma=1/cpo_alpha=0,
  cpo/simpo/label_smoothing=0.1, cpo/alphapo (loss_type "alphapo" = simpo,
    cpo_alpha 0, alpha 0.25)
  orpo/beta=0.1, orpo/beta=0.5, orpo/beta=0.1/float32
  legacy_v0.28.0/bco_pair/call1, legacy_v0.28.0/bco_pair/call2
Plus `rejected_configs` (what TRL refuses, with its error) and
`forward_checks`.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import json
import linecache
import logging
import math
import os
import platform
import sys
import tempfile
import textwrap
import warnings
import zipfile
from dataclasses import dataclass
from enum import Enum
from types import SimpleNamespace

warnings.filterwarnings("ignore")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import datasets  # noqa: E402
import transformers  # noqa: E402
from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

import trl  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402
from trl.experimental.cpo import CPOConfig, CPOTrainer  # noqa: E402
from trl.experimental.orpo import ORPOConfig, ORPOTrainer  # noqa: E402

TRL_VERSION = "1.16.0"
LEGACY_VERSION = "0.28.0"
B = 6
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "crates", "lpo-loss", "tests", "fixtures", "trl_losses.json")

datasets.disable_progress_bars()
transformers.logging.set_verbosity_error()
for name in ("trl", "accelerate", "datasets", "transformers"):
    logging.getLogger(name).setLevel(logging.ERROR)

assert trl.__version__ == TRL_VERSION, f"needs trl=={TRL_VERSION}, found {trl.__version__}"


# ---------------------------------------------------------------- tiny model


WORDS = ["<pad>", "<eos>", "<unk>", "a", "b", "c", "d", "e"]


def make_tokenizer():
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")


TOKENIZER = make_tokenizer()
MODEL_CONFIG = LlamaConfig(
    vocab_size=len(WORDS),
    hidden_size=8,
    intermediate_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=2,
    max_position_embeddings=128,
)
TRAIN_DS = Dataset.from_dict(
    {"prompt": ["a b c", "d e"], "chosen": [" c d a", " a"], "rejected": [" d", " b b e c"]}
)
OUTPUT_DIR = tempfile.mkdtemp(prefix="trl-fixtures-")
COMMON_ARGS = dict(output_dir=OUTPUT_DIR, bf16=False, report_to="none", use_cpu=True, disable_tqdm=True)


def tiny_model():
    torch.manual_seed(0)
    return LlamaForCausalLM(MODEL_CONFIG)


def dpo_trainer(**cfg):
    args = DPOConfig(**COMMON_ARGS, gradient_checkpointing=False, precompute_ref_log_probs=True, **cfg)
    return DPOTrainer(
        model=tiny_model(), ref_model=tiny_model(), args=args, train_dataset=TRAIN_DS, processing_class=TOKENIZER
    )


def cpo_trainer(**cfg):
    return CPOTrainer(
        model=tiny_model(), args=CPOConfig(**COMMON_ARGS, **cfg), train_dataset=TRAIN_DS, processing_class=TOKENIZER
    )


def orpo_trainer(**cfg):
    return ORPOTrainer(
        model=tiny_model(), args=ORPOConfig(**COMMON_ARGS, **cfg), train_dataset=TRAIN_DS, processing_class=TOKENIZER
    )


# ------------------------------------------------------------ frame capture


def traced(func, code, on_line=None, *args, **kwargs):
    """Calls func(*args, **kwargs) under sys.settrace; returns (result, the
    locals at return of the (last) frame running `code`, the list of non-None
    on_line(frame, line text) results in those frames). `code` may be a tuple
    of code objects: then the locals are a dict keyed by co_name."""
    codes = code if isinstance(code, tuple) else (code,)
    record = {"final": {}, "lines": []}

    def local(frame, event, arg):
        if event == "line" and on_line is not None:
            text = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
            got = on_line(frame, text)
            if got is not None:
                record["lines"].append(got)
        elif event == "return":
            record["final"][frame.f_code.co_name] = dict(frame.f_locals)
        return local

    def glob(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            return local
        return None

    sys.settrace(glob)
    try:
        result = func(*args, **kwargs)
    finally:
        sys.settrace(None)
    final = record["final"] if isinstance(code, tuple) else record["final"].get(code.co_name)
    return result, final, record["lines"]


# ----------------------------------------------------------------- inputs


def r6(t):
    return torch.round(t * 1e6) / 1e6


def make_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(B, generator=g, dtype=torch.float64)  # noqa: E731
    ref_c, ref_r = r6(u(-20, -5)), r6(u(-20, -5))
    pol_c, pol_r = r6(ref_c + u(-3, 3)), r6(ref_r + u(-3, 3))
    n_c = torch.randint(2, 41, (B,), generator=g)
    n_r = torch.randint(2, 41, (B,), generator=g)
    prompt = torch.randint(2, 9, (B,), generator=g)
    # use_weighting: per sequence, the sum over completion tokens of log(sum_v p_v^2) (<= 0)
    lssp_c = r6(-u(0.1, 1.0) * n_c)
    lssp_r = r6(-u(0.1, 1.0) * n_r)
    # ld_alpha: the part of the longer response beyond the shorter one's length ("tail")
    tail_c = torch.where(n_c > n_r, r6(u(-6, -1)), torch.zeros(B, dtype=torch.float64))
    tail_r = torch.where(n_r > n_c, r6(u(-6, -1)), torch.zeros(B, dtype=torch.float64))
    # ORPO: log-prob sum over the chosen prompt's tokens after the first (prompt - 1 tokens)
    prompt_lp = r6(-u(0.2, 3.0) * (prompt - 1))
    return dict(
        policy_chosen_logps=pol_c,
        policy_rejected_logps=pol_r,
        ref_chosen_logps=ref_c,
        ref_rejected_logps=ref_r,
        chosen_tokens=n_c,
        rejected_tokens=n_r,
        prompt_tokens=prompt,
        chosen_log_sum_sq_probs=lssp_c,
        rejected_log_sum_sq_probs=lssp_r,
        policy_chosen_tail_logps=tail_c,
        policy_rejected_tail_logps=tail_r,
        chosen_prompt_logps=prompt_lp,
    )


LEGACY_LINES = {}
INPUTS_A = make_inputs(2824)
INPUTS_B = make_inputs(2825)


def num(x):
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dim() == 0:
            return num(x.item())
        return [num(v) for v in x.tolist()]
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return repr(x)
        return x
    return x


def cast(t, dtype):
    return t.to(dtype) if t.is_floating_point() else t


# ------------------------------------------------------------------- DPO


class FusedStandIn:
    """Stands in for the policy: returns TRL's fused-LM-head output fields."""

    def __init__(self, fields):
        self.fields = fields
        self.calls = 0

    def __call__(self, **kwargs):
        assert kwargs.get("fused_lm_head") is True and "labels" in kwargs
        self.calls += 1
        return SimpleNamespace(**self.fields, aux_loss=None, logits=None)


def build_dpo_batch(inp, dtype, ld=False, weighting=False):
    """The collated batch TRL's DataCollatorForPreference would give (rows
    0..B-1 chosen, B..2B-1 rejected) and the stand-in's per-token fields."""
    n = torch.cat([inp["chosen_tokens"], inp["rejected_tokens"]])
    p = torch.cat([inp["prompt_tokens"], inp["prompt_tokens"]])
    total = p + n
    T = int(total.max())
    rows = torch.arange(2 * B)
    pos = torch.arange(T).unsqueeze(0)
    attention = (pos < total.unsqueeze(1)).long()
    completion = ((pos >= p.unsqueeze(1)) & (pos < total.unsqueeze(1))).long()
    input_ids = torch.where(attention.bool(), torch.full_like(attention, 3), torch.zeros_like(attention))
    # shifted index of a token at position j is j - 1
    last = torch.zeros(2 * B, T - 1, dtype=dtype)
    last[rows, total - 2] = 1.0
    first = torch.zeros(2 * B, T - 1, dtype=dtype)
    first[rows, p - 1] = 1.0
    leaves = {}
    pc = cast(inp["policy_chosen_logps"], dtype).clone().requires_grad_(True)
    pr = cast(inp["policy_rejected_logps"], dtype).clone().requires_grad_(True)
    leaves["policy_chosen_logps"], leaves["policy_rejected_logps"] = pc, pr
    ref_c = cast(inp["ref_chosen_logps"], dtype)
    ref_r = cast(inp["ref_rejected_logps"], dtype)
    if ld:
        # whole-sequence logps = shared + tail; the stand-in puts the shared part on the
        # first completion token (always inside the shared span) and the tail on the last
        # (inside the tail span exactly when the row is the longer one; tail = 0 otherwise)
        tc = cast(inp["policy_chosen_tail_logps"], dtype).clone().requires_grad_(True)
        tr_ = cast(inp["policy_rejected_tail_logps"], dtype).clone().requires_grad_(True)
        leaves["policy_chosen_tail_logps"], leaves["policy_rejected_tail_logps"] = tc, tr_
        shared = torch.cat([pc - tc, pr - tr_])
        tail = torch.cat([tc, tr_])
        assert bool((n >= 2).all())
        log_probs = first * shared.unsqueeze(1) + last * tail.unsqueeze(1)
    else:
        log_probs = last * torch.cat([pc, pr]).unsqueeze(1)
    fields = dict(
        log_probs=log_probs,
        entropy=torch.zeros(2 * B, T - 1, dtype=dtype),
        mean_logits=torch.zeros(2 * B, T - 1, dtype=dtype),
        is_top1=torch.zeros(2 * B, T - 1, dtype=torch.bool),
        log_sum_sq_probs=None,
    )
    if weighting:
        lssp = torch.cat([cast(inp["chosen_log_sum_sq_probs"], dtype), cast(inp["rejected_log_sum_sq_probs"], dtype)])
        fields["log_sum_sq_probs"] = last * lssp.unsqueeze(1)
    batch = dict(
        input_ids=input_ids,
        attention_mask=attention,
        completion_mask=completion,
        ref_chosen_logps=ref_c,
        ref_rejected_logps=ref_r,
    )
    return batch, FusedStandIn(fields), leaves


LOSS_LINE = "loss += per_sequence_loss.mean() * loss_weight"
WEIGHT_LINE = "if self.use_weighting:"


def dpo_line(frame, text):
    if text == WEIGHT_LINE:
        return ("unweighted", frame.f_locals["loss_type"], frame.f_locals["per_sequence_loss"].detach().clone())
    if text == LOSS_LINE:
        return ("averaged", frame.f_locals["loss_type"], frame.f_locals["per_sequence_loss"].detach().clone())
    return None


def dpo_call(trainer, inp, dtype, ld=False, weighting=False):
    batch, model, leaves = build_dpo_batch(inp, dtype, ld=ld, weighting=weighting)
    for mode in trainer._metrics:
        trainer._metrics[mode].clear()
    loss, final, lines = traced(
        trainer._compute_loss, DPOTrainer._compute_loss.__code__, dpo_line, model, batch, False
    )
    assert model.calls == 1
    loss.backward()
    averaged = [(lt, v) for kind, lt, v in lines if kind == "averaged"]
    unweighted = [(lt, v) for kind, lt, v in lines if kind == "unweighted"]
    assert [lt for lt, _ in averaged] == list(trainer.loss_types)
    recombined = sum(float(v.mean()) * w for (_, v), w in zip(averaged, trainer.loss_weights))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert abs(recombined - float(loss)) <= tol * max(1.0, abs(float(loss))), (recombined, float(loss))
    out = {
        "loss": num(loss),
        "losses": {lt: num(v) for lt, v in averaged},
        "chosen_rewards": num(final["chosen_rewards"]),
        "rejected_rewards": num(final["rejected_rewards"]),
    }
    if trainer.use_weighting:
        out["losses_before_weighting"] = {lt: num(v) for lt, v in unweighted}
        # WPO weights (computed from no_grad log-probs: constants for autograd)
        out["wpo_chosen_weights"] = num(final["chosen_weights"])
        out["wpo_rejected_weights"] = num(final["rejected_weights"])
    if "exo_pair" in trainer.loss_types:
        # float32 0-dim tensors whatever the input dtype: epsilon = torch.tensor(label_smoothing)
        out["exo_pair_constants"] = {
            "epsilon": num(final["epsilon"]),
            "log_pw": num(final["log_pw"]),
            "log_pl": num(final["log_pl"]),
            "dtype": str(final["log_pw"].dtype).replace("torch.", ""),
        }
    if trainer.ld_alpha is not None:
        # shared + ld_alpha * tail: the sequence log-probs the loss used
        out["policy_chosen_logps_used"] = num(final["chosen_logps"])
        out["policy_rejected_logps_used"] = num(final["rejected_logps"])
    for name, leaf in leaves.items():
        out["grad_" + name] = num(leaf.grad)
    metrics = trainer._metrics["train"]
    out["logged"] = {
        k: num(metrics[k][-1])
        for k in (
            "rewards/chosen",
            "rewards/rejected",
            "rewards/accuracies",
            "rewards/margins",
            "logps/chosen",
            "logps/rejected",
        )
    }
    return out


def inputs_record(inp, dtype, keys):
    return {k: num(cast(inp[k], dtype)) for k in keys}


BASE_KEYS = [
    "policy_chosen_logps",
    "policy_rejected_logps",
    "ref_chosen_logps",
    "ref_rejected_logps",
    "chosen_tokens",
    "rejected_tokens",
    "prompt_tokens",
]

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def effective_dpo_params(tr):
    return {
        "loss_type": list(tr.loss_types),
        "loss_weights": list(tr.loss_weights),
        "beta": tr.beta,
        "label_smoothing": tr.label_smoothing,
        "discopop_tau": tr.args.discopop_tau,
        "f_divergence_type": tr.f_divergence_type,
        "f_alpha_divergence_coef": tr.f_alpha_divergence_coef,
        "use_weighting": tr.use_weighting,
        "ld_alpha": tr.ld_alpha,
    }


def dpo_case(name, cfg, dtype="float64", inp=None, note=None):
    inp = INPUTS_A if inp is None else inp
    tr = dpo_trainer(**cfg)
    ld = tr.ld_alpha is not None
    weighting = tr.use_weighting
    keys = list(BASE_KEYS)
    if weighting:
        keys += ["chosen_log_sum_sq_probs", "rejected_log_sum_sq_probs"]
    if ld:
        keys += ["policy_chosen_tail_logps", "policy_rejected_tail_logps"]
    case = {
        "name": name,
        "trainer": "DPOTrainer",
        "dtype": dtype,
        "config": cfg,
        "params": effective_dpo_params(tr),
        "inputs": inputs_record(inp, DTYPES[dtype], keys),
        "outputs": dpo_call(tr, inp, DTYPES[dtype], ld=ld, weighting=weighting),
    }
    if note:
        case["note"] = note
    return case


def dpo_cases():
    cases = []
    add = lambda *a, **k: cases.append(dpo_case(*a, **k))  # noqa: E731
    add("dpo/sigmoid", {"loss_type": ["sigmoid"]})
    add("dpo/sigmoid/beta=0.5", {"loss_type": ["sigmoid"], "beta": 0.5})
    add(
        "dpo/sigmoid/label_smoothing=0.1",
        {"loss_type": ["sigmoid"], "label_smoothing": 0.1},
        note="TRL 1.16.0's sigmoid ignores label_smoothing (cDPO smoothing was removed in the v0.29.0 refactor): "
        "equal to dpo/sigmoid.",
    )
    add("dpo/sigmoid/float32", {"loss_type": ["sigmoid"]}, dtype="float32")
    add("dpo/hinge", {"loss_type": ["hinge"]})
    add("dpo/hinge/beta=0.5", {"loss_type": ["hinge"], "beta": 0.5})
    add("dpo/ipo", {"loss_type": ["ipo"]})
    add("dpo/ipo/beta=0.5", {"loss_type": ["ipo"], "beta": 0.5})
    add("dpo/ipo/float32", {"loss_type": ["ipo"]}, dtype="float32")
    add("dpo/exo_pair/eps=1e-3", {"loss_type": ["exo_pair"], "label_smoothing": 1e-3})
    add("dpo/exo_pair/eps=0.1/beta=0.5", {"loss_type": ["exo_pair"], "label_smoothing": 0.1, "beta": 0.5})
    add("dpo/exo_pair/eps=1e-3/float32", {"loss_type": ["exo_pair"], "label_smoothing": 1e-3}, dtype="float32")
    add("dpo/nca_pair", {"loss_type": ["nca_pair"]})
    add("dpo/nca_pair/beta=0.5", {"loss_type": ["nca_pair"], "beta": 0.5})
    add("dpo/robust/label_smoothing=0.1", {"loss_type": ["robust"], "label_smoothing": 0.1})
    add("dpo/robust/label_smoothing=0", {"loss_type": ["robust"]}, note="equals dpo/sigmoid")
    add("dpo/robust/label_smoothing=0.3/beta=0.5", {"loss_type": ["robust"], "label_smoothing": 0.3, "beta": 0.5})

    # bco_pair: two consecutive calls on one trainer; the second equals a fresh trainer's
    tr = dpo_trainer(loss_type=["bco_pair"])
    call1 = dpo_call(tr, INPUTS_A, torch.float64)
    call2 = dpo_call(tr, INPUTS_B, torch.float64)
    fresh = dpo_call(dpo_trainer(loss_type=["bco_pair"]), INPUTS_B, torch.float64)
    assert call2 == fresh, "bco_pair kept state between calls"
    stateless = "TRL 1.16.0's bco_pair has no running reward mean: this second call on the same trainer equals a fresh trainer's call (asserted)."
    for i, (inp, out) in enumerate([(INPUTS_A, call1), (INPUTS_B, call2)], start=1):
        cases.append(
            {
                "name": f"dpo/bco_pair/call{i}",
                "trainer": "DPOTrainer",
                "dtype": "float64",
                "config": {"loss_type": ["bco_pair"]},
                "params": effective_dpo_params(tr),
                "inputs": inputs_record(inp, torch.float64, BASE_KEYS),
                "outputs": out,
                "note": "first call on a new trainer" if i == 1 else stateless,
            }
        )

    add("dpo/sppo_hard", {"loss_type": ["sppo_hard"]})
    add("dpo/sppo_hard/beta=1", {"loss_type": ["sppo_hard"], "beta": 1.0})
    sorted_note = (
        "losses[aot*][i] belongs to the i-th smallest element of the sorted batch quantities, not to pair i; "
        "only their mean (the loss) and the gradients are per-pair quantities."
    )
    add("dpo/aot", {"loss_type": ["aot"]}, note=sorted_note)
    add("dpo/aot/label_smoothing=0.1", {"loss_type": ["aot"], "label_smoothing": 0.1}, note=sorted_note)
    add("dpo/aot_unpaired", {"loss_type": ["aot_unpaired"]}, note=sorted_note)
    add(
        "dpo/aot_unpaired/label_smoothing=0.1",
        {"loss_type": ["aot_unpaired"], "label_smoothing": 0.1},
        note=sorted_note,
    )
    add("dpo/apo_zero", {"loss_type": ["apo_zero"]})
    add("dpo/apo_zero/beta=0.5", {"loss_type": ["apo_zero"], "beta": 0.5})
    add("dpo/apo_down", {"loss_type": ["apo_down"]})
    add("dpo/apo_down/beta=0.5", {"loss_type": ["apo_down"], "beta": 0.5})
    add("dpo/discopop", {"loss_type": ["discopop"]})
    add("dpo/discopop/tau=0.5/beta=0.5", {"loss_type": ["discopop"], "discopop_tau": 0.5, "beta": 0.5})
    sft_note = (
        "sft is one batch scalar, -(sum of chosen logps) / (sum of chosen token counts), repeated per pair; "
        "its rewards are still beta * log-ratios."
    )
    add("dpo/sft", {"loss_type": ["sft"]}, note=sft_note)
    add("dpo/sft/float32", {"loss_type": ["sft"]}, dtype="float32", note=sft_note)
    add("dpo/sigmoid_norm", {"loss_type": ["sigmoid_norm"]})
    add("dpo/sigmoid_norm/beta=2", {"loss_type": ["sigmoid_norm"], "beta": 2.0})
    add("dpo/mpo", {"loss_type": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1.0]})
    add("dpo/rpo", {"loss_type": ["sigmoid", "sft"]}, note="loss_weights unset: every weight 1.0")
    add("dpo/ipo+hinge", {"loss_type": ["ipo", "hinge"], "loss_weights": [0.3, 0.7], "beta": 0.5})
    add("dpo/sigmoid/forward_kl", {"loss_type": ["sigmoid"], "f_divergence_type": "forward_kl"})
    add("dpo/sigmoid/js_divergence", {"loss_type": ["sigmoid"], "f_divergence_type": "js_divergence"})
    add(
        "dpo/sigmoid/alpha_divergence/float32",
        {"loss_type": ["sigmoid"], "f_divergence_type": "alpha_divergence"},
        dtype="float32",
        note="f_alpha_divergence_coef default 0.5; float64 raises KeyError in TRL (see rejected_configs)",
    )
    add("dpo/hinge/js_divergence", {"loss_type": ["hinge"], "f_divergence_type": "js_divergence"})
    add("dpo/sigmoid/use_weighting", {"loss_type": ["sigmoid"], "use_weighting": True})
    add(
        "dpo/sigmoid/ld_alpha=0.5",
        {"loss_type": ["sigmoid"], "ld_alpha": 0.5},
        note="policy_*_logps are whole-sequence sums; *_tail_logps the part after the shorter response's length "
        "(0 on the shorter row). TRL uses shared + ld_alpha * tail = logps - (1 - ld_alpha) * tail. ref_*_logps "
        "are given already ld-weighted, as TRL's precompute stores them.",
    )
    return cases


# ------------------------------------------------------------------- CPO


def cpo_case(name, cfg, dtype="float64", note=None):
    dt = DTYPES[dtype]
    inp = INPUTS_A
    tr = cpo_trainer(**cfg)
    sc = cast(inp["policy_chosen_logps"], dt).clone().requires_grad_(True)
    sr = cast(inp["policy_rejected_logps"], dt).clone().requires_grad_(True)
    nc = inp["chosen_tokens"].to(dt)
    nr = inp["rejected_tokens"].to(dt)
    average = tr.loss_type in ["ipo", "simpo"]

    def stub_forward(model, batch):
        # what CPOTrainer.concatenated_forward returns (checked in forward_checks)
        lc = sc / nc if average else sc
        lr = sr / nr if average else sr
        if tr.cpo_alpha == 0:
            nll = torch.tensor(0.0)
        else:
            nll = -(sc.sum() / nc.sum())
        dummy = torch.zeros(B, 1, 1, dtype=dt)
        return (lc, lr, dummy, dummy, nll)

    tr.concatenated_forward = stub_forward
    (loss, metrics), final, _ = traced(
        tr.get_batch_loss_metrics, CPOTrainer.get_batch_loss_metrics.__code__, None, None, {}, "train"
    )
    loss.backward()
    params = {
        "loss_type": tr.loss_type,
        "beta": tr.beta,
        "label_smoothing": tr.label_smoothing,
        "cpo_alpha": tr.cpo_alpha,
        "simpo_gamma": getattr(tr, "simpo_gamma", None),
        "alpha": tr.alpha,
        "logps_passed_to_cpo_loss": "sum / n (average)" if average else "sum",
    }
    case = {
        "name": name,
        "trainer": "CPOTrainer",
        "dtype": dtype,
        "config": cfg,
        "params": params,
        "inputs": inputs_record(inp, dt, ["policy_chosen_logps", "policy_rejected_logps", "chosen_tokens", "rejected_tokens"]),
        "outputs": {
            "loss": num(loss),
            "losses": num(final["losses"]),
            "nll_loss": num(final["policy_nll_loss"]),
            "chosen_rewards": num(final["chosen_rewards"]),
            "rejected_rewards": num(final["rejected_rewards"]),
            "grad_policy_chosen_logps": num(sc.grad),
            "grad_policy_rejected_logps": num(sr.grad),
            "logged": {k: num(metrics[k]) for k in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "nll_loss")},
        },
    }
    if note:
        case["note"] = note
    return case


def cpo_cases():
    return [
        cpo_case("cpo/sigmoid", {"loss_type": "sigmoid"}, note="CPO: sigmoid on summed logps + cpo_alpha (1.0) * NLL"),
        cpo_case("cpo/hinge", {"loss_type": "hinge"}),
        cpo_case("cpo/ipo", {"loss_type": "ipo"}),
        cpo_case(
            "cpo/simpo",
            {"loss_type": "simpo"},
            note="CPOConfig defaults: beta 0.1, simpo_gamma 0.5, cpo_alpha 1.0 (so an NLL term is added: CPO-SimPO)",
        ),
        cpo_case("cpo/simpo/cpo_alpha=0", {"loss_type": "simpo", "cpo_alpha": 0.0}, note="plain SimPO"),
        cpo_case(
            "cpo/simpo/beta=2/gamma=1/cpo_alpha=0",
            {"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 1.0, "cpo_alpha": 0.0},
            note="SimPO paper scale (beta 2, gamma 1)",
        ),
        cpo_case("cpo/simpo/label_smoothing=0.1", {"loss_type": "simpo", "label_smoothing": 0.1, "cpo_alpha": 0.0}),
        cpo_case(
            "cpo/alphapo",
            {"loss_type": "alphapo", "alpha": 0.25, "beta": 2.0, "simpo_gamma": 1.0},
            note="CPOConfig turns loss_type 'alphapo' into 'simpo' with cpo_alpha 0",
        ),
    ]


# ------------------------------------------------------------------ ORPO


def orpo_case(name, cfg, dtype="float64", note=None):
    dt = DTYPES[dtype]
    inp = INPUTS_A
    tr = orpo_trainer(**cfg)
    sc = cast(inp["policy_chosen_logps"], dt).clone().requires_grad_(True)
    sr = cast(inp["policy_rejected_logps"], dt).clone().requires_grad_(True)
    sp = cast(inp["chosen_prompt_logps"], dt).clone().requires_grad_(True)
    nc = inp["chosen_tokens"].to(dt)
    nr = inp["rejected_tokens"].to(dt)
    npr = (inp["prompt_tokens"] - 1).to(dt)

    def stub_forward(model, batch):
        # what ORPOTrainer.concatenated_forward returns (checked in forward_checks)
        nll = -((sp + sc).sum() / (npr + nc).sum())
        dummy = torch.zeros(B, 1, 1, dtype=dt)
        return (sc / nc, sr / nr, dummy, dummy, nll)

    tr.concatenated_forward = stub_forward
    (loss, metrics), finals, _ = traced(
        tr.get_batch_loss_metrics,
        (ORPOTrainer.get_batch_loss_metrics.__code__, ORPOTrainer.odds_ratio_loss.__code__),
        None,
        None,
        {},
        "train",
    )
    final = finals["get_batch_loss_metrics"]
    log_odds = finals["odds_ratio_loss"]["log_odds"]
    loss.backward()
    case = {
        "name": name,
        "trainer": "ORPOTrainer",
        "dtype": dtype,
        "config": cfg,
        "params": {"beta": tr.beta, "logps_passed_to_odds_ratio_loss": "sum / n (average), cast to float32"},
        "inputs": inputs_record(
            inp, dt, ["policy_chosen_logps", "policy_rejected_logps", "chosen_tokens", "rejected_tokens", "prompt_tokens", "chosen_prompt_logps"]
        ),
        "outputs": {
            "loss": num(loss),
            "loss_dtype": str(loss.dtype).replace("torch.", ""),
            "losses": num(final["losses"]),
            "losses_dtype": str(final["losses"].dtype).replace("torch.", ""),
            "log_odds": num(log_odds),
            "nll_loss": num(final["policy_nll_loss"]),
            "chosen_rewards": num(final["chosen_rewards"]),
            "rejected_rewards": num(final["rejected_rewards"]),
            "grad_policy_chosen_logps": num(sc.grad),
            "grad_policy_rejected_logps": num(sr.grad),
            "grad_chosen_prompt_logps": num(sp.grad),
            "logged": {
                k: num(metrics[k])
                for k in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "nll_loss", "log_odds_ratio", "log_odds_chosen")
            },
        },
    }
    if note:
        case["note"] = note
    return case


def orpo_cases():
    note = (
        "inputs: policy_*_logps are completion token sums; chosen_prompt_logps the log-prob sum of the chosen "
        "prompt's tokens 2..p (p - 1 tokens), which ORPO's NLL also covers. odds_ratio_loss casts the average "
        "logps to float32, so losses/log_odds are float32 whatever the input dtype."
    )
    return [
        orpo_case("orpo/beta=0.1", {}, note=note),
        orpo_case("orpo/beta=0.5", {"beta": 0.5}, note=note),
        orpo_case("orpo/beta=0.1/float32", {}, dtype="float32", note=note),
    ]


# -------------------------------------------------------- forward checks


class LogitsStandIn:
    def __init__(self, logits):
        self.logits = logits

    def __call__(self, input_ids, attention_mask=None, use_cache=None, **kw):
        assert input_ids.shape == self.logits.shape[:2]
        return SimpleNamespace(logits=self.logits)


def forward_batch(g, V):
    """A CPO/ORPO-style padded batch: prompt + completion rows with labels -100 on the prompt."""
    out = {}
    lens = {}
    for side in ("chosen", "rejected"):
        p = torch.randint(2, 6, (3,), generator=g)
        n = torch.randint(2, 7, (3,), generator=g)
        L = int((p + n).max())
        ids = torch.zeros(3, L, dtype=torch.long)
        att = torch.zeros(3, L, dtype=torch.long)
        lab = torch.full((3, L), -100, dtype=torch.long)
        for i in range(3):
            toks = torch.randint(3, V, (int(p[i] + n[i]),), generator=g)
            ids[i, : len(toks)] = toks
            att[i, : len(toks)] = 1
            lab[i, int(p[i]) : len(toks)] = toks[int(p[i]) :]
        out[f"{side}_input_ids"], out[f"{side}_attention_mask"], out[f"{side}_labels"] = ids, att, lab
        lens[side] = (p, n)
    return out, lens


def manual_logps(logits, ids, mask_from, lengths):
    """Per row: sum and count of log_softmax(logits)[t-1, ids[t]] over t in [mask_from, length)."""
    lsm = logits.log_softmax(-1)
    sums, counts = [], []
    for i in range(ids.shape[0]):
        s, c = 0.0, 0
        for t in range(int(mask_from[i]), int(lengths[i])):
            s += float(lsm[i, t - 1, ids[i, t]])
            c += 1
        sums.append(s)
        counts.append(c)
    return torch.tensor(sums, dtype=torch.float64), torch.tensor(counts, dtype=torch.float64)


def forward_checks():
    g = torch.Generator().manual_seed(7)
    V = len(WORDS)
    checks = {}
    for label, make, avg_for in (
        ("cpo_concatenated_forward/sigmoid", lambda: cpo_trainer(loss_type="sigmoid"), False),
        ("cpo_concatenated_forward/simpo", lambda: cpo_trainer(loss_type="simpo"), True),
        ("orpo_concatenated_forward", lambda: orpo_trainer(), True),
    ):
        tr = make()
        batch, lens = forward_batch(g, V)
        L = max(batch["chosen_input_ids"].shape[1], batch["rejected_input_ids"].shape[1])
        logits = torch.randn(6, L, V, generator=g, dtype=torch.float64) * 2
        cl, rl, _, _, nll = tr.concatenated_forward(LogitsStandIn(logits), batch)
        worst = 0.0
        sums = {}
        for k, side in enumerate(("chosen", "rejected")):
            p, n = lens[side]
            ids = torch.nn.functional.pad(batch[f"{side}_input_ids"], (0, L - batch[f"{side}_input_ids"].shape[1]))
            s, c = manual_logps(logits[3 * k : 3 * k + 3], ids, p, p + n)
            sums[side] = (s, c, ids, p, n)
            expect = s / c if avg_for else s
            got = cl if side == "chosen" else rl
            worst = max(worst, float((got - expect).abs().max()))
        s, c, ids, p, n = sums["chosen"]
        if label.startswith("orpo"):
            fs, fc = manual_logps(logits[:3], ids, torch.ones(3, dtype=torch.long), p + n)
            expect_nll = -(fs.sum() / fc.sum())
            nll_def = "mean -log p over chosen prompt+completion tokens 2..p+n of all rows (token-weighted)"
        else:
            expect_nll = -(s.sum() / c.sum())
            nll_def = "mean -log p over chosen completion tokens of all rows (token-weighted)"
        nll_diff = abs(float(nll) - float(expect_nll))
        assert worst < 1e-12 and nll_diff < 1e-12, (label, worst, nll_diff)
        checks[label] = {
            "logps": "completion sum / completion tokens" if avg_for else "completion sum",
            "nll": nll_def,
            "max_abs_diff_logps": worst,
            "abs_diff_nll": nll_diff,
        }

    # DPO: the real tiny Llama with TRL's fused head, on the trainer's own collated batch
    tr = dpo_trainer(loss_type=["sigmoid_norm"])
    rows = [tr.train_dataset[i] for i in range(len(tr.train_dataset))]
    batch = tr.data_collator(rows)
    loss, final, _ = traced(tr._compute_loss, DPOTrainer._compute_loss.__code__, None, tr.model, batch, False)
    with torch.no_grad():
        logits = tr.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double()
    lsm = logits.log_softmax(-1)
    tok = lsm[:, :-1].gather(-1, batch["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
    seq = (tok * batch["completion_mask"][:, 1:]).sum(1)
    n = batch["completion_mask"].sum(1)
    got = torch.cat([final["chosen_logps"], final["rejected_logps"]]).double()
    expect_n = torch.tensor([len(r["chosen_ids"]) for r in rows] + [len(r["rejected_ids"]) for r in rows])
    assert torch.equal(n, expect_n)
    diff = float((got - seq).abs().max())
    assert diff < 1e-5, diff
    b = tr.beta
    rc, rr = batch["ref_chosen_logps"].double(), batch["ref_rejected_logps"].double()
    k = len(rows)
    delta = (seq[:k] - rc) / n[:k] - (seq[k:] - rr) / n[k:]
    manual_loss = float(-F.logsigmoid(b * delta).mean())
    checks["dpo_real_model/sigmoid_norm"] = {
        "logps": "sum over completion tokens (completion_mask, EOS included) of log_softmax at the label",
        "token_counts": "completion_mask row sums = len(chosen_ids) / len(rejected_ids)",
        "max_abs_diff_logps_float32_model": diff,
        "abs_diff_loss": abs(manual_loss - float(loss)),
    }
    assert abs(manual_loss - float(loss)) < 1e-5
    return checks


# ------------------------------------------------------- rejected configs


def rejected_configs():
    out = []

    def attempt(desc, fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            out.append({"config": desc, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"})
            return
        out.append({"config": desc, "error": None})

    attempt({"loss_type": ["exo_pair"], "label_smoothing": 0.0}, lambda: dpo_trainer(loss_type=["exo_pair"]))
    attempt(
        {"loss_type": ["bco_pair"], "f_divergence_type": "js_divergence"},
        lambda: dpo_trainer(loss_type=["bco_pair"], f_divergence_type="js_divergence"),
    )
    attempt(
        {"loss_type": ["aot"], "use_weighting": True},
        lambda: dpo_trainer(loss_type=["aot"], use_weighting=True),
    )
    attempt(
        {"loss_type": ["sigmoid"], "loss_weights": [1.0, 2.0]},
        lambda: DPOConfig(**COMMON_ARGS, loss_type=["sigmoid"], loss_weights=[1.0, 2.0]),
    )
    attempt(
        {"loss_type": ["sigmoid"], "f_divergence_type": "alpha_divergence", "dtype": "float64"},
        lambda: dpo_call(
            dpo_trainer(loss_type=["sigmoid"], f_divergence_type="alpha_divergence"), INPUTS_A, torch.float64
        ),
    )
    attempt(
        {"loss_type": ["sft"], "use_weighting": True, "dtype": "float64"},
        lambda: dpo_call(dpo_trainer(loss_type=["sft"], use_weighting=True), INPUTS_A, torch.float64, weighting=True),
    )
    attempt({"loss_type": ["kto_pair"]}, lambda: dpo_call(dpo_trainer(loss_type=["kto_pair"]), INPUTS_A, torch.float64))
    attempt({"trainer": "CPOTrainer", "loss_type": "kto_pair"}, lambda: cpo_trainer(loss_type="kto_pair"))
    return out


# ------------------------------------------------------------ legacy 0.28


def extract(source, qualname):
    """The source text (decorators included, dedented) of a top-level class or a method."""
    nodes = ast.parse(source).body
    node = None
    for part in qualname.split("."):
        node = next(n for n in nodes if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == part)
        nodes = node.body
    start = min([d.lineno for d in node.decorator_list] + [node.lineno])
    lines = source.splitlines()[start - 1 : node.end_lineno]
    return textwrap.dedent("\n".join(lines)) + "\n", (start, node.end_lineno)


def legacy_cases(wheel):
    with zipfile.ZipFile(wheel) as z:
        dpo_src = z.read("trl/trainer/dpo_trainer.py").decode()
        utils_src = z.read("trl/trainer/utils.py").decode()
    ns = {"torch": torch, "F": F, "math": math, "dataclass": dataclass, "Enum": Enum, "Accelerator": object}
    rm_src, rm_lines = extract(utils_src, "RunningMoments")
    exec(compile(rm_src, f"trl-{LEGACY_VERSION}/trl/trainer/utils.py:RunningMoments", "exec", dont_inherit=True), ns)
    loss_src, loss_lines = extract(dpo_src, "DPOTrainer.dpo_loss")
    exec(compile(loss_src, f"trl-{LEGACY_VERSION}/trl/trainer/dpo_trainer.py:dpo_loss", "exec", dont_inherit=True), ns)
    dpo_loss = ns["dpo_loss"]
    LEGACY_LINES.update(
        {
            "DPOTrainer.dpo_loss": "trl/trainer/dpo_trainer.py:%d-%d" % loss_lines,
            "RunningMoments": "trl/trainer/utils.py:%d-%d" % rm_lines,
        }
    )
    accelerator = SimpleNamespace(device=torch.device("cpu"), use_distributed=False)
    fdiv = SimpleNamespace(ALPHA_DIVERGENCE="alpha_divergence", JS_DIVERGENCE="js_divergence")
    ns["FDivergenceType"] = fdiv
    ns["FDivergenceConstants"] = SimpleNamespace(ALPHA_DIVERGENCE_COEF_KEY="alpha_divergence_coef", ALPHA_DIVERGENCE_COEF_DEFAULT=1.0)
    self = SimpleNamespace(
        accelerator=accelerator,
        beta=0.1,
        label_smoothing=0.0,
        reference_free=False,
        f_divergence_type="reverse_kl",
        f_divergence_params={},
        running=ns["RunningMoments"](accelerator),
        args=SimpleNamespace(discopop_tau=0.05),
    )
    cases = []
    for i, inp in enumerate([INPUTS_A, INPUTS_B], start=1):
        pc = inp["policy_chosen_logps"].clone().requires_grad_(True)
        pr = inp["policy_rejected_logps"].clone().requires_grad_(True)
        mean_before = self.running.mean
        losses, cr, rr = dpo_loss(self, pc, pr, inp["ref_chosen_logps"], inp["ref_rejected_logps"], "bco_pair", {})
        losses.mean().backward()
        cases.append(
            {
                "name": f"legacy_v{LEGACY_VERSION}/bco_pair/call{i}",
                "trainer": f"DPOTrainer (TRL {LEGACY_VERSION} dpo_loss, not 1.16.0)",
                "dtype": "float64",
                "config": {"loss_type": "bco_pair"},
                "params": {"beta": self.beta},
                "inputs": inputs_record(inp, torch.float64, BASE_KEYS[:4]),
                "outputs": {
                    "running_mean_before": mean_before,
                    "running_mean_after": self.running.mean,
                    "running_count_after": self.running.count,
                    "loss": num(losses.mean()),
                    "losses": {"bco_pair": num(losses)},
                    "chosen_rewards": num(cr),
                    "rejected_rewards": num(rr),
                    "grad_policy_chosen_logps": num(pc.grad),
                    "grad_policy_rejected_logps": num(pr.grad),
                },
                "note": "delta = running mean (float32-rounded Python float) of the per-batch means of "
                "cat(beta*chosen_logratios, beta*rejected_logratios), updated with this batch BEFORE the loss; "
                "loss = -logsigmoid(beta*chosen_logratios - delta) - logsigmoid(-(beta*rejected_logratios - delta)).",
            }
        )
    return cases


# ------------------------------------------------------------------ output


def dumps(obj, indent=0):
    """JSON with one line per scalar list (compact) and nested objects indented."""
    pad = "  " * (indent + 1)
    end = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj):
            return "[" + ", ".join(json.dumps(v) for v in obj) + "]"
        return "[\n" + ",\n".join(pad + dumps(v, indent + 1) for v in obj) + "\n" + end + "]"
    return json.dumps(obj)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--legacy-wheel", default=f"/work/trl-{LEGACY_VERSION}/trl-{LEGACY_VERSION}-py3-none-any.whl")
    ap.add_argument("--skip-legacy", action="store_true")
    a = ap.parse_args()

    cases = dpo_cases() + cpo_cases() + orpo_cases()
    if not a.skip_legacy:
        cases += legacy_cases(a.legacy_wheel)
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names))
    doc = {
        "about": {
            "what": "TRL's own loss outputs for every DPOTrainer loss_type, CPOTrainer (SimPO, CPO) and ORPOTrainer, "
            "on seeded random sequence log-probs; the spec is docs/trl-losses.md (issue 28).",
            "script": "scripts/make_trl_loss_fixtures.py",
            "trl_version": TRL_VERSION,
            "trl_tag": f"v{TRL_VERSION}",
            "trl_sources": {
                "DPOTrainer._compute_loss": "trl/trainer/dpo_trainer.py:1285-1612",
                "DPOConfig": "trl/trainer/dpo_config.py",
                "CPOTrainer.cpo_loss": "trl/experimental/cpo/cpo_trainer.py:678-750",
                "CPOTrainer.concatenated_forward": "trl/experimental/cpo/cpo_trainer.py:792-863",
                "CPOTrainer.get_batch_loss_metrics": "trl/experimental/cpo/cpo_trainer.py:865-917",
                "ORPOTrainer.odds_ratio_loss": "trl/experimental/orpo/orpo_trainer.py:670-702",
                "ORPOTrainer.concatenated_forward": "trl/experimental/orpo/orpo_trainer.py:745-822",
                "ORPOTrainer.get_batch_loss_metrics": "trl/experimental/orpo/orpo_trainer.py:824-880",
                "legacy": {"trl_version": LEGACY_VERSION, **LEGACY_LINES},
            },
            "line_numbers_refer_to": f"the files of the trl-{TRL_VERSION} wheel from PyPI",
            "versions": {
                "python": platform.python_version(),
                "trl": trl.__version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "accelerate": importlib.metadata.version("accelerate"),
                "datasets": datasets.__version__,
            },
            "batch_size": B,
            "conventions": [
                "Each case: name, trainer, dtype (of the log-prob tensors fed to TRL), config (the non-default "
                "config arguments), params (the values the trainer actually used), inputs, outputs.",
                "policy_*_logps / ref_*_logps: sequence log-probs, summed over completion tokens. *_tokens: "
                "completion token counts (what TRL's completion_mask holds); prompt_tokens: prompt length.",
                "outputs.loss: the scalar TRL returns (what it backpropagates). outputs.losses: per loss type, the "
                "per-example tensor TRL averages (DPO: per_sequence_loss; CPO/ORPO: the `losses` their loss method "
                "returns). DPO loss = sum_t loss_weights[t] * mean(losses[t]). CPO loss = mean(losses) + cpo_alpha * "
                "nll_loss. ORPO loss = nll_loss - mean(losses).",
                "chosen_rewards / rejected_rewards: the per-example tensors TRL logs (means) as rewards/chosen and "
                "rewards/rejected; outputs.logged: the logged means.",
                "grad_*: d outputs.loss / d input, by torch.autograd, in the case's dtype.",
                "float32 cases: inputs are the float32 values, printed as doubles (exact).",
            ],
        },
        "case_names": names,
        "cases": cases,
        "rejected_configs": rejected_configs(),
        "forward_checks": forward_checks(),
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    text = dumps(doc) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    json.loads(text)
    print(f"wrote {a.out}: {len(cases)} cases, {len(text)} bytes")


if __name__ == "__main__":
    main()
