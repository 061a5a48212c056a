#!/usr/bin/env python3
"""Builds tests/fixtures/reward/: tiny random-weight Hugging Face reward
models (XForSequenceClassification with num_labels = 1) of the families lpo
scores with, their tokenizers, and the scores transformers computes for a
few fixed (prompt, response) texts in float32.

Run by hand (CI has no Python; the Rust tests read the committed files):

    /work/venv/bin/python scripts/make_reward_fixtures.py

needs torch, transformers 5.x and tokenizers (no pyarrow). Every random
choice is seeded, so running it again with the same library versions
rewrites the same bytes. It replaces tests/fixtures/reward/ whole. The venv
it was run in:

    python3 -m venv /work/venv
    /work/venv/bin/pip install --no-deps \\
        .libtorch/wheels/torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl \\
        .libtorch/wheels/nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl \\
        .libtorch/wheels/nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
    # the CUDA libraries torch/_C links against (import torch fails without
    # them even on a CPU-only host), at the versions torch 2.11.0 pins:
    /work/venv/bin/pip install 'cuda-toolkit[cublas,cufft,cufile,curand,cusparse,nvjitlink]==13.0.2' \\
        nvidia-cudnn-cu13==9.19.0.56 nvidia-cusparselt-cu13==0.8.0 \\
        nvidia-nccl-cu13==2.28.9 nvidia-nvshmem-cu13==3.4.5
    /work/venv/bin/pip install filelock typing-extensions sympy networkx jinja2 fsspec \\
        'transformers==5.24.*' safetensors tokenizers numpy

Families (one directory each, written by save_pretrained: config.json,
model.safetensors, tokenizer.json, tokenizer_config.json, and for qwen2
chat_template.jinja):

  llama    LlamaForSequenceClassification; SentencePiece-style BPE (Metaspace,
           byte fallback, <unk> <s> </s> = 0 1 2, <s> prepended by the
           tokenizer.json post-processor); pad = eos = </s> (2), as reward
           models fine-tuned from Llama usually set it. No chat template.
  mistral  MistralForSequenceClassification with sliding_window = 16 (most
           texts are longer); the same kind of tokenizer; pad = <unk> (0),
           not eos, so a trailing </s> is scored. No chat template.
  qwen2    Qwen2ForSequenceClassification, tie_word_embeddings = true in
           config.json as small Qwen2.5 checkpoints have (there is no lm_head
           to tie: the safetensors hold no lm_head.weight); byte-level BPE
           with Qwen2's pre-tokenizer, <|endoftext|> pad, <|im_end|> eos, no
           bos; the Qwen2-Instruct ChatML template (default system message).
  mixtral  MixtralForSequenceClassification (4 experts, top-2 routing,
           per-expert block_sparse_moe tensors as save_pretrained writes
           them) with qwen2's tokenizer and template.

Every model: hidden 32, 2 layers, 2 heads, 1 kv head, float32, random
weights with std 0.3 (score.weight too: scores of order 1, not ~0), the
norms 1 +- 0.1. config.json has pad_token_id, num_labels = 1 (as id2label /
label2id with one entry, LABEL_0) and architectures = [the class]. The
safetensors hold model.embed_tokens.weight, model.layers.<i>.{input_layernorm,
post_attention_layernorm}.weight, model.layers.<i>.self_attn.{q,k,v,o}_proj.weight
(qwen2 also {q,k,v}_proj.bias), model.layers.<i>.mlp.{gate,up,down}_proj.weight,
model.norm.weight and score.weight [1, hidden] (no bias); no lm_head.weight.

Cases: 5 shared (question, answer) pairs of 13 to 132 tokens (one with an
empty response) and, per family, one whose response ends with a special
token: llama and mistral " Paris.</s>" (skipped by the pooling in llama,
where pad == eos; scored in mistral) and " Yes.</s> No, it is not." (an eos
inside the text, attended); qwen2 "Paris.<|endoftext|>" (the pad token:
trailing in raw_text, so raw_score skips it).

Text conventions (written into expected.json as "text_rule"):
  - no chat template (llama, mistral): text = prompt + response, plain
    concatenation, no separator added (the cases' prompts are
    "User: ...\\nAssistant:" and their responses start with a space);
  - chat template (qwen2): text = tokenizer.apply_chat_template(
    [{"role": "user", "content": prompt}, {"role": "assistant",
    "content": response}], tokenize=False) (no add_generation_prompt);
    raw_text = prompt + response is scored too ("raw_score"), to show the
    template matters.
  - input_ids = tokenizer(text)["input_ids"], i.e. add_special_tokens=True,
    the default: <s> prepended for llama and mistral, nothing added for
    qwen2 (asserted equal to apply_chat_template(tokenize=True) there).
    tokenizer.json alone (tokenizers.Tokenizer.from_file, what the Rust side
    loads) encodes every text to the same ids (asserted).

Pooling rule of transformers 5.x (transformers/modeling_layers.py,
GenericForSequenceClassification.forward, which all three classes inherit):

    non_pad_mask = (input_ids != self.config.get_text_config().pad_token_id).to(logits.device, torch.int32)
    token_indices = torch.arange(input_ids.shape[-1], device=logits.device, dtype=torch.int32)
    last_non_pad_token = (token_indices * non_pad_mask).argmax(-1)
    pooled_logits = logits[torch.arange(batch_size, device=logits.device), last_non_pad_token]

where logits = self.score(last_hidden_state). So the score of a row is
score.weight . h[i] at i = the largest position whose id != pad_token_id
(0 when there is none: argmax of all zeros; -1, the last position, when
config.pad_token_id is null, which is allowed only for batch size 1). The
attention mask plays no part in choosing i; a pad id inside a text (or
trailing it, when pad == eos) is still attended (mask 1) but is never the
pooled position, so a trailing </s> is skipped when pad == eos (llama) and
scored when pad != eos (mistral).

expected.json, per family: versions, class, num_labels, the special ids,
pooling_rule, text_rule, add_special_tokens, logits_shape (single) and
batched_logits_shape, and "cases": each {"messages" (qwen2) or null,
"prompt", "response", "text", "input_ids", "pool_index", "score"
(one sequence, batch of 1, no attention mask), "score_batched" (all cases
of the family right-padded with pad_token_id into one batch, attention mask
1 on each row's own tokens, 0 on the padding)}; qwen2 cases also
"raw_text", "raw_input_ids", "raw_pool_index", "raw_score". The script
asserts |score - score_batched| <= 1e-5, that score equals
score.weight . last_hidden_state[pool_index], and that the reloaded
checkpoint gives the same scores.
"""

