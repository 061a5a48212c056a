#!/usr/bin/env python3
"""Checks that a checkpoint lpo wrote works in transformers unchanged.

Run by hand (CI has no Python), on a complete run of lpo:

    /work/venv/bin/python scripts/check_generate.py results/<recipe>/<run id>

It loads <run>/checkpoint with AutoModelForCausalLM and AutoTokenizer only
(nothing lpo-specific), then checks:

1. the tokenizer's bos/eos/pad ids equal config.json's and
   generation_config.json's;
2. log-probabilities: for the run's held-out lists (the lists file named by
   summary.json, lines with "heldout": true, in heldout.csv's order) it
   scores every response as lpo does ([bos] + prompt, response + [eos]) and
   compares heldout.csv's chosen_logp / rejected_logp (the final policy's,
   of the best / worst rewarded response) with transformers' numbers;
3. generate(): greedy decoding of held-out prompts stops at the end token
   (the output ends with eos, or pads after it) instead of running to
   max_new_tokens; with `eval.decoding = "greedy"` and `eval.samples = 1`
   in the run's recipe it also compares the text with eval.csv's
   policy_response (lpo's own greedy decoding).

Exits 1 when a check fails.
"""

import argparse
import csv
import json
import pathlib
import sys
import tomllib

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

TOLERANCE = 1e-3  # nats per sequence; lpo on CPU computes in float32 too


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=pathlib.Path, help="results/<recipe>/<run id>")
    ap.add_argument("--lists", type=int, default=200, help="held-out lists to score")
    ap.add_argument("--prompts", type=int, default=24, help="prompts to generate for")
    args = ap.parse_args()
    run = args.run
    ckpt = run / "checkpoint"
    cache = run.parent.parent / "_cache"
    failures = []

    tok = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    config = json.loads((ckpt / "config.json").read_text())
    gen = json.loads((ckpt / "generation_config.json").read_text())
    ids = {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id}
    print(f"loaded {type(model).__name__} and {type(tok).__name__}: {ids}")
    for name, value in ids.items():
        for where, c in (("config.json", config), ("generation_config.json", gen)):
            if c.get(f"{name}_token_id") != value:
                failures.append(f"{name}: tokenizer {value}, {where} {c.get(f'{name}_token_id')}")
    max_len = config["max_position_embeddings"]

    # 2. Log-probabilities of the held-out lists.
    summary = json.loads((run / "summary.json").read_text())
    lists = [json.loads(line) for line in (cache / f"lists-{summary['lists']}.jsonl").open()]
    heldout = [l for l in lists if l.get("heldout")]
    with (run / "heldout.csv").open() as f:
        rows = list(csv.DictReader(f))
    if len(rows) != len(heldout):
        failures.append(f"heldout.csv has {len(rows)} rows, the lists file {len(heldout)} held-out lists")
    worst, scored = 0.0, 0
    for row, lst in list(zip(rows, heldout))[: args.lists]:
        prompt = tok(lst["prompt"]).input_ids  # <bos> + prompt, as lpo
        seqs = []
        for r in lst["responses"]:
            resp = tok(r["text"], add_special_tokens=False).input_ids + [tok.eos_token_id]
            seqs.append((prompt, resp, r["reward"]))
        if any(len(p) + len(r) > max_len for p, r, _ in seqs) or not seqs:
            continue  # lpo truncates these; not compared
        logps = [sequence_logp(model, p, r) for p, r, _ in seqs]
        rewards = [reward for _, _, reward in seqs]
        for column, pick in (("chosen_logp", max), ("rejected_logp", min)):
            target = pick(rewards)
            candidates = [lp for lp, rw in zip(logps, rewards) if rw == target]
            diff = min(abs(float(row[column]) - lp) for lp in candidates)
            worst = max(worst, diff)
        scored += 1
    print(f"log-probs: {scored} held-out lists, largest |lpo - transformers| = {worst:.2e} nats")
    if scored == 0 or worst > TOLERANCE:
        failures.append(f"log-probs differ by {worst} (tolerance {TOLERANCE}) over {scored} lists")

    # 3. generate() stops at the end token.
    recipe = tomllib.loads((run / "config.toml").read_text())
    greedy_lpo = recipe["eval"]["decoding"] == "greedy" and recipe["eval"]["samples"] == 1
    with (run / "eval.csv").open() as f:
        evals = list(csv.DictReader(f))[: args.prompts]
    new_tokens = recipe["eval"]["max_new_tokens"]
    stopped, same = 0, 0
    for e in evals:
        enc = tok(e["prompt"], return_tensors="pt")
        room = min(new_tokens, max_len - enc.input_ids.shape[1])
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=room, do_sample=False)
        new = out[0, enc.input_ids.shape[1]:].tolist()
        ended = tok.eos_token_id in new
        if ended:
            stopped += 1
            if new.index(tok.eos_token_id) != len(new) - 1:
                failures.append(f"generate() went on after eos for {e['prompt']!r}: {new}")
        text = tok.decode(new, skip_special_tokens=True)
        # lpo stops at eos or max_new_tokens; both decodings are greedy.
        if greedy_lpo:
            if text == e["policy_response"]:
                same += 1
            else:
                failures.append(f"greedy text differs for {e['prompt']!r}: transformers {text!r}, lpo {e['policy_response']!r}")
    print(f"generate(): {stopped} of {len(evals)} greedy generations ended at eos")
    if evals and stopped == 0:
        failures.append("no generation ended at eos")
    if greedy_lpo:
        print(f"greedy text equal to lpo's eval.csv for {same} of {len(evals)} prompts")

    for f in failures:
        print("FAIL:", f)
    print("ok" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


def sequence_logp(model, prompt, response):
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits.float(), -1)[0]
    start = len(prompt)
    return sum(lp[start + i - 1, t].item() for i, t in enumerate(response))


if __name__ == "__main__":
    sys.exit(main())
