#!/usr/bin/env python3
"""Checks that PEFT loads a LoRA run's adapters as lpo means them.

    python scripts/check_peft.py RUN_DIR MERGED_DIR

RUN_DIR is a finished LoRA run (its checkpoint/ holds adapter_model.safetensors
and adapter_config.json); MERGED_DIR is `lpo export RUN_DIR --out MERGED_DIR`.
Loads the base with transformers, applies the adapters with
peft.PeftModel.from_pretrained, and compares its logits on random token
sequences with the merged checkpoint's (and with the base's, which must
differ). Run by hand in a virtualenv with torch, transformers and peft.
"""
import json
import pathlib
import sys

import peft
import torch
import transformers

run, merged_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
adapters = run / "checkpoint"
base_dir = json.loads((adapters / "adapter_config.json").read_text())["base_model_name_or_path"]
base = transformers.AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
vocab = base.config.vocab_size
torch.manual_seed(0)
tokens = torch.randint(4, vocab, (3, 12))
with torch.no_grad():
    base_logits = base(tokens).logits
    adapted = peft.PeftModel.from_pretrained(base, str(adapters))
    peft_logits = adapted(tokens).logits
    merged = transformers.AutoModelForCausalLM.from_pretrained(str(merged_dir), torch_dtype=torch.float32)
    merged_logits = merged(tokens).logits
diff = (peft_logits - merged_logits).abs().max().item()
moved = (peft_logits - base_logits).abs().max().item()
print(f"peft {peft.__version__}: max |PEFT(base + adapters) - lpo merged| = {diff:.2e}; adapters move logits by up to {moved:.2e}")
assert moved > 1e-4, "the adapters changed nothing"
assert diff < 1e-4, "PEFT and lpo disagree"
print("ok")