import json
import pathlib
import shutil

import tokenizers
import torch
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "reward"

POOLING_RULE = (
    "transformers/modeling_layers.py GenericForSequenceClassification.forward: "
    "logits = score(last_hidden_state); "
    "non_pad_mask = (input_ids != config.pad_token_id); "
    "last_non_pad_token = (arange(seq_len) * non_pad_mask).argmax(-1); "
    "pooled = logits[arange(batch), last_non_pad_token]. "
    "I.e. the rightmost position whose id != pad_token_id (0 if none; the last position if pad_token_id is null, "
    "batch 1 only); the attention mask is not used to pick it, and pad ids inside the text are attended."
)

# The chat template of Qwen2-Instruct, as in scripts/make_hf_fixtures.py.
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Qwen2's pre-tokenizer split (transformers' models/qwen2/tokenization_qwen2.py).
QWEN2_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

# (question, answer) pairs of different lengths; the families turn them into
# (prompt, response) as their text rule wants.
QA = [
    ("What is 2 + 2?", "4"),
    ("Name a primary colour.", "Red is a primary colour."),
    ("Write one sentence about the sea.", "The sea is wide and deep, and it hides many old ships."),
    (
        "Explain in two sentences why the sky is blue.",
        "Sunlight scatters off the small molecules of the air, and blue light scatters much more than red. "
        "So the sky we see away from the sun looks blue.",
    ),
    ("Say hello.", ""),
]

# More text for the tokenizers' training corpus, so their merges are not only
# the fixture sentences.
EXTRA_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A reward model gives each answer a score; a higher score means a better answer.",
    "Paris is the capital of France. Rome is the capital of Italy.",
    "Yes. No. Maybe. I do not know.",
    "Two plus two is four, and three plus three is six.",
]


def plain_cases(eos):
    """(prompt, response) for a family without a chat template: text =
    prompt + response. The last two put the eos token in the text: once
    trailing (skipped by the pooling when pad == eos) and once inside."""
    out = [(f"User: {q}\nAssistant:", f" {a}" if a else "") for q, a in QA]
    out.append(("User: What is the capital of France?\nAssistant:", f" Paris.{eos}"))
    out.append(("User: Is it raining?\nAssistant:", f" Yes.{eos} No, it is not."))
    return out


def chat_cases(pad):
    """(prompt, response) for the chat-template family. The last response
    ends with the pad token: inside the template it is followed by
    <|im_end|> and a newline; in the raw text it is trailing, so raw_score
    skips it."""
    out = list(QA)
    out.append(("What is the capital of France?", f"Paris.{pad}"))
    return out


# ---------------------------------------------------------------- tokenizers


def qwen2_tokenizer(corpus):
    """A byte-level BPE laid out as Qwen2's tokenizer.json is (as in
    scripts/make_hf_fixtures.py): NFC, the regex split then ByteLevel without
    its own regex, all 256 byte symbols, the special tokens after the
    learned vocabulary."""
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
        vocab_size=320,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
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


