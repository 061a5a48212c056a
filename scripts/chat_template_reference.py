#!/usr/bin/env python3
"""Writes tests/fixtures/chat/expected.json: how transformers renders and
tokenizes the conversations of tests/fixtures/chat/multiturn.jsonl with the
fixture tokenizer (tokenizer.json + tokenizer_config.json, Zephyr's chat
template). lpo's chat-template tests compare with it; CI needs no Python.

Run by hand (needs transformers): python3 scripts/chat_template_reference.py
"""
import json
import pathlib

from transformers import AutoTokenizer

here = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "chat"
tok = AutoTokenizer.from_pretrained(str(here))
out = []
for line in (here / "multiturn.jsonl").read_text().splitlines():
    record = json.loads(line)
    conversation = record["chosen"][:-1]  # everything before the response
    text = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    response = record["chosen"][-1]["content"]
    response_ids = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    out.append({"prompt_text": text, "prompt_ids": ids, "chosen_ids": response_ids})
(here / "expected.json").write_text(json.dumps(out, indent=1) + "\n")
print(f"wrote {len(out)} records to {here / 'expected.json'}")
