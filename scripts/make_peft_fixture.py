#!/usr/bin/env python3
"""Writes tests/fixtures/peft/nano_q_v_r4.json: the tensor names and shapes,
and the adapter_config.json, that peft saves for LoRA (r=4, alpha=8, targets
q_proj and v_proj) on lpo's nano Mistral (2 layers x 64, 4/2 heads, d_ff 176,
vocabulary 64). lpo's `save_peft` is checked against it
(crates/lpo-model/src/lora.rs, `peft_files_name_every_adapter_as_peft_does`).

Run by hand once, in a virtualenv with torch, transformers and peft:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch transformers peft
    /tmp/venv/bin/python scripts/make_peft_fixture.py
"""
import json
import pathlib
import tempfile

import peft
import torch
import transformers
from safetensors import safe_open

root = pathlib.Path(__file__).resolve().parent.parent
out = root / "tests" / "fixtures" / "peft" / "nano_q_v_r4.json"

config = transformers.MistralConfig(
    vocab_size=64,
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
    sliding_window=None,
)
torch.manual_seed(0)
model = transformers.MistralForCausalLM(config)
lora = peft.LoraConfig(
    r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
)
adapted = peft.get_peft_model(model, lora)
with tempfile.TemporaryDirectory() as tmp:
    adapted.save_pretrained(tmp)
    with safe_open(f"{tmp}/adapter_model.safetensors", "pt") as f:
        tensors = {k: list(f.get_tensor(k).shape) for k in sorted(f.keys())}
    saved_config = json.loads(pathlib.Path(f"{tmp}/adapter_config.json").read_text())
keep = ["peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules", "bias"]
saved_config["target_modules"] = sorted(saved_config["target_modules"])
fixture = {
    "generated_by": f"scripts/make_peft_fixture.py with peft {peft.__version__}, transformers {transformers.__version__}, torch {torch.__version__}",
    "tensors": tensors,
    "config": {k: saved_config[k] for k in keep},
}
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(fixture, indent=2) + "\n")
print(f"wrote {out}: {len(tensors)} tensors")