def llama_tokenizer(corpus, pad_token):
    """A SentencePiece-style BPE as transformers 5.x builds Llama's (as in
    scripts/make_hf_fixtures.py): no normalizer, Metaspace with the prefix
    on the first piece only, byte fallback to <0x00>..<0xFF> (ids 3..258),
    <unk> <s> </s> = 0 1 2, <s> prepended by the post-processor."""
    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=150, min_frequency=2, show_progress=False, special_tokens=specials)
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.train_from_iterator(corpus + ["User:", "Assistant:"] * 4, trainer)
    trained = json.loads(tok.to_str())
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
        pad_token=pad_token,
        add_bos_token=True,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        model_max_length=256,
    )


# ---------------------------------------------------------------- models


def randomize(model, seed):
    """As scripts/make_parity_fixtures.py: std 0.3 for every matrix (so the
    score head gives scores of order 1 instead of ~0 with the 0.02 init),
    norms 1 +- 0.1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


COMMON = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=256,
    num_labels=1,
)


def make_model(cls, tok, seed, **extra):
    config = cls(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **COMMON,
        **extra,
    )
    config.architectures = [cls.__name__.replace("Config", "ForSequenceClassification")]
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32).eval()
    assert type(model).__name__ == config.architectures[0]
    randomize(model, seed)
    return model


# name -> (tokenizer builder, model builder, has chat template)
FAMILIES = {
    "llama": (
        lambda corpus: llama_tokenizer(corpus, pad_token="</s>"),
        lambda tok: make_model(
            transformers.LlamaConfig,
            tok,
            seed=11,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False,
        ),
        False,
    ),
    "mistral": (
        lambda corpus: llama_tokenizer(corpus, pad_token="<unk>"),
        lambda tok: make_model(
            transformers.MistralConfig,
            tok,
            seed=12,
            rms_norm_eps=1e-5,
            sliding_window=16,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False,
        ),
        False,
    ),
    "qwen2": (
        qwen2_tokenizer,
        lambda tok: make_model(
            transformers.Qwen2Config,
            tok,
            seed=13,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=True,
        ),
        True,
    ),
    "mixtral": (
        qwen2_tokenizer,
        lambda tok: make_model(
            transformers.MixtralConfig,
            tok,
            seed=14,
            rms_norm_eps=1e-5,
            num_local_experts=4,
            num_experts_per_tok=2,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=False,
        ),
        True,
    ),
}


# ---------------------------------------------------------------- expected


def pool_index(ids, pad):
    """transformers' rule, in plain Python."""
    non_pad = [i for i, t in enumerate(ids) if t != pad]
    return non_pad[-1] if non_pad else 0


def score_one(model, ids):
    """Batch of one, no attention mask; also checks the pooled position by
    hand from the last hidden state."""
    x = torch.tensor([ids])
    with torch.no_grad():
        out = model(input_ids=x)
        hidden = model.model(input_ids=x).last_hidden_state[0]
    assert tuple(out.logits.shape) == (1, 1), out.logits.shape
    i = pool_index(ids, model.config.pad_token_id)
    by_hand = (hidden[i] @ model.score.weight[0]).item()
    s = out.logits[0, 0].item()
    assert abs(by_hand - s) <= 1e-5, (by_hand, s)
    return s, i, list(out.logits.shape)


def score_batch(model, rows):
    """All rows right-padded with pad_token_id into one batch, attention
    mask 1 on each row's own tokens."""
    pad = model.config.pad_token_id
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    return [v.item() for v in logits[:, 0]], list(logits.shape)


def check_tokenizer_json(directory, tok, texts):
    """tokenizer.json alone encodes every text as AutoTokenizer does (for
    model_type qwen2 AutoTokenizer builds Qwen2Tokenizer, which rebuilds the
    normalizer and pre-tokenizer itself)."""
    raw = Tokenizer.from_file(str(directory / "tokenizer.json"))
    for t in texts:
        assert raw.encode(t).ids == tok(t)["input_ids"], (directory, t)
        assert raw.encode(t, add_special_tokens=False).ids == tok(t, add_special_tokens=False)["input_ids"], (directory, t)


