#!/usr/bin/env python3
"""Builds the parity fixtures of tests/fixtures/parity/: tiny random-weight
decoders of each family lpo runs, saved by transformers (config.json +
model.safetensors), with the per-token log-probabilities transformers
computes for a few fixed, right-padded token sequences in float32.

Run by hand (CI has no Python):

    /work/venv/bin/python scripts/make_parity_fixtures.py            # every family
    /work/venv/bin/python scripts/make_parity_fixtures.py qwen3      # only these

needs torch and transformers 5.x. With family names it rewrites only those
directories (each family's weights are seeded by its place in FAMILIES, so
one family's fixture is the same whether or not the others are rebuilt);
with none it rebuilds tests/fixtures/parity/ whole.
crates/lpo-model/tests/parity.rs compares lpo's log-probabilities with the
stored ones to 1e-4.

Families: mistral, llama3, llama_tied, qwen2, llama_linear, llama_yarn,
mixtral and qwen3 (Qwen3ForCausalLM: per-head RMSNorm `q_norm` / `k_norm` on the
queries and keys before the rotary, no attention biases, and an explicit
head_dim = 24 that is not hidden_size / num_attention_heads = 16, so a
reader that derives head_dim instead of reading it gets wrong shapes; tied
embeddings, as Qwen3's small checkpoints (0.6B to 4B) have).
mixtral: MixtralForCausalLM with 4 experts, top-2 routing; its
expected.json adds the router's load-balancing loss (transformers'
`aux_loss` with output_router_logits) of the sequences, and `shared`: two
prompts with two responses each, their response log-prob sums and the
router loss of the four full sequences. save_pretrained writes the
per-expert (4.x) names; mixtral_fused/ holds the same weights in the fused
5.x layout (`mlp.experts.gate_up_proj`, `mlp.experts.down_proj`, the model's
own state_dict), which transformers loads to the same log-probs.

Each fixture directory holds:
  config.json, model.safetensors   as save_pretrained writes them
  expected.json                    {"sequences": [[ids...]], "logps": [[...]],
                                    "logps_unscaled": [[...]] (rotary scaling
                                    dropped: shows the sequences exercise it),
                                    "transformers": version}
  config.4x.json                   (optional) the same config in the
                                    transformers 4.x layout (rope_theta,
                                    rope_scaling), for the parser; checked
                                    here to load to the same rope parameters.
"""

import copy
import json
import pathlib
import shutil
import sys

import safetensors.torch
import torch
import transformers
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "parity"

VOCAB = 96
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

