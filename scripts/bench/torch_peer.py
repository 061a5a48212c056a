#!/usr/bin/env python3
"""The PyTorch eager peer of lpo's benchmark (scripts/bench/cpu_bench.sh runs
both sides and prints the ratios; ../shared/bench/gpu_bench.sh embeds an
earlier copy of this script for the GPU).

Times a DPO training step in PyTorch eager, the way TRL's DPOTrainer runs it,
for comparison with lpo (same Mistral-style model, same batch, same loss), or
reward-list sampling with transformers' generate (--mode sample).

TRL-style step ("trl"): every (prompt, response) pair is its own sequence; the
B*K sequences are right-padded (TRL concatenates prompt and completion, then
flushes left), one forward over all of them, log-softmax + gather of the
response tokens, summed per sequence; DPO (sigmoid) loss on the best vs the
worst response of each prompt against precomputed reference log-probs;
backward; clip_grad_norm_(1.0); torch.optim.AdamW (fused, as transformers'
Trainer defaults to with torch >= 2.8); zero_grad.

Prompt-shared step ("shared", the trick lpo uses): the B prompts are run once
with a KV cache, the cache is repeated K times, then the B*K responses are run
against it; gradients flow through the shared prefix.

Sampling ("sample"): transformers' generate(do_sample=True, top_p=1,
temperature=1, num_return_sequences=K) of --max-new-tokens tokens for each of
the batch's prompts (min_new_tokens = max_new_tokens, so every row produces
the same number of tokens as lpo's side, which never stops early either).

Model: transformers' MistralForCausalLM (--impl hf, attn sdpa or eager) or a
minimal pure-PyTorch Mistral defined below (--impl mini; same parameter
names, so it loads the same safetensors), used when transformers is missing.

Prints one JSON line: per-step wall-clock and CPU seconds (process time, all
threads) of the timed steps and their medians. Run by hand in a virtualenv
with torch and transformers from PyPI; CI does not need it.
"""

import argparse
import json
import math
import os
import random
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# lpo's size presets (crates/lpo-recipe/src/schema.rs SizePreset::dims).
PRESETS = {
    "nano": dict(layers=2, d_model=64, heads=4, kv_heads=2, d_ff=176, vocab=64, max_len=128),
    "tiny": dict(layers=4, d_model=128, heads=4, kv_heads=2, d_ff=352, vocab=64, max_len=256),
    "small": dict(layers=6, d_model=256, heads=8, kv_heads=4, d_ff=704, vocab=64, max_len=256),
    "base": dict(layers=12, d_model=768, heads=12, kv_heads=4, d_ff=2048, vocab=32000, max_len=1024),
}
ROPE_THETA = 10000.0
RMS_EPS = 1e-5

# lpo's character tokenizer (crates/lpo-data/src/tokenizer.rs): pad 0, bos 1, eos 2, unk 3.
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz +-*/=<>,;:|[]()?!."
PAD, BOS, EOS, UNK = 0, 1, 2, 3


def encode(text):
    return [4 + ALPHABET.index(c) if c in ALPHABET else UNK for c in text]


def dims_from_args(a):
    d = dict(PRESETS[a.size])
    for key in ("layers", "d_model", "heads", "kv_heads", "d_ff", "vocab", "max_len"):
        v = getattr(a, key)
        if v is not None:
            d[key] = v
    return d


def hf_config_json(d):
    """The config.json lpo writes (Config::to_hf_json); transformers reads it too."""
    return {
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "vocab_size": d["vocab"],
        "hidden_size": d["d_model"],
        "intermediate_size": d["d_ff"],
        "num_hidden_layers": d["layers"],
        "num_attention_heads": d["heads"],
        "num_key_value_heads": d["kv_heads"],
        "max_position_embeddings": d["max_len"],
        "rope_theta": ROPE_THETA,
        "rms_norm_eps": RMS_EPS,
        "sliding_window": None,
        "hidden_act": "silu",
        "head_dim": d["d_model"] // d["heads"],
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }


# --------------------------------------------------------------------------
# A minimal Mistral (HF parameter names), used when transformers is missing.
# --------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.heads, self.kv_heads = d["heads"], d["kv_heads"]
        self.head_dim = d["d_model"] // d["heads"]
        e = self.head_dim
        self.q_proj = nn.Linear(d["d_model"], self.heads * e, bias=False)
        self.k_proj = nn.Linear(d["d_model"], self.kv_heads * e, bias=False)
        self.v_proj = nn.Linear(d["d_model"], self.kv_heads * e, bias=False)
        self.o_proj = nn.Linear(self.heads * e, d["d_model"], bias=False)

    def forward(self, x, cos, sin, mask, past):
        b, t, _ = x.shape
        e = self.head_dim
        q = self.q_proj(x).view(b, t, self.heads, e).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, e).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, e).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        present = (k, v)
        groups = self.heads // self.kv_heads
        if mask is None:  # no padding, no cache: causal (flash-capable on CUDA)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=groups > 1)
        else:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.heads * e)), present


