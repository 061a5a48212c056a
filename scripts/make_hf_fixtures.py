#!/usr/bin/env python3
"""Builds tests/fixtures/hf/: two tiny Hugging Face checkpoints with their
tokenizers and chat templates exactly as transformers 5.x saves them, a
preference data set in the Hub's parquet layout, and what transformers
renders and tokenizes for a few of its records.

Run by hand (CI has no Python; the Rust tests read the committed files):

    /work/venv/bin/python scripts/make_hf_fixtures.py

needs torch, transformers 5.x, tokenizers and pyarrow (the venv of
scripts/make_parity_fixtures.py). Every random choice is seeded, so running
it again with the same library versions rewrites the same bytes. It
replaces tests/fixtures/hf/ whole:

  pairs/                 the data set, Hub layout:
    data/train-00000-of-00001.parquet   48 records (snappy, written by pyarrow)
    data/test-00000-of-00001.parquet    16 records, questions not in train
    README.md                           how it was made
  qwen2-chatml/          Qwen2ForCausalLM (hidden 32, 2 layers, 2 heads, 1 kv
                         head, untied head), random float32 weights, a
                         byte-level BPE trained on the data set's texts with
                         Qwen2's pre-tokenizer and special tokens
                         (<|endoftext|> pad, <|im_end|> eos, no bos) and the
                         Qwen2-Instruct chat template (default system message
                         when the conversation has none). Written by
                         save_pretrained: config.json, generation_config.json,
                         model.safetensors, tokenizer.json,
                         tokenizer_config.json, chat_template.jinja.
  llama-tied-named/      LlamaForCausalLM with tie_word_embeddings, a
                         SentencePiece-style BPE (Metaspace, byte fallback,
                         <unk> <s> </s> = 0 1 2, <s> prepended) and two named
                         chat templates: `default` (Llama-2-chat's) is saved as
                         chat_template.jinja, `tool_use` as
                         additional_chat_templates/tool_use.jinja.
  mixtral-chatml/        MixtralForCausalLM (hidden 32, 2 layers, 4 experts,
                         top-2 routing, untied head) with qwen2-chatml's
                         tokenizer and template: the sparse model of
                         tests/cli_own_model.rs's LoRA run.
  expected.json          per checkpoint, for train records 0 and 1 and test
                         record 0: the prompt messages, the text and ids of
                         apply_chat_template(prompt, add_generation_prompt=True),
                         the chosen response's ids (add_special_tokens=False)
                         and transformers' log-probabilities of those ids
                         followed by eos after the prompt; for
                         llama-tied-named also the `tool_use` template's
                         rendering of train record 0 with a tool list.

What transformers 5.x writes (checked by this script's asserts where it
matters to a reader of the files):
  - a single chat template goes to chat_template.jinja and named ones to
    chat_template.jinja (`default`) plus additional_chat_templates/<name>.jinja;
    tokenizer_config.json then has no `chat_template` key;
  - tokenizer_config.json holds only backend, tokenizer_class
    ("TokenizersBackend" for a PreTrainedTokenizerFast), the special tokens
    by content, model_max_length and clean_up_tokenization_spaces: no
    added_tokens_decoder and no add_bos_token (the <s> that llama-tied-named
    prepends lives only in tokenizer.json's TemplateProcessing); no
    special_tokens_map.json;
  - AutoTokenizer loads model_type qwen2 as Qwen2Tokenizer, which rebuilds
    the normalizer and pre-tokenizer itself and takes only the vocabulary,
    merges and added tokens from tokenizer.json: check_tokenizer_json
    asserts that tokenizer.json alone still encodes every text the same.

scripts/check_export.py loads both checkpoints with AutoTokenizer and
AutoModelForCausalLM and generates from them.
"""

import json
import pathlib
import random
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import tokenizers
import torch
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hf"