def expected_for(name, directory, chat, in_memory):
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32).eval()
    assert model.config.num_labels == 1 and model.config.vocab_size == len(tok), name
    assert model.config.pad_token_id == tok.pad_token_id is not None, name
    assert "lm_head.weight" not in model.state_dict(), name
    for k, v in in_memory.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), (name, k)
    pad = tok.pad_token_id

    cases = []
    texts = []
    if chat:
        assert tok.chat_template is not None
        for prompt, response in chat_cases(tok.pad_token):
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            text = tok.apply_chat_template(messages, tokenize=False)
            ids = tok(text)["input_ids"]
            assert ids == tok(text, add_special_tokens=False)["input_ids"], name
            templated = tok.apply_chat_template(messages, tokenize=True)
            templated = templated["input_ids"] if hasattr(templated, "keys") else templated
            assert list(templated) == ids, name
            raw_text = prompt + response
            raw_ids = tok(raw_text)["input_ids"]
            texts += [text, raw_text]
            cases.append(
                {"messages": messages, "prompt": prompt, "response": response, "text": text, "input_ids": ids,
                 "raw_text": raw_text, "raw_input_ids": raw_ids}
            )
    else:
        assert tok.chat_template is None
        for prompt, response in plain_cases(tok.eos_token):
            text = prompt + response
            ids = tok(text)["input_ids"]
            texts.append(text)
            cases.append({"messages": None, "prompt": prompt, "response": response, "text": text, "input_ids": ids})
    check_tokenizer_json(directory, tok, texts)

    for c in cases:
        c["pool_index"] = pool_index(c["input_ids"], pad)
        c["score"], _, shape = score_one(model, c["input_ids"])
        if chat:
            c["raw_pool_index"] = pool_index(c["raw_input_ids"], pad)
            c["raw_score"], _, _ = score_one(model, c["raw_input_ids"])
            assert abs(c["raw_score"] - c["score"]) > 1e-3, (name, c["text"])
    batched, batched_shape = score_batch(model, [c["input_ids"] for c in cases])
    for c, s in zip(cases, batched):
        assert abs(c["score"] - s) <= 1e-5, (name, c["text"], c["score"], s)
        c["score_batched"] = s
    # Order the keys of each case for a reader.
    keys = ["messages", "prompt", "response", "text", "input_ids", "pool_index", "score", "score_batched",
            "raw_text", "raw_input_ids", "raw_pool_index", "raw_score"]
    cases = [{k: c[k] for k in keys if k in c} for c in cases]

    # The cases exercise what they are meant to.
    if tok.pad_token_id == tok.eos_token_id:
        assert any(c["input_ids"][-1] == pad and c["pool_index"] < len(c["input_ids"]) - 1 for c in cases), name
    elif not chat:
        assert any(c["input_ids"][-1] == tok.eos_token_id and c["pool_index"] == len(c["input_ids"]) - 1 for c in cases)
    if chat:
        assert any(c["raw_input_ids"][-1] == pad and c["raw_pool_index"] < len(c["raw_input_ids"]) - 1 for c in cases)

    if chat:
        text_rule = (
            "text = tokenizer.apply_chat_template([{'role': 'user', 'content': prompt}, "
            "{'role': 'assistant', 'content': response}], tokenize=False) (no add_generation_prompt); "
            "raw_text = prompt + response (no separator)"
        )
    else:
        text_rule = "text = prompt + response (plain concatenation, no separator added)"
    return {
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "torch": torch.__version__.split("+")[0],
        "class": type(model).__name__,
        "tokenizer_class": type(tok).__name__,
        "num_labels": model.config.num_labels,
        "vocab_size": model.config.vocab_size,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token": tok.pad_token,
        "pad_token_id": pad,
        "pad_equals_eos": pad == tok.eos_token_id,
        "chat_template": chat,
        "pooling_rule": POOLING_RULE,
        "text_rule": text_rule,
        "add_special_tokens": True,
        "input_ids_rule": "input_ids = tokenizer(text)['input_ids'] (add_special_tokens=True, the default)",
        "batch_rule": (
            "score: each case alone, batch of 1, no attention mask; score_batched: all cases in one batch, "
            "right-padded with pad_token_id, attention_mask 1 on each case's own tokens and 0 on the padding"
        ),
        "logits_shape": shape,
        "batched_logits_shape": batched_shape,
        "cases": cases,
    }


def main():
    torch.manual_seed(0)
    if ROOT.exists():
        shutil.rmtree(ROOT)
    ROOT.mkdir(parents=True)
    corpus = EXTRA_CORPUS + [t for qa in QA for t in qa if t]
    for name, (make_tok, make_mod, chat) in FAMILIES.items():
        tok = make_tok(corpus)
        model = make_mod(tok)
        out = ROOT / name
        model.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
        expected = expected_for(name, out, chat, model)
        (out / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
        for f in out.rglob("*"):
            if f.is_file():
                f.chmod(0o644)  # safetensors writes 0600
        scores = [round(c["score"], 3) for c in expected["cases"]]
        print(f"{name}: {expected['class']}, pad {expected['pad_token_id']}, scores {scores}")

    total = 0
    for f in sorted(ROOT.rglob("*")):
        if f.is_file():
            total += f.stat().st_size
            print(f"{f.stat().st_size:8d}  {f.relative_to(ROOT)}")
    print(f"{total:8d}  in all (transformers {transformers.__version__}, tokenizers {tokenizers.__version__})")


if __name__ == "__main__":
    main()