# name -> (config class, extra config, rope parameters)
FAMILIES = {
    "mistral": (
        transformers.MistralConfig,
        dict(max_position_embeddings=128, sliding_window=16),
        {"rope_type": "default", "rope_theta": 10000.0},
    ),
    "llama3": (
        transformers.LlamaConfig,
        dict(max_position_embeddings=128),
        {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    ),
    "llama_tied": (
        transformers.LlamaConfig,
        dict(max_position_embeddings=128, tie_word_embeddings=True),
        {"rope_type": "default", "rope_theta": 10000.0},
    ),
    "qwen2": (
        transformers.Qwen2Config,
        dict(max_position_embeddings=128, tie_word_embeddings=True),
        {"rope_type": "default", "rope_theta": 1000000.0},
    ),
    "llama_linear": (
        transformers.LlamaConfig,
        dict(max_position_embeddings=128),
        {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
    ),
    "llama_yarn": (
        transformers.LlamaConfig,
        dict(max_position_embeddings=128),
        {
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 4.0,
            "original_max_position_embeddings": 32,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
        },
    ),
    "qwen3": (
        transformers.Qwen3Config,
        dict(max_position_embeddings=128, head_dim=24, attention_bias=False, tie_word_embeddings=True),
        {"rope_type": "default", "rope_theta": 1000000.0},
    ),
    "mixtral": (
        transformers.MixtralConfig,
        dict(max_position_embeddings=128, num_local_experts=4, num_experts_per_tok=2, router_aux_loss_coef=0.02),
        {"rope_type": "default", "rope_theta": 1000000.0},
    ),
}


def sequences():
    """Fixed token rows of different lengths (the longest reaches past the
    scaled rotary's original context), drawn from non-special ids."""
    g = torch.Generator().manual_seed(7)
    lengths = [5, 23, 61, 40]
    return [[1] + torch.randint(3, VOCAB, (n - 1,), generator=g).tolist() for n in lengths]


def logps(model, rows):
    """Per-token log p(token t | tokens < t) for t = 1..len-1 of each row, in
    one right-padded batch with an attention mask."""
    ids, mask = padded(rows)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    lp = torch.log_softmax(logits, -1)
    out = []
    for i, r in enumerate(rows):
        out.append([lp[i, t - 1, r[t]].item() for t in range(1, len(r))])
    return out


def shared_rows():
    """Two prompts with two responses each (K = 2), ragged, for the
    shared-prefix path: per-row response log-prob sums and the router's
    load-balancing loss over the four full sequences."""
    g = torch.Generator().manual_seed(11)
    draw = lambda n: torch.randint(3, VOCAB, (n,), generator=g).tolist()
    prompts = [[1] + draw(6), [1] + draw(11)]
    responses = [draw(5), draw(9), draw(3), draw(14)]
    return prompts, responses


def padded(rows):
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def router_loss(model, rows):
    """transformers' load-balancing loss (output_router_logits) of a
    right-padded batch; checks it is what the causal-LM loss adds."""
    ids, mask = padded(rows)
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_router_logits=True, labels=labels)
        plain = model(input_ids=ids, attention_mask=mask, labels=labels)
    added = (out.loss - plain.loss).item()
    assert abs(added - model.config.router_aux_loss_coef * out.aux_loss.item()) < 1e-6
    return out.aux_loss.item()


def mixtral_extras(model, out):
    """The shared-prefix rows and router losses, and the same weights in
    transformers 5.x's fused layout (`mixtral_fused/`)."""
    prompts, responses = shared_rows()
    full = [prompts[i // 2] + r for i, r in enumerate(responses)]
    per_token = logps(model, full)
    sums = [sum(per_token[i][len(prompts[i // 2]) - 1 :]) for i in range(len(full))]
    extra = {
        "router_aux_loss": router_loss(model, sequences()),
        "shared": {
            "prompts": prompts,
            "responses": responses,
            "k": 2,
            "sums": sums,
            "router_aux_loss": router_loss(model, full),
        },
    }
    saved = safetensors.torch.load_file(out / "model.safetensors")
    fused = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert any("block_sparse_moe.experts.0.w1" in k for k in saved), "save_pretrained wrote the 4.x layout"
    assert any(k.endswith("mlp.experts.gate_up_proj") for k in fused), "the model holds fused experts"
    fused_dir = ROOT / "mixtral_fused"
    if fused_dir.exists():
        shutil.rmtree(fused_dir)
    fused_dir.mkdir()
    shutil.copy(out / "config.json", fused_dir / "config.json")
    safetensors.torch.save_file(fused, fused_dir / "model.safetensors", metadata={"format": "pt"})
    reloaded = AutoModelForCausalLM.from_pretrained(fused_dir, dtype=torch.float32).eval()
    assert logps(reloaded, sequences()) == logps(model, sequences())
    return extra


def randomize(model, seed):
    """Weights large enough that log-probabilities differ visibly between
    positions (the 0.02 init gives nearly uniform outputs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def legacy_layout(config_json):
    """The transformers 4.x form of a 5.x config.json: rope_theta at the top,
    the scaling (if any) under rope_scaling with the old `type` key."""
    c = copy.deepcopy(config_json)
    rope = c.pop("rope_parameters")
    c["rope_theta"] = rope.pop("rope_theta")
    kind = rope.pop("rope_type")
    c["rope_scaling"] = None if kind == "default" else {"type": kind, **rope}
    return c


def main():
    only = sys.argv[1:]
    unknown = [n for n in only if n not in FAMILIES]
    if unknown:
        sys.exit(f"unknown famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    torch.manual_seed(0)
    if not only and ROOT.exists():
        shutil.rmtree(ROOT)
    rows = sequences()
    for seed, (name, (cls, extra, rope)) in enumerate(FAMILIES.items()):
        if only and name not in only:
            continue
        if (ROOT / name).exists():
            shutil.rmtree(ROOT / name)
        config = cls(**COMMON, **extra, rope_parameters=dict(rope))
        config.architectures = [cls.__name__.replace("Config", "ForCausalLM")]
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        randomize(model, seed)
        out = ROOT / name
        model.save_pretrained(out, safe_serialization=True)
        expected = {"transformers": transformers.__version__, "sequences": rows, "logps": logps(model, rows)}
        if name == "mixtral":
            expected.update(mixtral_extras(model, out))
        if rope["rope_type"] != "default":
            plain = cls(**COMMON, **extra, rope_parameters={"rope_type": "default", "rope_theta": rope["rope_theta"]})
            unscaled = AutoModelForCausalLM.from_config(plain, dtype=torch.float32).eval()
            unscaled.load_state_dict(model.state_dict())
            expected["logps_unscaled"] = logps(unscaled, rows)
        (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
        saved = json.loads((out / "config.json").read_text())
        legacy = legacy_layout(saved)
        (out / "config.4x.json").write_text(json.dumps(legacy, indent=2) + "\n")
        # transformers reads the 4.x layout to the same model.
        old = AutoModelForCausalLM.from_config(type(config).from_dict(legacy), dtype=torch.float32).eval()
        old.load_state_dict(model.state_dict())
        assert logps(old, rows) == expected["logps"], name
        size = sum(f.stat().st_size for f in out.iterdir())
        diff = ""
        if "logps_unscaled" in expected:
            d = max(
                abs(x - y)
                for r1, r2 in zip(expected["logps"], expected["logps_unscaled"])
                for x, y in zip(r1, r2)
            )
            diff = f", scaling changes log-probs by up to {d:.3f}"
        print(f"{name}: {size} bytes{diff}")


if __name__ == "__main__":
    main()