# The chat template of Qwen2-Instruct (Qwen/Qwen2-*-Instruct tokenizer_config.json).
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# The chat template of Llama-2-chat (meta-llama/Llama-2-*-chat-hf): bos_token
# in the text, Python's str.strip(), raise_exception; no generation prompt.
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

# A tool-use template in the style of Mistral's: the tool list as JSON
# (transformers' tojson is json.dumps: ", " and ": " separators), the system
# message before the last user turn, a generation prompt.
TOOL_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}"
    "{% set loop_messages = messages[1:] %}{% else %}{% set system_message = none %}"
    "{% set loop_messages = messages %}{% endif %}"
    "{% if tools is defined and tools %}[AVAILABLE_TOOLS] {{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}"
    "{% for message in loop_messages %}{% if message['role'] == 'user' %}"
    "{% if loop.last and system_message is not none %}"
    "{{ '[INST] ' + system_message | trim + '\\n\\n' + message['content'] | trim + ' [/INST]' }}"
    "{% else %}{{ '[INST] ' + message['content'] | trim + ' [/INST]' }}{% endif %}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] | trim + eos_token }}"
    "{% elif message['role'] == 'tool' %}{{ '[TOOL_RESULTS] ' + message['content'] + '[/TOOL_RESULTS]' }}"
    "{% else %}{{ raise_exception('Unknown role: ' + message['role']) }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ ' ' }}{% endif %}"
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Adds two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
]

SYSTEMS = ["You are a careful calculator.", "Answer with one equation.", "You are a helpful math tutor."]
QUESTIONS = ["What is {a} + {b}?", "Compute {a} + {b}.", "How much is {a} + {b}?"]
N_TRAIN, N_TEST = 48, 16


# ---------------------------------------------------------------- data set