class Mlp(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.gate_proj = nn.Linear(d["d_model"], d["d_ff"], bias=False)
        self.up_proj = nn.Linear(d["d_model"], d["d_ff"], bias=False)
        self.down_proj = nn.Linear(d["d_ff"], d["d_model"], bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.input_layernorm = RMSNorm(d["d_model"], RMS_EPS)
        self.self_attn = Attention(d)
        self.post_attention_layernorm = RMSNorm(d["d_model"], RMS_EPS)
        self.mlp = Mlp(d)

    def forward(self, x, cos, sin, mask, past):
        a, present = self.self_attn(self.input_layernorm(x), cos, sin, mask, past)
        h = x + a
        return h + self.mlp(self.post_attention_layernorm(h)), present


class Backbone(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.embed_tokens = nn.Embedding(d["vocab"], d["d_model"])
        self.layers = nn.ModuleList([Block(d) for _ in range(d["layers"])])
        self.norm = RMSNorm(d["d_model"], RMS_EPS)
        e = d["d_model"] // d["heads"]
        self.register_buffer(
            "inv_freq", 1.0 / (ROPE_THETA ** (torch.arange(0, e, 2, dtype=torch.float32) / e)), persistent=False
        )


class MiniMistral(nn.Module):
    """`forward(ids, attention_mask=None, position_ids=None, past=None) -> (hidden, presents)`."""

    def __init__(self, d):
        super().__init__()
        self.model = Backbone(d)
        self.lm_head = nn.Linear(d["d_model"], d["vocab"], bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)

    def hidden(self, ids, key_valid=None, position_ids=None, past=None):
        """key_valid: [B, S] bool (cached + new keys), None = no padding."""
        b, t = ids.shape
        past_len = 0 if past is None else past[0][0].shape[2]
        if position_ids is None:
            position_ids = torch.arange(past_len, past_len + t, device=ids.device).unsqueeze(0).expand(b, t)
        freqs = position_ids.float().unsqueeze(-1) * self.model.inv_freq  # [B, T, E/2]
        emb = torch.cat([freqs, freqs], dim=-1)
        x = self.model.embed_tokens(ids)
        cos = emb.cos().to(x.dtype).unsqueeze(1)
        sin = emb.sin().to(x.dtype).unsqueeze(1)
        if key_valid is None and past is None:
            mask = None
        else:
            s = past_len + t
            q = torch.arange(past_len, s, device=ids.device).unsqueeze(1)
            k = torch.arange(s, device=ids.device).unsqueeze(0)
            allowed = (k <= q).unsqueeze(0)  # [1, T, S]
            if key_valid is not None:
                allowed = allowed & key_valid.unsqueeze(1)
            mask = (allowed | (k == q).unsqueeze(0)).unsqueeze(1)  # a query always sees itself
        presents = []
        for i, layer in enumerate(self.model.layers):
            x, present = layer(x, cos, sin, mask, None if past is None else past[i])
            presents.append(present)
        return self.model.norm(x), presents


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def read_lists(path, k):
    lists = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            prompt = [BOS] + encode(r["prompt"])
            resp = [encode(x["text"]) + [EOS] for x in r["responses"][:k]]
            rewards = [float(x["reward"]) for x in r["responses"][:k]]
            lists.append((prompt, resp, rewards))
    return lists


def write_synthetic_jsonl(path, n, k, prompt_tokens, response_tokens, seed, arith=False):
    """Lists with fixed lengths: prompt_tokens counts bos, response_tokens counts eos.
    With arith, lists shaped like lpo's arithmetic task instead: prompts "a+b="
    (a, b < 100) and answers of 1 to 3 digits, so lengths vary and rows pad."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            if arith:
                prompt = f"{rng.randrange(100)}{rng.choice('+-')}{rng.randrange(100)}="
                rewards = list(range(k))
                rng.shuffle(rewards)
                responses = [{"text": str(rng.randrange(10 ** rng.randint(1, 3))), "reward": float(r)} for r in rewards]
                f.write(json.dumps({"prompt": prompt, "responses": responses}) + "\n")
                continue
            prompt = "".join(rng.choice(ALPHABET[:36]) for _ in range(prompt_tokens - 1))
            rewards = list(range(k))
            rng.shuffle(rewards)
            responses = [
                {"text": "".join(rng.choice(ALPHABET[:36]) for _ in range(response_tokens - 1)), "reward": float(r)}
                for r in rewards
            ]
            f.write(json.dumps({"prompt": prompt, "responses": responses}) + "\n")


def best_worst(rewards):
    best = max(range(len(rewards)), key=lambda i: (rewards[i], -i))
    worst = min(range(len(rewards)), key=lambda i: (rewards[i], i))
    return best, worst


# --------------------------------------------------------------------------
# Log-probabilities, both ways
# --------------------------------------------------------------------------


def collate_trl(batch, device):
    """TRL: prompt + completion per pair, right-padded; labels only on completions."""
    rows, comp = [], []
    for prompt, responses, _ in batch:
        for r in responses:
            rows.append(prompt + r)
            comp.append([0] * len(prompt) + [1] * len(r))
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows], dtype=torch.long)
    att = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
    cm = torch.tensor([c + [0] * (width - len(c)) for c in comp], dtype=torch.long)
    return ids.to(device), att.to(device), cm.to(device)


def logps_trl(model, impl, batch, k, device, trl_fused):
    ids, att, cm = collate_trl(batch, device)
    labels = ids.masked_fill(cm == 0, -100)
    if impl == "hf":
        if trl_fused:  # TRL >= 1.x: fused/chunked LM head, never materializes full logits
            out = model(input_ids=ids, attention_mask=att, use_cache=False, labels=labels, fused_lm_head=True)
            per_token = out.log_probs
            return per_token.sum(1).view(len(batch), k)
        logits = model(input_ids=ids, attention_mask=att, use_cache=False).logits
    else:
        key_valid = None if bool(att.all()) else att.bool()
        h, _ = model.hidden(ids, key_valid=key_valid)
        logits = model.lm_head(h)
    logits = logits[:, :-1].float()
    labels = labels[:, 1:]
    mask = labels != -100
    per_token = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0).unsqueeze(2)).squeeze(2)
    return (per_token * mask).sum(1).view(len(batch), k)


def logps_shared(model, impl, batch, k, device):
    """lpo's trick: prompts once (KV cached, repeated K times), then the responses."""
    b = len(batch)
    tp = max(len(p) for p, _, _ in batch)
    p_ids = torch.tensor([[PAD] * (tp - len(p)) + p for p, _, _ in batch], dtype=torch.long, device=device)
    p_valid = torch.tensor([[0] * (tp - len(p)) + [1] * len(p) for p, _, _ in batch], dtype=torch.bool, device=device)
    p_pos = (p_valid.long().cumsum(1) - 1).clamp(min=0)
    resps = [r for _, rs, _ in batch for r in rs]
    tr = max(len(r) for r in resps)
    r_ids = torch.tensor([r + [PAD] * (tr - len(r)) for r in resps], dtype=torch.long, device=device)
    r_valid = torch.tensor([[1] * len(r) + [0] * (tr - len(r)) for r in resps], dtype=torch.bool, device=device)
    start = (p_pos[:, -1] + 1).repeat_interleave(k)
    r_pos = start.unsqueeze(1) + torch.arange(tr, device=device).unsqueeze(0)
    key_valid = torch.cat([p_valid.repeat_interleave(k, 0), r_valid], 1)
    if impl == "hf":
        out = model.model(input_ids=p_ids, attention_mask=p_valid.long(), position_ids=p_pos, use_cache=True)
        cache = out.past_key_values
        cache.batch_repeat_interleave(k)
        hp = out.last_hidden_state
        hr = model.model(
            input_ids=r_ids, attention_mask=key_valid.long(), position_ids=r_pos, past_key_values=cache, use_cache=True
        ).last_hidden_state
    else:
        all_valid = bool(p_valid.all())
        hp, presents = model.hidden(p_ids, key_valid=None if all_valid else p_valid, position_ids=p_pos)
        presents = [(kk.repeat_interleave(k, 0), vv.repeat_interleave(k, 0)) for kk, vv in presents]
        hr, _ = model.hidden(r_ids, key_valid=key_valid, position_ids=r_pos, past=presents)
    last = hp[:, -1].repeat_interleave(k, 0).unsqueeze(1)
    pred = torch.cat([last, hr[:, :-1]], 1)
    logits = model.lm_head(pred).float()
    per_token = torch.gather(logits.log_softmax(-1), 2, r_ids.unsqueeze(2)).squeeze(2)
    return (per_token * r_valid).sum(1).view(b, k)


# --------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------


def sample_bench(a, model, impl, lists, device, n_params):
    """transformers' generate on --batch prompts x K samples, --steps times."""
    if impl != "hf":
        sys.exit("--mode sample needs transformers (--impl hf)")
    model.eval()
    rng = random.Random(a.seed)
    torch.manual_seed(a.seed)
    times, cpu_times = [], []
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for step in range(a.warmup + a.steps):
            batch = [lists[i][0] for i in rng.sample(range(len(lists)), a.batch)]
            width = max(len(p) for p in batch)
            ids = torch.tensor([[PAD] * (width - len(p)) + p for p in batch], device=device)
            att = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            out = model.generate(
                input_ids=ids,
                attention_mask=att,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                num_return_sequences=a.k,
                max_new_tokens=a.max_new_tokens,
                min_new_tokens=a.max_new_tokens,
                pad_token_id=PAD,
                eos_token_id=EOS,
            )
            sync()
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert out.shape == (a.batch * a.k, width + a.max_new_tokens), out.shape
            if step >= a.warmup:
                times.append(dt)
                cpu_times.append(cpu)
    out = {
        "label": a.label,
        "impl": impl,
        "mode": "sample",
        "dims": dims_from_args(a),
        "params": n_params,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "steps": len(times),
        "median_s": statistics.median(times),
        "median_cpu_s": statistics.median(cpu_times),
        "min_s": min(times),
        "max_s": max(times),
        "tokens_per_call": a.batch * a.k * a.max_new_tokens,
        "times": [round(t, 5) for t in times],
    }
    print("TORCHSTEP " + json.dumps(out), flush=True)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def build_model(a, d, device):
    device = torch.device(device)
    impl = a.impl
    if impl == "auto":
        try:
            import transformers  # noqa: F401

            impl = "hf"
        except Exception:
            impl = "mini"
    if impl == "hf":
        from transformers import MistralConfig, MistralForCausalLM

        if a.ckpt:
            model = MistralForCausalLM.from_pretrained(a.ckpt, attn_implementation=a.attn, dtype=torch.float32)
        else:
            cfg = hf_config_json(d)
            cfg = {k: v for k, v in cfg.items() if k not in ("architectures", "model_type", "torch_dtype")}
            config = MistralConfig(**cfg)
            config._attn_implementation = a.attn
            torch.manual_seed(a.seed)
            with torch.device(device):  # initialise on the device (a 1B model on CPU takes long)
                model = MistralForCausalLM(config)
        if a.trl_fused:
            from trl.trainer.utils import add_fused_lm_head

            add_fused_lm_head(model)
    else:
        torch.manual_seed(a.seed)
        with torch.device("cpu" if a.ckpt else device):
            model = MiniMistral(d)
        if a.ckpt:
            from safetensors.torch import load_file

            sd = load_file(os.path.join(a.ckpt, "model.safetensors"))
            missing, unexpected = model.load_state_dict(sd, strict=False)
            assert not missing, missing
    model.to(device)
    model.train()
    return model, impl


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="nano", choices=sorted(PRESETS))
    for key in ("layers", "d_model", "heads", "kv_heads", "d_ff", "vocab", "max_len"):
        p.add_argument("--" + key.replace("_", "-"), dest=key, type=int)
    p.add_argument("--ckpt", help="checkpoint dir (config.json + model.safetensors) to load")
    p.add_argument("--write-ckpt", help="write a random-init checkpoint here (lpo-readable config.json) and exit")
    p.add_argument("--data", help="native JSONL reward lists (lpo's format, char tokenizer)")
    p.add_argument("--write-synthetic", help="write fixed-length synthetic lists to this JSONL and exit")
    p.add_argument("--n-lists", type=int, default=64)
    p.add_argument("--arith", action="store_true", help="--write-synthetic: arithmetic-shaped lists")
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--response-tokens", type=int, default=64)
    p.add_argument("--impl", default="auto", choices=["auto", "hf", "mini"])
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    p.add_argument("--mode", default="trl", choices=["trl", "shared", "sample"])
    p.add_argument("--max-new-tokens", type=int, default=64, help="--mode sample: tokens per response")
    p.add_argument("--trl-fused", action="store_true", help="TRL 1.x fused LM head (trl.trainer.utils.add_fused_lm_head)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", default="none", choices=["none", "bf16"], help="bf16 = fp32 weights + autocast (TRL bf16=True)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--check-logps", help="print the reference logps of the first lists (for parity checks) to this file")
    p.add_argument("--label", default="")
    a = p.parse_args()

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    d = dims_from_args(a)

    if a.write_synthetic:
        write_synthetic_jsonl(a.write_synthetic, a.n_lists, a.k, a.prompt_tokens, a.response_tokens, a.seed, a.arith)
        return
    if a.write_ckpt:
        from safetensors.torch import save_file

        torch.manual_seed(a.seed)
        m = MiniMistral(d)
        os.makedirs(a.write_ckpt, exist_ok=True)
        sd = {k: v.contiguous() for k, v in m.state_dict().items()}
        save_file(sd, os.path.join(a.write_ckpt, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(a.write_ckpt, "config.json"), "w") as f:
            json.dump(hf_config_json(d), f, indent=2)
        return

    device = torch.device(a.device)
    if a.data:
        lists = read_lists(a.data, a.k)
    else:
        tmp = "/tmp/_synthetic_lists.jsonl"
        write_synthetic_jsonl(tmp, a.n_lists, a.k, a.prompt_tokens, a.response_tokens, a.seed)
        lists = read_lists(tmp, a.k)
    model, impl = build_model(a, d, device)
    if a.mode == "shared" and a.trl_fused:
        sys.exit("--trl-fused applies to --mode trl")
    n_params = sum(p.numel() for p in model.parameters())
    if a.mode == "sample":
        return sample_bench(a, model, impl, lists, device, n_params)

    amp = torch.autocast(device.type, dtype=torch.bfloat16) if a.amp == "bf16" else None

    def logps(batch):
        if a.mode == "trl":
            return logps_trl(model, impl, batch, a.k, device, a.trl_fused)
        return logps_shared(model, impl, batch, a.k, device)

    def with_amp(fn):
        if amp is None:
            return fn()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return fn()

    # Precomputed reference log-probs (TRL precompute_ref_log_probs; lpo caches them too): not timed.
    ref = torch.empty(len(lists), a.k)
    with torch.no_grad():
        for s in range(0, len(lists), 32):
            chunk = lists[s : s + 32]
            ref[s : s + len(chunk)] = with_amp(lambda: logps(chunk)).float().cpu()
    if a.check_logps:
        with open(a.check_logps, "w") as f:
            json.dump(ref.tolist(), f)
    ref = ref.to(device)

    try:
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0, fused=True)
        opt_kind = "fused"
    except Exception:
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
        opt_kind = "default"
    params = [p for p in model.parameters() if p.requires_grad]
    rng = random.Random(a.seed)
    times, cpu_times, losses, tokens = [], [], [], []
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for step in range(a.warmup + a.steps):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        idx = rng.sample(range(len(lists)), a.batch)
        batch = [lists[i] for i in idx]
        pol = with_amp(lambda: logps(batch)).float()
        bw = [best_worst(lists[i][2]) for i in idx]
        bi = torch.tensor([x[0] for x in bw], device=device)
        wi = torch.tensor([x[1] for x in bw], device=device)
        ix = torch.tensor(idx, device=device)
        ar = torch.arange(a.batch, device=device)
        rb = ref[ix]
        chosen = pol[ar, bi] - rb[ar, bi]
        rejected = pol[ar, wi] - rb[ar, wi]
        loss = -F.logsigmoid(a.beta * (chosen - rejected)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        value = loss.item()
        sync()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        if step >= a.warmup:
            times.append(dt)
            cpu_times.append(cpu)
            losses.append(value)
            # pair tokens: every (prompt, response) sequence, the unit both sides process
            tokens.append(sum(len(lists[i][0]) * a.k + sum(len(r) for r in lists[i][1]) for i in idx))
    med = statistics.median(times)
    out = {
        "label": a.label,
        "impl": impl,
        "attn": a.attn if impl == "hf" else "sdpa",
        "mode": a.mode + ("-fused" if a.trl_fused else ""),
        "dims": d,
        "params": n_params,
        "device": str(device),
        "amp": a.amp,
        "threads": torch.get_num_threads(),
        "optimizer": opt_kind,
        "steps": len(times),
        "median_s": med,
        "median_cpu_s": statistics.median(cpu_times),
        "min_s": min(times),
        "max_s": max(times),
        "pair_tokens_per_step": statistics.mean(tokens),
        "pair_tokens_per_s": statistics.mean(tokens) / med,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "times": [round(t, 5) for t in times],
    }
    print("TORCHSTEP " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
