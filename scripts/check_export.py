#!/usr/bin/env python3
"""Checks that a Hugging Face checkpoint directory works in plain
transformers: the tokenizer and model load with the Auto classes, the chat
template renders a conversation, and generate() runs on it.

Run by hand (CI has no Python), in the venv of scripts/make_hf_fixtures.py
(torch, transformers 5.x, and peft for adapters):

    /work/venv/bin/python scripts/check_export.py DIR
    /work/venv/bin/python scripts/check_export.py --adapter ADAPTER_DIR --base BASE_DIR

DIR (e.g. the output of `lpo export RUN --out DIR`, or
tests/fixtures/hf/qwen2-chatml) is loaded with AutoTokenizer.from_pretrained
and AutoModelForCausalLM.from_pretrained. With --adapter and --base, the
model is AutoModelForCausalLM.from_pretrained(BASE) with
peft.PeftModel.from_pretrained(model, ADAPTER) on top, and the tokenizer
comes from ADAPTER when it holds one (tokenizer.json or
tokenizer_config.json), else from BASE. Then it renders one conversation
with apply_chat_template(..., add_generation_prompt=True) (the default
template; --template NAME picks a named one), runs greedy
generate(max_new_tokens=8) and prints the prompt and the continuation.

Writes nothing. Exits 0 when every step worked, 1 with a message naming the
step that failed (2 for bad arguments).
"""

import argparse
import json
import pathlib
import sys
import traceback

CONVERSATION = [
    {"role": "system", "content": "You are a careful calculator."},
    {"role": "user", "content": "What is 12 + 7?"},
]


class Failure(Exception):
    pass


def step(what, fn):
    """fn(), or a Failure that says which step failed and why."""
    try:
        return fn()
    except Failure:
        raise
    except Exception as e:  # noqa: BLE001 - every failure becomes a message
        detail = "".join(traceback.format_exception_only(type(e), e)).strip()
        raise Failure(f"{what}: {detail}") from e


def has_tokenizer(directory):
    return any((directory / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))


def check(args):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    if args.adapter:
        import peft

        adapter, base = pathlib.Path(args.adapter), pathlib.Path(args.base)
        for d in (adapter, base):
            if not d.is_dir():
                raise Failure(f"{d} is not a directory")
        if not (adapter / "adapter_config.json").is_file():
            raise Failure(f"{adapter} has no adapter_config.json: not a PEFT adapter directory")
        tok_dir = adapter if has_tokenizer(adapter) else base
        if not has_tokenizer(tok_dir):
            raise Failure(f"neither {adapter} nor {base} has tokenizer files (tokenizer.json, tokenizer_config.json)")
        named = step(
            f"reading {adapter / 'adapter_config.json'}",
            lambda: json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path"),
        )
        if named and pathlib.Path(named).resolve() != base.resolve():
            print(f"note: adapter_config.json names base {named!r}, checking against {str(base)!r}")
        print(f"peft {peft.__version__}; base {base}, adapter {adapter}, tokenizer from {tok_dir}")
        tok = step(f"AutoTokenizer.from_pretrained({str(tok_dir)!r})", lambda: AutoTokenizer.from_pretrained(tok_dir))
        model = step(
            f"AutoModelForCausalLM.from_pretrained({str(base)!r})",
            lambda: AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
        )
        model = step(
            f"PeftModel.from_pretrained(base, {str(adapter)!r})",
            lambda: peft.PeftModel.from_pretrained(model, str(adapter)),
        )
        # PEFT only warns about adapter tensors it found no module for.
        weights = adapter / "adapter_model.safetensors"
        if weights.is_file():
            from safetensors import safe_open

            with safe_open(str(weights), "pt") as f:
                saved = list(f.keys())
            loaded = {k.replace(".default", "") for k in model.state_dict()}
            unused = [k for k in saved if k not in loaded]
            if unused:
                raise Failure(f"{len(unused)} of {len(saved)} adapter tensors match no module of the base, e.g. {unused[0]}")
            print(f"adapter: {len(saved)} tensors, all applied")
    else:
        directory = pathlib.Path(args.dir)
        if not directory.is_dir():
            raise Failure(f"{directory} is not a directory")
        # Without tokenizer files transformers 5.x still builds an empty
        # tokenizer of the config's model type: refuse that here.
        if not has_tokenizer(directory):
            raise Failure(f"{directory} has no tokenizer files (tokenizer.json, tokenizer_config.json)")
        tok = step(f"AutoTokenizer.from_pretrained({str(directory)!r})", lambda: AutoTokenizer.from_pretrained(directory))
        model = step(
            f"AutoModelForCausalLM.from_pretrained({str(directory)!r})",
            lambda: AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32),
        )
    model.eval()
    print(f"model {type(model).__name__}, tokenizer {type(tok).__name__} ({len(tok)} tokens)")

    config = model.config
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and len(tok) > vocab:
        raise Failure(f"the tokenizer has {len(tok)} tokens but config.json's vocab_size is {vocab}")
    if tok.chat_template is None:
        raise Failure("the tokenizer has no chat template (no chat_template.jinja, nor chat_template in tokenizer_config.json)")
    if isinstance(tok.chat_template, dict):
        print(f"named chat templates: {sorted(tok.chat_template)}")
    if args.template and not (isinstance(tok.chat_template, dict) and args.template in tok.chat_template):
        raise Failure(f"no chat template named {args.template!r}")

    kwargs = {"chat_template": args.template} if args.template else {}
    text = step(
        "apply_chat_template(tokenize=False, add_generation_prompt=True)",
        lambda: tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True, **kwargs),
    )
    encoded = step(
        "apply_chat_template(tokenize=True, add_generation_prompt=True)",
        lambda: tok.apply_chat_template(
            CONVERSATION, tokenize=True, add_generation_prompt=True, return_dict=True, return_tensors="pt", **kwargs
        ),
    )
    ids = encoded["input_ids"]
    if ids.shape[1] == 0:
        raise Failure("the chat template rendered an empty prompt")
    print(f"prompt ({ids.shape[1]} tokens): {text!r}")

    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out = step(
        "generate(max_new_tokens=8)",
        lambda: model.generate(
            input_ids=ids,
            attention_mask=encoded.get("attention_mask", torch.ones_like(ids)),
            max_new_tokens=8,
            do_sample=False,
            pad_token_id=pad,
        ),
    )
    if out.shape[1] <= ids.shape[1] or not torch.equal(out[0, : ids.shape[1]], ids[0]):
        raise Failure(f"generate() returned {out.shape[1]} tokens that do not extend the {ids.shape[1]}-token prompt")
    new = out[0, ids.shape[1] :].tolist()
    print(f"generated {len(new)} tokens: {new} = {tok.decode(new, skip_special_tokens=False)!r}")
    print("ok")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", help="a checkpoint directory (config.json, weights, tokenizer files)")
    parser.add_argument("--adapter", help="a PEFT adapter directory (adapter_config.json, adapter_model.safetensors)")
    parser.add_argument("--base", help="the base checkpoint directory the adapter applies to")
    parser.add_argument("--template", help="the name of a named chat template to render with")
    args = parser.parse_args()
    if bool(args.adapter) != bool(args.base):
        parser.error("--adapter and --base go together")
    if args.adapter and args.dir:
        parser.error("give either DIR or --adapter with --base, not both")
    if not args.adapter and not args.dir:
        parser.error("give a checkpoint DIR, or --adapter DIR --base DIR")
    try:
        check(args)
    except Failure as e:
        print(f"check_export: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    except ImportError as e:
        print(f"check_export: FAILED: {e} (run it in a venv with torch, transformers 5.x and peft)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