def records():
    """Train and test records in TRL's conversational preference form; no
    (a, b) question is in both splits. Every third record (0, 3, ...) of a
    split opens with a system message."""
    rng = random.Random(20240611)
    pairs = set()
    while len(pairs) < N_TRAIN + N_TEST:
        pairs.add((rng.randint(1, 49), rng.randint(1, 49)))
    pairs = sorted(pairs)
    rng.shuffle(pairs)
    splits = {"train": pairs[:N_TRAIN], "test": pairs[N_TRAIN:]}
    out = {}
    for split, chosen_pairs in splits.items():
        rows = []
        for i, (a, b) in enumerate(chosen_pairs):
            prompt = []
            if i % 3 == 0:
                prompt.append({"role": "system", "content": SYSTEMS[(i // 3) % len(SYSTEMS)]})
            prompt.append({"role": "user", "content": rng.choice(QUESTIONS).format(a=a, b=b)})
            wrong = a + b + rng.choice([-3, -2, -1, 1, 2, 3, 10])
            rows.append(
                {
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": f"{a} + {b} = {a + b}."}],
                    "rejected": [{"role": "assistant", "content": f"{a} + {b} = {wrong}."}],
                }
            )
        out[split] = rows
    return out


MESSAGES = pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))
SCHEMA = pa.schema([("prompt", MESSAGES), ("chosen", MESSAGES), ("rejected", MESSAGES)])
# What `datasets` stores in the schema metadata of the parquet files it
# writes (its Features, datasets 4.x spelling), so load_dataset reads the
# columns with these types.
_MSG = {"feature": {"content": {"dtype": "string", "_type": "Value"}, "role": {"dtype": "string", "_type": "Value"}}, "_type": "List"}
HF_METADATA = {"info": {"features": {"prompt": _MSG, "chosen": _MSG, "rejected": _MSG}}}

DATASET_README = """\
---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  - split: test
    path: data/test-*
---

# pairs: a tiny preference data set in the Hugging Face Hub layout

Written by `scripts/make_hf_fixtures.py` (run by hand; CI does not run it)
with pyarrow {pyarrow}, snappy compression, one row group per file:

- `data/train-00000-of-00001.parquet`: {n_train} records
- `data/test-00000-of-00001.parquet`: {n_test} records, none of whose
  questions (a, b) is in train

Each record is in TRL's conversational preference format:

- `prompt`: list of messages `{{"content": str, "role": str}}`: a user
  question, preceded by a system message in every third record
  (records 0, 3, 6, ... of each split)
- `chosen`: one assistant message with the right sum, `"12 + 7 = 19."`
- `rejected`: one assistant message with a wrong sum

The questions ("What is a + b?", "Compute a + b.", "How much is a + b?",
1 <= a, b <= 49) and wrong sums are drawn from a seeded `random.Random`,
so the script writes the same records every time. The files carry the
`huggingface` schema metadata `datasets` writes (its Features), and this
card's YAML header names the splits as `push_to_hub` does, so
`datasets.load_dataset("path/to/pairs")` reads both splits.
"""


def write_dataset(data):
    out = ROOT / "pairs"
    (out / "data").mkdir(parents=True)
    for split, rows in data.items():
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        table = table.replace_schema_metadata({"huggingface": json.dumps(HF_METADATA)})
        pq.write_table(table, out / "data" / f"{split}-00000-of-00001.parquet", compression="snappy")
    (out / "README.md").write_text(
        DATASET_README.format(pyarrow=pa.__version__, n_train=len(data["train"]), n_test=len(data["test"]))
    )


def texts(data):
    """Every text of the data set, the tokenizers' training corpus."""
    out = []
    for rows in data.values():
        for r in rows:
            for key in ("prompt", "chosen", "rejected"):
                out.extend(m["content"] for m in r[key])
    return out


# ---------------------------------------------------------------- tokenizers

# Qwen2's pre-tokenizer split (transformers' models/qwen2/tokenization_qwen2.py).
QWEN2_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def qwen2_tokenizer(corpus):
    """A byte-level BPE laid out as Qwen2's tokenizer.json is: NFC, the
    regex split then ByteLevel without its own regex, all 256 byte symbols,
    the special tokens after the learned vocabulary."""
    tok = Tokenizer(
        models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, byte_fallback=False)
    )
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=340,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    # The template's own words too, so a rendered prompt is not all bytes.
    tok.train_from_iterator(corpus + ["You are a helpful assistant.", "system", "user", "assistant"] * 4, trainer)
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        chat_template=QWEN2_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=256,
    )


def llama_tokenizer(corpus):
    """A SentencePiece-style BPE as transformers 5.x builds Llama's
    (models/llama/tokenization_llama.py): no normalizer, Metaspace with the
    prefix on the first piece only and no splitting, byte fallback to
    <0x00>..<0xFF> (ids 3..258), <unk> <s> </s> = 0 1 2, <s> prepended."""
    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=170, min_frequency=2, show_progress=False, special_tokens=specials)
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    # The templates' markers and the tool list too, so the tool_use
    # rendering stays within max_position_embeddings.
    extra = ["[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", json.dumps(TOOLS)]
    tok.train_from_iterator(corpus + extra * 4, trainer)
    trained = json.loads(tok.to_str())
    # The byte symbols are vocabulary entries, not added tokens, as in
    # Llama's tokenizer.json: only <unk> <s> </s> are added tokens.
    learned = sorted(trained["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {t: i for i, t in enumerate(specials)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for t, _ in learned:
        if t not in vocab:
            vocab[t] = len(vocab)
    model = models.BPE(
        vocab=vocab,
        merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["model"]["merges"]],
        unk_token="<unk>",
        fuse_unk=True,
        byte_fallback=True,
        dropout=None,
    )
    tok = Tokenizer(model)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        add_bos_token=True,
        add_eos_token=False,
        chat_template={"default": LLAMA2_TEMPLATE, "tool_use": TOOL_TEMPLATE},
        clean_up_tokenization_spaces=False,
        model_max_length=256,
    )


# ---------------------------------------------------------------- models


def randomize(model, seed):
    """Weights large enough that the outputs are far from uniform (the 0.02
    init makes every next token almost equally likely), as in
    scripts/make_parity_fixtures.py."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def qwen2_model(tok):
    endoftext = tok.convert_tokens_to_ids("<|endoftext|>")
    # As Qwen2-Instruct's config.json: bos_token_id is <|endoftext|> although
    # the tokenizer adds no bos; eos is <|im_end|>; no pad_token_id.
    config = transformers.Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=False,
        bos_token_id=endoftext,
        eos_token_id=tok.eos_token_id,
    )
    config.architectures = ["Qwen2ForCausalLM"]
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    randomize(model, 1)
    # As Qwen2-Instruct's generation_config.json: stop at either end token.
    g = model.generation_config
    g.bos_token_id = endoftext
    g.pad_token_id = endoftext
    g.eos_token_id = [tok.eos_token_id, endoftext]
    return model


def llama_model(tok):
    config = transformers.LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    config.architectures = ["LlamaForCausalLM"]
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    randomize(model, 2)
    return model


def mixtral_model(tok):
    """Qwen2's tokenizer and template on a Mixtral decoder (4 experts, top 2):
    the sparse model a LoRA run trains in tests/cli_own_model.rs."""
    config = transformers.MixtralConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
    )
    config.architectures = ["MixtralForCausalLM"]
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    randomize(model, 3)
    return model


# ---------------------------------------------------------------- expected


def response_logps(model, prompt_ids, response_ids):
    """log p(response token | everything before it), prompt and response in
    one sequence."""
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits.float(), -1)[0]
    n = len(prompt_ids)
    return [lp[n + i - 1, t].item() for i, t in enumerate(response_ids)]


def chat_ids(tok, messages, **kwargs):
    """apply_chat_template(tokenize=True) as a plain list of ints (5.x
    returns a BatchEncoding unless return_dict=False)."""
    out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, **kwargs)
    ids = out["input_ids"] if hasattr(out, "keys") else out
    assert all(isinstance(i, int) for i in ids), type(ids)
    return list(ids)


def check_tokenizer_json(directory, tok, data):
    """tokenizer.json alone (what a reader without transformers uses)
    encodes every rendered prompt and every response as AutoTokenizer does.
    For model_type qwen2, transformers 5.x loads Qwen2Tokenizer, which takes
    only the vocabulary, merges and added tokens from tokenizer.json and
    builds its own normalizer and pre-tokenizer; here they agree."""
    raw = Tokenizer.from_file(str(directory / "tokenizer.json"))
    for rows in data.values():
        for r in rows:
            text = tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
            ids = chat_ids(tok, r["prompt"])
            assert raw.encode(text, add_special_tokens=False).ids == ids, (directory, text)
            assert len(ids) + 16 <= 256, (directory, len(ids))
            for key in ("chosen", "rejected"):
                t = r[key][0]["content"]
                assert raw.encode(t, add_special_tokens=False).ids == tok(t, add_special_tokens=False)["input_ids"]
                assert raw.encode(t).ids == tok(t)["input_ids"], (directory, t)


def expected_for(directory, data):
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    assert model.config.vocab_size == len(tok), directory
    check_tokenizer_json(directory, tok, data)
    picks = [("train", 0), ("train", 1), ("test", 0)]
    rows = []
    for split, index in picks:
        r = data[split][index]
        text = tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        ids = chat_ids(tok, r["prompt"])
        assert ids == tok(text, add_special_tokens=False)["input_ids"], (directory, split, index)
        chosen = r["chosen"][0]["content"]
        chosen_ids = tok(chosen, add_special_tokens=False)["input_ids"]
        rows.append(
            {
                "split": split,
                "index": index,
                "prompt": r["prompt"],
                "prompt_text": text,
                "prompt_ids": ids,
                "chosen_text": chosen,
                "chosen_ids": chosen_ids,
                "chosen_logps": response_logps(model, ids, chosen_ids + [tok.eos_token_id]),
            }
        )
    plain = "What is 12 + 7?"
    entry = {
        "class": type(model).__name__,
        # What AutoTokenizer built: Qwen2Tokenizer for model_type qwen2
        # whatever tokenizer_config.json's tokenizer_class says.
        "tokenizer_class": type(tok).__name__,
        "vocab_size": model.config.vocab_size,
        "len_tokenizer": len(tok),
        "bos_token": tok.bos_token,
        "bos_token_id": tok.bos_token_id,
        "eos_token": tok.eos_token,
        "eos_token_id": tok.eos_token_id,
        "pad_token": tok.pad_token,
        "pad_token_id": tok.pad_token_id,
        # tokenizer(text) with its default add_special_tokens=True: the
        # post-processor's <s> for llama-tied-named, nothing for qwen2-chatml.
        "plain_encode": {"text": plain, "ids": tok(plain)["input_ids"]},
        "records": rows,
    }
    return tok, entry


def main():
    torch.manual_seed(0)
    if ROOT.exists():
        shutil.rmtree(ROOT)
    ROOT.mkdir(parents=True)
    data = records()
    write_dataset(data)
    corpus = texts(data)

    for name, make_tok, make_model in [
        ("qwen2-chatml", qwen2_tokenizer, qwen2_model),
        ("llama-tied-named", llama_tokenizer, llama_model),
        ("mixtral-chatml", qwen2_tokenizer, mixtral_model),
    ]:
        tok = make_tok(corpus)
        model = make_model(tok)
        out = ROOT / name
        model.save_pretrained(out)
        tok.save_pretrained(out)
        for f in out.rglob("*"):
            if f.is_file():
                f.chmod(0o644)  # safetensors writes 0600

    expected = {
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "note": (
            "prompt_ids = apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)['input_ids']; "
            "chosen_ids = tokenizer(chosen_text, add_special_tokens=False)['input_ids']; "
            "chosen_logps = log p of chosen_ids + [eos_token_id] after prompt_ids (float32)"
        ),
        "checkpoints": {},
    }
    for name in ["qwen2-chatml", "llama-tied-named", "mixtral-chatml"]:
        tok, entry = expected_for(ROOT / name, data)
        if name == "llama-tied-named":
            r = data["train"][0]
            entry["tool_use"] = {
                "split": "train",
                "index": 0,
                "prompt": r["prompt"],
                "tools": TOOLS,
                "call": "apply_chat_template(prompt, tools=tools, chat_template='tool_use', add_generation_prompt=True)",
                "text": tok.apply_chat_template(
                    r["prompt"], tools=TOOLS, chat_template="tool_use", tokenize=False, add_generation_prompt=True
                ),
                "ids": chat_ids(tok, r["prompt"], tools=TOOLS, chat_template="tool_use"),
                # No tools: the template's `tools is defined and tools` is false.
                "text_without_tools": tok.apply_chat_template(
                    r["prompt"], chat_template="tool_use", tokenize=False, add_generation_prompt=True
                ),
            }
            # With tools and no template named, transformers picks `tool_use` too.
            assert entry["tool_use"]["text"] == tok.apply_chat_template(
                r["prompt"], tools=TOOLS, tokenize=False, add_generation_prompt=True
            )
            assert len(entry["tool_use"]["ids"]) <= 256
        expected["checkpoints"][name] = entry
    (ROOT / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")

    total = 0
    for f in sorted(ROOT.rglob("*")):
        if f.is_file():
            total += f.stat().st_size
            print(f"{f.stat().st_size:8d}  {f.relative_to(ROOT)}")
    print(f"{total:8d}  in all (transformers {transformers.__version__}, tokenizers {tokenizers.__version__})")


if __name__ == "__main__":
    main()
