//! The key table: every recipe key with its type, default, range and meaning.
//!
//! It drives validation of each layer (unknown keys with suggestions, wrong
//! types, out-of-range values), sweep-axis checks, and docs/recipes.md.

use toml::Value;

use crate::schedule::Coef;
use crate::schema::BUILTIN_TASKS;

/// The type and range a key accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ty {
    /// A table of further keys.
    Section,
    /// Any string.
    Str,
    /// A string usable as one directory or file name under the results
    /// directory: non-empty, no `/` or `\\`, not `.` or `..`, not starting
    /// with `.` or `_` (`_cache/` is the results directory's own).
    Name,
    /// A file or directory path. A relative path in a recipe file is
    /// resolved against that file's directory (as `extends` is); one from
    /// `--set` or the environment against the working directory
    /// ([`crate::paths`]).
    Path,
    /// true or false.
    Bool,
    /// Integer in `[min, max]`.
    Int {
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// Number (integer or float) in the range; `open_min` excludes `min`.
    Float {
        /// Lower bound.
        min: f64,
        /// Upper bound (inclusive).
        max: f64,
        /// Whether `min` itself is excluded.
        open_min: bool,
    },
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    /// A non-empty array of distinct listed strings.
    EnumList(&'static [&'static str]),
    /// `loss.kind`: a loss kind's name, or an array of `{ kind, weight }`
    /// tables (a weighted sum of kinds, [`crate::losses::Objective`]).
    Objective,
    /// A number or a schedule table; values must be `> min` (`open_min`) or `>= min`.
    Coef {
        /// Lower bound for every value the schedule takes.
        min: f64,
        /// Whether `min` itself is excluded.
        open_min: bool,
    },
    /// Array of data-source tables (`data.mix`).
    Sources,
    /// Array of tables whose fields are the `path[].field` keys (`report.tables`).
    Tables,
    /// Table of dotted recipe keys to arrays of values.
    Axes,
    /// One axes table or an array of them (`sweep.zip`).
    ZipAxes,
    /// Array of non-negative integers.
    Seeds,
    /// Array of tables of dotted recipe keys to values.
    Filters,
}

impl Ty {
    /// A valid value other than `default` (TOML text), for checks that move
    /// a key away from its default; `None` for the composite types.
    pub fn another_value(&self, default: &str) -> Option<String> {
        let number = |n: f64| format!("{n:?}");
        match *self {
            Ty::Bool => Some((if default == "true" { "false" } else { "true" }).to_string()),
            Ty::Enum(options) => options
                .iter()
                .find(|o| format!("\"{o}\"") != default)
                .map(|o| format!("\"{o}\"")),
            Ty::Objective => Ty::Enum(crate::losses::LOSS_NAMES).another_value(default),
            Ty::Int { min, max } => {
                let current: i64 = default.parse().ok()?;
                Some(if current < max { current + 1 } else { min }.to_string())
            }
            Ty::Float { min, max, .. } => {
                let current: f64 = default.parse().ok()?;
                let bounded = max < 1e300;
                Some(number(if bounded {
                    (min + max) / 3.0
                } else {
                    current * 3.0 + 0.25
                }))
                .filter(|v| v.parse::<f64>().ok() != Some(current))
            }
            Ty::Coef { .. } => Some(number(default.parse::<f64>().ok()? * 3.0 + 0.25)),
            _ => None,
        }
    }
}

/// Whether a key takes part in the run id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It changes what a run computes: it enters the run id.
    Computes,
    /// Naming, reporting, sweeping or execution settings (device, threads,
    /// checkpoint interval): runs differing only here are the same run.
    NotInId,
}

/// One documented recipe key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// Dotted path; `data.mix[].task` for fields of array entries.
    pub path: &'static str,
    /// Accepted type and range.
    pub ty: Ty,
    /// Default as TOML text ("preset" where the size preset decides, "-" for none).
    pub default: &'static str,
    /// What it means.
    pub doc: &'static str,
    /// Whether it enters the run id (the planner's `canonical` drops the
    /// others, and docs/recipes.md says so).
    pub role: Role,
}

impl KeySpec {
    /// This key with another type (to check a part of its value).
    const fn with_ty(&self, ty: Ty) -> KeySpec {
        KeySpec { ty, ..*self }
    }
}

const fn key(path: &'static str, ty: Ty, default: &'static str, doc: &'static str) -> KeySpec {
    KeySpec {
        path,
        ty,
        default,
        doc,
        role: Role::Computes,
    }
}

/// A key outside the run id.
const fn not_in_id(spec: KeySpec) -> KeySpec {
    KeySpec {
        role: Role::NotInId,
        ..spec
    }
}

/// The keys (and whole sections) that do not enter run ids.
pub fn outside_run_ids() -> impl Iterator<Item = &'static KeySpec> {
    KEYS.iter().filter(|k| k.role == Role::NotInId)
}

const POSITIVE: Ty = Ty::Float {
    min: 0.0,
    max: f64::MAX,
    open_min: true,
};
const NON_NEGATIVE: Ty = Ty::Float {
    min: 0.0,
    max: f64::MAX,
    open_min: false,
};
const COUNT: Ty = Ty::Int {
    min: 1,
    max: u32::MAX as i64,
};
/// A count from 1 to `max`: upper bounds keep an absurd value an error at
/// load time instead of a failed allocation (or a libtorch panic) in a run.
const fn count_to(max: i64) -> Ty {
    Ty::Int { min: 1, max }
}
const OPTIONAL_COUNT: Ty = Ty::Int {
    min: 0,
    max: u32::MAX as i64,
};

/// Every key a recipe may set.
pub const KEYS: &[KeySpec] = &[
    not_in_id(key("name", Ty::Name, "\"unnamed\"", "Family name; results land in `results/<name>/`.")),
    not_in_id(key("description", Ty::Str, "\"\"", "Free text.")),
    not_in_id(key("label", Ty::Str, "loss.kind", "Method label that reports group runs by.")),
    not_in_id(key("extends", Ty::Path, "-", "Recipe merged underneath this one; chains allowed, cycles are an error.")),
    key("model", Ty::Section, "", "Policy and reference architecture."),
    key("model.size", Ty::Enum(&["nano", "tiny", "small", "base", "mistral-7b", "mixtral-8x7b"]), "\"nano\"", "Size preset; the keys below override single fields. With `reference.checkpoint` the checkpoint's config.json gives the architecture, and a preset or field that contradicts it is an error."),
    key("model.layers", count_to(1 << 10), "preset", "Decoder blocks."),
    key("model.d_model", count_to(1 << 16), "preset", "Residual width."),
    key("model.heads", count_to(1 << 10), "preset", "Query heads; must divide d_model."),
    key("model.kv_heads", count_to(1 << 10), "preset", "Key/value heads (grouped-query attention); must divide heads."),
    key("model.d_ff", count_to(1 << 20), "preset", "SwiGLU hidden width."),
    key("model.vocab", count_to(1 << 22), "preset", "Vocabulary size."),
    key("model.max_len", count_to(1 << 22), "preset", "Longest sequence (prompt + response) in tokens."),
    key("model.rope_theta", POSITIVE, "preset", "Rotary embedding base."),
    key("model.sliding_window", OPTIONAL_COUNT, "preset", "Sliding attention window in tokens; 0 = full causal attention."),
    key("model.experts", Ty::Int { min: 0, max: 1 << 10 }, "preset", "Experts of each block's sparse feed-forward (Mixtral's `num_local_experts`); 0 = a dense SwiGLU MLP."),
    key("model.experts_per_token", count_to(1 << 10), "2 with experts", "Experts each token is routed to (top-k, Mixtral's `num_experts_per_tok`); at most model.experts."),
    key("model.router_aux_loss_coef", Ty::Float { min: 0.0, max: 1.0e3, open_min: false }, "0.0", "Weight of the router's load-balancing loss (transformers' `load_balancing_loss_func` over every block and real token) added to the training loss and logged as `router_aux`; 0 = off. Needs experts; not with activation checkpointing."),
    key("model.lora", Ty::Section, "", "Low-rank adapters (PEFT's LoRA) instead of full fine-tuning; the frozen base with adapters off is the reference."),
    key("model.lora.rank", Ty::Int { min: 0, max: 1 << 16 }, "0", "Adapter rank r; 0 = full fine-tuning."),
    key("model.lora.alpha", POSITIVE, "16.0", "Adapters are scaled by alpha / rank."),
    key("model.lora.dropout", Ty::Float { min: 0.0, max: 0.9, open_min: false }, "0.0", "Dropout on the adapters' input during training."),
    key("model.lora.targets", Ty::EnumList(&["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "w1", "w2", "w3", "gate"]), "[\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\"]", "Linear layers of each block that get adapters (PEFT's target_modules): attention's, then the dense MLP's (`gate_proj`, `up_proj`, `down_proj`) or, with experts, every expert's (`w1` gate, `w3` up, `w2` down) and the router (`gate`)."),
    key("reference", Ty::Section, "", "The frozen reference: SFT on demonstrations with errors, or a checkpoint."),
    key("reference.sft_steps", COUNT, "2000", "SFT optimizer steps on built-in task demonstrations."),
    key("reference.sft_batch_size", count_to(1 << 16), "32", "Demonstrations per SFT step."),
    key("reference.sft_learning_rate", Ty::Float { min: 0.0, max: 1.0e3, open_min: true }, "3e-3", "SFT AdamW learning rate."),
    key("reference.error_rate", Ty::Float { min: 0.0, max: 1.0, open_min: false }, "0.2", "Share of demonstrations replaced by a wrong answer, so the reference leaves room to improve."),
    key("reference.sample_temperature", POSITIVE, "1.0", "Temperature when sampling the K responses of each training prompt."),
    key("reference.checkpoint", Ty::Path, "-", "Hugging Face checkpoint directory (config.json + safetensors) of a Mistral, Llama, Qwen2, Qwen3 or Mixtral decoder, or a Hub name `org/name` (`org/name@revision`) from the Hugging Face cache, used as the reference and the policy's start instead of SFT; its config.json gives the model architecture and its tokenizer files the tokenizer."),
    key("loss", Ty::Section, "", "Training objective (docs/losses.md)."),
    key("loss.kind", Ty::Objective, "\"lpo\"", "Which objective (the loss kinds table below), or a weighted sum of kinds: `[{ kind = \"dpo\", weight = 0.8 }, { kind = \"bco_pair\", weight = 0.2 }]` (TRL's `loss_weights`, as MPO; a part without `weight` has weight 1). Each part reads the `loss.` keys its kind reads; the run logs each part's loss in loss_parts.csv, and its implicit reward is the first part's."),
    key("loss.beta", Ty::Coef { min: 0.0, open_min: true }, "0.1", "Implicit-reward scale beta > 0: a number or a schedule."),
    key("loss.alpha", Ty::Coef { min: 0.0, open_min: true }, "1.0", "Reward temperature alpha > 0 of p = softmax(r / alpha): a number or a schedule."),
    key("loss.gamma", Ty::Coef { min: 0.0, open_min: false }, "0.0", "Weight gamma >= 0 of LPO's anchor term: a number or a schedule."),
    key("loss.coefficient", Ty::Enum(&["adaptive", "uniform"]), "\"adaptive\"", "LPO's loss coefficient c_i."),
    key("loss.margin_weight", Ty::Bool, "false", "LPO: weight each prompt by (r_max - r_min) / reward_scale."),
    key("loss.reward_scale", POSITIVE, "10.0", "Reward scale used by margin_weight."),
    key("loss.pairing", Ty::Enum(&["best-worst", "best-rest", "all"]), "\"best-worst\"", "Pairwise losses (dpo and the TRL kinds): how a list of K > 2 becomes pairs."),
    key("loss.label_smoothing", Ty::Float { min: 0.0, max: 0.499, open_min: false }, "0.0", "robust, aot, aot_unpaired: probability that a preference label is flipped."),
    key("loss.exo_epsilon", Ty::Float { min: 0.0, max: 0.999, open_min: true }, "1e-3", "exo_pair: target probability eps of the rejected response (TRL's label_smoothing for exo_pair)."),
    key("loss.discopop_tau", POSITIVE, "0.05", "discopop: temperature tau of the mixing weight sigma(z / tau)."),
    key("loss.simpo_gamma", NON_NEGATIVE, "0.5", "simpo: target reward margin gamma (TRL's simpo_gamma; the paper's gamma / beta is about 0.5)."),
    key("loss.normalize", Ty::Enum(&["sum", "mean"]), "\"sum\"", "Sequence log-probability: sum over response tokens, or their mean."),
    key("data", Ty::Section, "", "Data form and sources."),
    key("loss.sft_weight", Ty::Coef { min: 0.0, open_min: false }, "0.0", "Weight >= 0 of the supervised term: the length-normalised NLL of each prompt's best response (RPO), for every loss; a number or a schedule."),
    key("data.form", Ty::Enum(&["reward", "preference"]), "\"reward\"", "Scored lists, or lists binarized to (best, random other) pairs."),
    key("data.list_size", Ty::Int { min: 2, max: 64 }, "4", "Responses per prompt K."),
    key("data.train_prompts", Ty::Int { min: 0, max: 10_000_000 }, "512", "Training prompts drawn from the mix by weight; 0 = every training record of every file source once (files only). See data.oversample."),
    key("data.mix", Ty::Sources, "[{ task = \"arith\", weight = 1.0 }]", "Weighted sources: each a built-in task or a JSONL/parquet file (or a split of a dataset directory)."),
    key("data.mix[].task", Ty::Enum(BUILTIN_TASKS), "-", "Built-in task name."),
    key("data.mix[].path", Ty::Path, "-", "JSONL or parquet file, or a dataset directory with `split` (instead of task)."),
    key("data.mix[].format", Ty::Enum(&["native", "ultrafeedback", "ultrafeedback-binarized", "trl", "prompts", "gsm8k", "humaneval"]), "-", "Format of path's records (docs/data.md): scored responses, or prompts (`prompts`, `gsm8k`, `humaneval`) whose responses are sampled and scored by the source's `reward`."),
    key("data.mix[].reward", Ty::Enum(&["math", "code", "model"]), "-", "Reward source of a prompt file: K responses per prompt are sampled from the reference (and from the policy in later on-policy rounds) and scored: `math` checks the final answer against the record's `answer`, `code` runs the record's `tests` in a sandbox (both 10 when right, else 0), `model` is reward.model's score. Required with a prompt format (which also needs reference.checkpoint), refused with the others."),
    key("data.mix[].weight", POSITIVE, "1.0", "Relative sampling weight."),
    key("data.tokenizer", Ty::Path, "-", "Hugging Face tokenizer directory or its tokenizer.json, with the tokenizer_config.json and chat_template.jinja beside it (special tokens, chat template), or a Hub name; default: reference.checkpoint's tokenizer, else the character tokenizer of the built-in tasks."),
    key("data.eval_fraction", Ty::Float { min: 0.0, max: 0.9, open_min: false }, "0.1", "Share of lists held out from training for ranking metrics: of each file's records (chosen by a hash of each record's prompt, so about this share and the same records for every seed; docs/data.md), and of train_prompts for built-in tasks (drawn from the tasks' fixed held-out parts); a prompt file's held-out records are its evaluation prompts."),
    key("data.on_bad_record", Ty::Enum(&["error", "skip"]), "\"error\"", "A malformed dataset line stops the run, or is skipped and counted."),
    // Real data (issue 13): splits, chat templates, special tokens, truncation, unknown characters.
    key("data.mix[].eval_split", Ty::Str, "-", "Split of the same dataset directory whose records are this source's held-out lists (all of them), instead of a data.eval_fraction share of its training records."),
    key("data.mix[].split", Ty::Str, "-", "Split of a dataset directory `path`: its .jsonl/.parquet files named `<split>-…`/`<split>.…` or under a `<split>/` directory."),
    key("data.chat_template", Ty::Enum(&["auto", "none"]), "\"auto\"", "Render prompts (system message, earlier turns, prompt) with the tokenizer's chat template (chat_template.jinja, else tokenizer_config.json's chat_template) when it has one, or never."),
    key("data.chat_template_name", Ty::Str, "-", "Which named chat template of the tokenizer renders prompts (additional_chat_templates/<name>.jinja, or a name in tokenizer_config.json's list); default: the `default` one, as transformers picks it."),
    key("data.oversample", Ty::Bool, "false", "Whether a file source may give more training lists than it has training records (records are then drawn again, counted as `repeated` in summary.json and `lpo data preview`); false: an error naming the counts."),
    key("data.bos_token", Ty::Str, "-", "Beginning-of-sequence token (its text); default: tokenizer_config.json's bos_token."),
    key("data.eos_token", Ty::Str, "-", "End-of-sequence token that ends every response (its text); default: tokenizer_config.json's eos_token."),
    key("data.pad_token", Ty::Str, "-", "Padding token (its text); default: tokenizer_config.json's pad_token, else unk_token, else eos."),
    key("data.max_prompt_tokens", count_to(1 << 22), "-", "Longest prompt in tokens: longer prompts keep their end (counted per source)."),
    key("data.max_response_tokens", count_to(1 << 22), "-", "Longest response in tokens (with its end token): longer responses are cut (counted per source)."),
    key("data.unknown_chars", Ty::Enum(&["error", "skip"]), "\"error\"", "Under the character tokenizer, a file record with a character outside its alphabet stops the run (file:line), or is skipped and counted."),
    key("train", Ty::Section, "", "Optimisation."),
    key("train.steps", COUNT, "200", "Optimizer steps (per on-policy round); see train.epochs."),
    key("train.epochs", count_to(1 << 20), "-", "Train whole epochs instead of train.steps: each round takes epochs x ceil(training lists / batch_size) optimizer steps (grad_accum splits a step's lists, it does not add to them), counted once the lists are built (summary.json's `steps`; `lpo data preview` prints the steps of one epoch). train.steps is then ignored and leaves the run id."),
    key("train.rounds", Ty::Int { min: 1, max: 64 }, "1", "On-policy rounds (iterative DPO/LPO): after each round of train.steps steps, every training prompt's K responses are sampled again from the policy and scored; 1 = offline. Needs every source to be a built-in task or a prompt file with a `reward`."),
    key("train.reference_update", Ty::Enum(&["fixed", "round"]), "\"fixed\"", "Reference of rounds after the first: the SFT model (`fixed`) or the policy at the round's start (`round`)."),
    key("train.batch_size", count_to(1 << 16), "8", "Prompts per optimizer step, each with its K responses."),
    key("train.learning_rate", Ty::Float { min: 0.0, max: 1.0e3, open_min: true }, "1e-4", "Peak AdamW learning rate."),
    key("train.lr_schedule", Ty::Enum(&["constant", "linear", "cosine"]), "\"cosine\"", "Decay after warmup."),
    key("train.warmup_steps", OPTIONAL_COUNT, "10", "Linear learning-rate warmup steps."),
    key("train.grad_clip", NON_NEGATIVE, "1.0", "Global gradient-norm clip; 0 = off."),
    key("train.grad_accum", count_to(1 << 16), "1", "Micro-batches a step's batch is split into (it must divide train.batch_size): the same step, each micro-batch weighted by its share of the batch's contributing prompts, in less activation memory."),
    key("train.weight_decay", NON_NEGATIVE, "0.0", "AdamW weight decay."),
    not_in_id(key("train.device", Ty::Enum(&["auto", "cpu", "cuda"]), "\"auto\"", "auto = CUDA when available.")),
    not_in_id(key("train.threads", OPTIONAL_COUNT, "0", "CPU threads; 0 = all.")),
    not_in_id(key("train.checkpoint_every", OPTIONAL_COUNT, "25", "Save a resumable checkpoint every N steps; 0 = only at the end.")),
    key("train.seed", Ty::Int { min: 0, max: i64::MAX }, "0", "Seed of data, initialisation and evaluation."),
    not_in_id(key("train.activation_checkpointing", Ty::Bool, "false", "Keep only each block's input in the forward pass and recompute the block in backward: the same gradients with less activation memory.")),
    key("train.moments", Ty::Enum(&["f32", "bf16"]), "\"f32\"", "Precision of AdamW's moments; bf16 halves optimizer memory (docs/performance.md)."),
    key("train.packed", Ty::Bool, "false", "Padding-free lists: the policy's training passes send only real tokens through norms, linear layers and the head (attention still runs on padded rows). The same log-probabilities and gradients up to float rounding, less compute the more lengths vary (`lpo data preview` prints the padding share; a micro-batch without padding runs padded); with LoRA dropout, other masks are drawn. Reference and evaluation passes stay padded (docs/performance.md, \"Packed lists\")."),
    key("train.reproducible", Ty::Bool, "false", "Byte-identical metrics.csv and eval.csv on every x86-64 CPU at the same thread count (ATen's baseline kernels, MKL's compatible mode, no oneDNN products; train.threads, 1 when unset); CPU only, slower (docs/performance.md). Also `--reproducible`."),
    key("eval", Ty::Section, "", "Held-out evaluation."),
    key("eval.prompts", count_to(1_000_000), "200", "Held-out prompts."),
    key("eval.samples", Ty::Int { min: 1, max: 1024 }, "8", "Responses sampled per held-out prompt and model; rewards and pass rates are per-prompt means. Greedy decoding needs 1."),
    key("eval.validation_fraction", Ty::Float { min: 0.0, max: 1.0, open_min: true }, "0.5", "Share of held-out prompts and lists used for validation (model selection); the rest is the test set reports use."),
    key("eval.every", OPTIONAL_COUNT, "25", "Measure likelihood, margin and ranking accuracy on the fixed validation lists every N steps (curves.csv); 0 = off."),
    key("eval.decoding", Ty::Enum(&["greedy", "sample"]), "\"sample\"", "Decoding strategy."),
    key("eval.temperature", POSITIVE, "1.0", "Sampling temperature."),
    key("eval.top_p", Ty::Float { min: 0.0, max: 1.0, open_min: true }, "1.0", "Nucleus mass."),
    key("eval.max_new_tokens", count_to(1 << 20), "32", "Longest generated response in tokens."),
    key("eval.baseline", Ty::Str, "\"reference\"", "`reference` (the SFT model) or another run's label in the same sweep; the run carrying that label is itself compared with the reference (`lpo plan` notes it), and a run that is its own baseline with no other run comparing with it is an error."),
    key("reward", Ty::Section, "", "Settings of the reward sources that prompt files name (data.mix[].reward)."),
    key("reward.model", Ty::Path, "-", "Reward model for `reward = \"model\"`: a Hugging Face LlamaForSequenceClassification, MistralForSequenceClassification, Qwen2ForSequenceClassification, Qwen3ForSequenceClassification or MixtralForSequenceClassification checkpoint with num_labels = 1 (directory or Hub name) with its tokenizer files; it scores the conversation rendered with its own chat template."),
    key("reward.math_style", Ty::Enum(&["auto", "gsm8k", "boxed"]), "\"auto\"", "How the math reward finds a response's final answer: GSM8K's `#### 42` (else \"the answer is\", else the last number), MATH's last `\\boxed{}`, or `auto` (boxed when the response has a box)."),
    key("reward.code_timeout", Ty::Float { min: 0.0, max: 3600.0, open_min: true }, "10.0", "Wall-clock limit in seconds of one code execution (its CPU time is limited to the same)."),
    key("reward.code_memory_mb", Ty::Int { min: 64, max: 1 << 20 }, "1024", "Address-space limit of one code execution, MiB."),
    not_in_id(key("reward.model_batch", count_to(1 << 16), "8", "Sequences per reward-model forward pass.")),
    not_in_id(key("tracking", Ty::Section, "", "Experiment trackers the runs also log to (each run always writes TensorBoard events in its tb/).")),
    not_in_id(key("tracking.mlflow", Ty::Str, "-", "An MLflow tracking server, `http://host:port` or `https://...` (`lpo sweep`/`lpo run --mlflow URI` set it for one command): one MLflow run per run with the resolved recipe as params, every step's metrics, its files as artifacts and its status (results/README.md, \"MLflow\"). A server that is down or slow never stops or stalls training: what was not logged is kept in the run's mlflow-unsent.jsonl. Credentials come from MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, never the recipe.")),
    not_in_id(key("tracking.experiment", Ty::Str, "-", "The MLflow experiment (created when missing); default: the recipe's name.")),
    not_in_id(key("report", Ty::Section, "", "Paper-style tables `lpo report RECIPE` regenerates.")),
    key("report.tables", Ty::Tables, "[]", "Tables written to `results/tables/<name>.{md,tex,csv}`: rows are methods, columns tasks."),
    key("report.tables[].name", Ty::Name, "-", "File stem of the table (required)."),
    key("report.tables[].metric", Ty::Enum(&["win-rate", "reward", "accuracy"]), "\"win-rate\"", "What each cell shows."),
    key("report.tables[].baseline", Ty::Str, "eval.baseline", "`reference` or a method label to compare against."),
    key("report.tables[].caption", Ty::Str, "-", "Caption (LaTeX and Markdown)."),
    key("report.family", Ty::Tables, "[]", "The declared family of hypotheses, e.g. `[{ a = \"lpo\", b = \"dpo\" }]`: Holm (or `--adjust`) adjusts over these tests only, the same p-values and stars in report.md, report.csv, report.html and every paper table; a declared comparison with another method is added to the report as a head-to-head; every other test is shown unadjusted and marked exploratory. Empty: the family is every test the report and its tables show (docs/results.md, \"Which tests are adjusted together\")."),
    key("report.family[].a", Ty::Str, "-", "The method label tested (required; a label of the sweep's runs)."),
    key("report.family[].b", Ty::Str, "-", "What `a` is compared with (required): `reference` or another method label of the sweep."),
    key("report.family[].task", Ty::Str, "-", "One task or data source; default: every task the two share."),
    key("report.equivalence_margin", POSITIVE, "-", "Equivalence margin D in reward units (`lpo report --equivalence-margin D` overrides): a paired TOST at 0.05 across seeds on every comparison with two or more seeds, printed \"equivalent within ±D\" or \"not shown\" with its p."),
    not_in_id(key("sweep", Ty::Section, "", "How the family expands into runs.")),
    key("sweep.grid", Ty::Axes, "{}", "Cartesian product: `\"dotted.key\" = [values]`."),
    key("sweep.zip", Ty::ZipAxes, "[]", "Axes that move together (equal lengths); a table, or an array of tables that cross each other."),
    key("sweep.seeds", Ty::Seeds, "[]", "Replicates: each run once per seed (overrides train.seed)."),
    key("sweep.exclude", Ty::Filters, "[]", "Drop runs matching every key of any entry, e.g. `{ \"loss.kind\" = \"dpo\" }`."),
];

/// The spec of a dotted path, if it is a key.
pub fn spec(path: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.path == path)
}

/// Keys a sweep may vary: every leaf outside `sweep`, except `extends`.
pub fn sweepable(path: &str) -> Option<&'static KeySpec> {
    spec(path).filter(|k| {
        !matches!(k.ty, Ty::Section)
            && !k.path.starts_with("sweep")
            && !k.path.contains("[]")
            && k.path != "extends"
    })
}

/// Names of the keys directly under `parent` ("" for the top level).
pub fn children(parent: &str) -> impl Iterator<Item = &'static str> + '_ {
    KEYS.iter().filter_map(move |k| {
        let rest = if parent.is_empty() {
            Some(k.path)
        } else {
            k.path.strip_prefix(parent)?.strip_prefix('.')
        };
        rest.filter(|r| !r.contains('.') && !r.contains("[]"))
    })
}

/// A problem found by [`check_table`], located by its key path segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Path segments to the key (array entries as `[i]`).
    pub path: Vec<String>,
    /// What is wrong.
    pub message: String,
    /// A suggestion.
    pub help: Option<String>,
}

fn problem(path: &[String], message: String, help: Option<String>) -> Problem {
    Problem {
        path: path.to_vec(),
        message,
        help,
    }
}

/// Checks one layer's table against [`KEYS`]: unknown keys, types, ranges, sweep axes.
pub fn check_table(table: &toml::Table) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_section("", table, &mut Vec::new(), &mut problems);
    problems
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

fn check_section(parent: &str, table: &toml::Table, at: &mut Vec<String>, out: &mut Vec<Problem>) {
    for (name, value) in table {
        at.push(name.clone());
        let path = join(parent, name);
        match spec(&path) {
            None => {
                let help = did_you_mean_key(parent, name);
                out.push(problem(at, format!("unknown key `{path}`"), help));
            }
            Some(spec) => check_value(spec, &path, value, at, out),
        }
        at.pop();
    }
}

fn did_you_mean_key(parent: &str, name: &str) -> Option<String> {
    crate::diag::did_you_mean(name, children(parent)).or_else(|| {
        // A key put in the wrong section: look for it everywhere.
        let leaves = KEYS
            .iter()
            .filter(|k| !k.path.contains("[]"))
            .map(|k| k.path);
        leaves
            .clone()
            .find(|p| p.rsplit('.').next() == Some(name))
            .map(|p| format!("did you mean `{p}`?"))
    })
}

fn check_value(
    spec: &KeySpec,
    path: &str,
    value: &Value,
    at: &mut Vec<String>,
    out: &mut Vec<Problem>,
) {
    match spec.ty {
        Ty::Section => match value.as_table() {
            Some(table) => check_section(path, table, at, out),
            None => out.push(problem(
                at,
                format!("`{path}` must be a table, found {}", describe(value)),
                None,
            )),
        },
        Ty::Sources | Ty::Tables => match value.as_array() {
            Some(entries) => {
                for (i, entry) in entries.iter().enumerate() {
                    at.push(format!("[{i}]"));
                    check_entry(path, entry, matches!(spec.ty, Ty::Sources), at, out);
                    at.pop();
                }
            }
            None => out.push(problem(
                at,
                format!(
                    "`{path}` must be an array of tables, found {}",
                    describe(value)
                ),
                None,
            )),
        },
        Ty::Axes => check_axes(path, value, at, out),
        Ty::ZipAxes => match value {
            Value::Array(groups) => {
                for (i, group) in groups.iter().enumerate() {
                    at.push(format!("[{i}]"));
                    check_axes(path, group, at, out);
                    at.pop();
                }
            }
            other => check_axes(path, other, at, out),
        },
        Ty::Seeds => match value.as_array() {
            Some(seeds) if seeds.iter().all(|s| s.as_integer().is_some_and(|s| s >= 0)) => {}
            _ => out.push(problem(
                at,
                format!("`{path}` must be an array of non-negative integers, found {value}"),
                None,
            )),
        },
        Ty::Filters => match value.as_array() {
            Some(filters) => {
                for (i, filter) in filters.iter().enumerate() {
                    at.push(format!("[{i}]"));
                    match filter.as_table() {
                        Some(table) => {
                            for (axis, wanted) in table {
                                at.push(axis.clone());
                                if let Some(axis_spec) = check_axis_name(axis, at, out) {
                                    if let Err(message) = leaf(axis_spec, wanted) {
                                        out.push(problem(
                                            at,
                                            format!("exclude filter on `{axis}`: {message}"),
                                            None,
                                        ));
                                    }
                                }
                                at.pop();
                            }
                        }
                        None => out.push(problem(
                            at,
                            format!(
                                "`{path}` entries must be tables, found {}",
                                describe(filter)
                            ),
                            None,
                        )),
                    }
                    at.pop();
                }
            }
            None => out.push(problem(
                at,
                format!(
                    "`{path}` must be an array of tables, found {}",
                    describe(value)
                ),
                None,
            )),
        },
        _ => {
            if let Err(message) = leaf(spec, value) {
                out.push(problem(at, format!("`{path}` {message}"), None));
            }
        }
    }
}

/// Checks one entry of an array-of-tables key; `source` adds the `data.mix`
/// rules (exactly one of task and path; a path needs a format).
fn check_entry(
    path: &str,
    entry: &Value,
    source: bool,
    at: &mut Vec<String>,
    out: &mut Vec<Problem>,
) {
    let Some(table) = entry.as_table() else {
        out.push(problem(
            at,
            format!("`{path}` entries must be tables, found {}", describe(entry)),
            None,
        ));
        return;
    };
    check_entry_fields(path, table, at, out);
    if !source {
        return;
    }
    match (table.get("task"), table.get("path"), table.get("format")) {
        (Some(_), Some(_), _) | (None, None, _) => out.push(problem(
            at,
            format!("a `{path}` entry needs exactly one of `task` or `path`"),
            None,
        )),
        (None, Some(_), None) => out.push(problem(
            at,
            format!("a `{path}` entry with `path` needs a `format`"),
            None,
        )),
        _ => {}
    }
}

/// Checks the fields of one entry of an array-of-tables key against the
/// `path[].field` keys.
fn check_entry_fields(
    path: &str,
    table: &toml::Table,
    at: &mut Vec<String>,
    out: &mut Vec<Problem>,
) {
    let prefix = format!("{path}[].");
    for (name, value) in table {
        at.push(name.clone());
        match spec(&format!("{prefix}{name}")) {
            None => {
                let names = KEYS
                    .iter()
                    .filter_map(|k| k.path.strip_prefix(prefix.as_str()))
                    .collect::<Vec<_>>();
                let help = crate::diag::did_you_mean(name, names.iter().copied());
                out.push(problem(
                    at,
                    format!("unknown key `{name}` in a `{path}` entry"),
                    help,
                ));
            }
            Some(spec) => {
                if let Err(message) = leaf(spec, value) {
                    out.push(problem(at, format!("`{path}.{name}` {message}"), None));
                }
            }
        }
        at.pop();
    }
}

fn check_axis_name(axis: &str, at: &[String], out: &mut Vec<Problem>) -> Option<&'static KeySpec> {
    let found = sweepable(axis);
    if found.is_none() {
        let help = crate::diag::did_you_mean(
            axis,
            KEYS.iter()
                .filter(|k| sweepable(k.path).is_some())
                .map(|k| k.path),
        );
        out.push(problem(
            at,
            format!("sweep axis `{axis}` is not a recipe key that can be swept"),
            help,
        ));
    }
    found
}

fn check_axes(path: &str, value: &Value, at: &mut Vec<String>, out: &mut Vec<Problem>) {
    let Some(table) = value.as_table() else {
        out.push(problem(
            at,
            format!(
                "`{path}` must be a table of `\"dotted.key\" = [values]`, found {}",
                describe(value)
            ),
            None,
        ));
        return;
    };
    for (axis, values) in table {
        at.push(axis.clone());
        if let Some(axis_spec) = check_axis_name(axis, at, out) {
            match values.as_array() {
                None => out.push(problem(
                    at,
                    format!("sweep axis `{axis}` must list its values in an array, found {values}"),
                    None,
                )),
                Some(list) if list.is_empty() => out.push(problem(
                    at,
                    format!("sweep axis `{axis}` has no values"),
                    None,
                )),
                Some(list) => {
                    for (i, v) in list.iter().enumerate() {
                        let result = if matches!(axis_spec.ty, Ty::Sources) {
                            let mut inner = Vec::new();
                            check_value(axis_spec, axis, v, &mut at.clone(), &mut inner);
                            inner.first().map_or(Ok(()), |p| Err(p.message.clone()))
                        } else {
                            leaf(axis_spec, v)
                        };
                        if let Err(message) = result {
                            out.push(problem(
                                at,
                                format!("sweep axis `{axis}` value {} {message}", i + 1),
                                None,
                            ));
                        }
                    }
                }
            }
        }
        at.pop();
    }
}

/// Why `s` cannot name a directory or file under the results directory.
fn name_problem(s: &str) -> Option<String> {
    let why = if s.is_empty() {
        "is empty"
    } else if s.contains(['/', '\\', '\0']) {
        "contains a path separator"
    } else if s.starts_with(['.', '_']) {
        "starts with `.` or `_`"
    } else {
        return None;
    };
    Some(format!(
        "is \"{}\", which {why}: it must be a single file name inside the results directory",
        s.escape_default()
    ))
}

/// Checks a leaf value against its spec; the error says what was found and what is allowed.
pub fn leaf(spec: &KeySpec, value: &Value) -> Result<(), String> {
    match spec.ty {
        Ty::Str | Ty::Path => value
            .as_str()
            .map(|_| ())
            .ok_or_else(|| format!("must be a string, found {}", describe(value))),
        Ty::Name => match value.as_str() {
            Some(s) => name_problem(s).map_or(Ok(()), Err),
            None => Err(format!("must be a string, found {}", describe(value))),
        },
        Ty::Bool => value
            .as_bool()
            .map(|_| ())
            .ok_or_else(|| format!("must be true or false, found {}", describe(value))),
        Ty::Int { min, max } => match value.as_integer() {
            Some(n) if (min..=max).contains(&n) => Ok(()),
            Some(n) => Err(format!("is {n}, outside the allowed range {min}..={max}")),
            None => Err(format!("must be an integer, found {}", describe(value))),
        },
        Ty::Float { min, max, open_min } => {
            let n = number(value)
                .ok_or_else(|| format!("must be a number, found {}", describe(value)))?;
            in_range(n, min, max, open_min)
        }
        Ty::EnumList(options) => {
            let items = value
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| format!("must be a non-empty array, found {}", describe(value)))?;
            let mut seen = Vec::new();
            for item in items {
                match item.as_str() {
                    Some(s) if seen.contains(&s) => return Err(format!("lists \"{s}\" twice")),
                    Some(s) if options.contains(&s) => seen.push(s),
                    _ => {
                        return Err(format!(
                            "has {}, expected each of {}",
                            describe(item),
                            list(options)
                        ))
                    }
                }
            }
            Ok(())
        }
        Ty::Objective => match value.as_array() {
            Some(parts) => objective_problem(spec, parts),
            None => leaf(&spec.with_ty(Ty::Enum(crate::losses::LOSS_NAMES)), value),
        },
        Ty::Enum(options) => match value.as_str() {
            Some(s) if options.contains(&s) => Ok(()),
            Some(s) => Err(format!(
                "is \"{s}\", expected one of {}{}",
                list(options),
                crate::diag::did_you_mean(s, options.iter().copied())
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default()
            )),
            None => Err(format!(
                "must be one of {}, found {}",
                list(options),
                describe(value)
            )),
        },
        Ty::Coef { min, open_min } => {
            // A table is a schedule: its own error (an unknown kind, a
            // missing field) says more than the untagged enum's.
            let coef: Coef = match value {
                Value::Table(_) => Coef::Schedule(value.clone().try_into().map_err(
                    |e: toml::de::Error| format!("is not a valid schedule table: {}", e.message()),
                )?),
                _ => value.clone().try_into().map_err(|e: toml::de::Error| {
                    format!("must be a number or a schedule table (kind = constant|linear|cosine|step|warmup): {}", e.message())
                })?,
            };
            if let Some(problem) = coef.problems().into_iter().next() {
                return Err(problem);
            }
            coef.extremes()
                .into_iter()
                .try_for_each(|v| in_range(v, min, f64::MAX, open_min))
        }
        Ty::Section
        | Ty::Sources
        | Ty::Tables
        | Ty::Axes
        | Ty::ZipAxes
        | Ty::Seeds
        | Ty::Filters => Ok(()),
    }
}

/// What is wrong with a weighted `loss.kind` list, if anything.
fn objective_problem(spec: &KeySpec, parts: &[Value]) -> Result<(), String> {
    let kinds = spec.with_ty(Ty::Enum(crate::losses::LOSS_NAMES));
    for (i, part) in parts.iter().enumerate() {
        let n = i + 1;
        let Some(table) = part.as_table() else {
            return Err(format!(
                "part {n} must be a table {{ kind = \"...\", weight = ... }}, found {}",
                describe(part)
            ));
        };
        if let Some(other) = table
            .keys()
            .find(|k| !["kind", "weight"].contains(&k.as_str()))
        {
            return Err(format!(
                "part {n} has the unknown field `{other}`: a part has `kind` and `weight`"
            ));
        }
        match table.get("kind") {
            None => return Err(format!("part {n} has no `kind`")),
            Some(kind) => leaf(&kinds, kind).map_err(|e| format!("part {n}'s kind {e}"))?,
        }
        if let Some(weight) = table.get("weight") {
            number(weight).ok_or_else(|| {
                format!(
                    "part {n}'s weight must be a number, found {}",
                    describe(weight)
                )
            })?;
        }
    }
    let objective: crate::losses::Objective =
        Value::Array(parts.to_vec())
            .try_into()
            .map_err(|e: toml::de::Error| {
                format!("is not a weighted list of kinds: {}", e.message())
            })?;
    match objective.problems().into_iter().next() {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

fn number(value: &Value) -> Option<f64> {
    value
        .as_float()
        .or_else(|| value.as_integer().map(|i| i as f64))
}

/// The largest magnitude a float key may take: the run computes in f32 (or
/// bf16, with the same exponent range), where anything larger is infinite
/// and the first step's loss or gradient NaN.
pub const F32_LIMIT: f64 = f32::MAX as f64;

fn in_range(n: f64, min: f64, max: f64, open_min: bool) -> Result<(), String> {
    let low_ok = if open_min { n > min } else { n >= min };
    // 1e308 as `1e308`, not its 309 digits; ordinary numbers as written.
    let n_text = if n != 0.0 && !(1e-6..1e16).contains(&n.abs()) {
        format!("{n:e}")
    } else {
        format!("{n}")
    };
    if n.is_finite() && low_ok && n <= max && n.abs() > F32_LIMIT {
        return Err(format!(
            "is {n_text}, beyond the f32 range (about 3.4e38) the run computes in"
        ));
    }
    if n.is_finite() && low_ok && n <= max {
        return Ok(());
    }
    let low = if open_min {
        format!("> {min}")
    } else {
        format!(">= {min}")
    };
    let high = if max < f64::MAX {
        format!(" and <= {max}")
    } else {
        String::new()
    };
    Err(format!("is {n_text}, but must be {low}{high}"))
}

fn list(options: &[&str]) -> String {
    options
        .iter()
        .map(|o| format!("\"{o}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A short description of a value for messages: its type and the value.
pub fn describe(value: &Value) -> String {
    let kind = match value {
        Value::String(_) => "string",
        Value::Integer(_) => "integer",
        Value::Float(_) => "float",
        Value::Boolean(_) => "boolean",
        Value::Datetime(_) => "datetime",
        Value::Array(_) => "array",
        Value::Table(_) => "table",
    };
    format!("{kind} {value}")
}

/// docs/recipes.md's key reference, generated from [`KEYS`].
pub fn reference_markdown() -> String {
    let mut out = String::from("| key | type | default | meaning |\n| --- | --- | --- | --- |\n");
    for k in KEYS.iter().filter(|k| !matches!(k.ty, Ty::Section)) {
        let doc = match k.role {
            Role::Computes => k.doc.to_string(),
            Role::NotInId => format!("{} Not part of run ids.", k.doc),
        };
        let ty = match k.ty {
            Ty::Str => "string".to_string(),
            Ty::Path => "path (relative to the recipe file)".to_string(),
            Ty::Name => "name (one path component)".to_string(),
            Ty::Bool => "bool".to_string(),
            Ty::Int { min, max } if max >= u32::MAX as i64 => format!("integer >= {min}"),
            Ty::Int { min, max } => format!("integer {min}..={max}"),
            Ty::Float { min, max, open_min } => {
                let low = if open_min {
                    format!("> {min}")
                } else {
                    format!(">= {min}")
                };
                if max < 1e300 {
                    format!("number {low}, <= {max}")
                } else {
                    format!("number {low}")
                }
            }
            Ty::Enum(options) => options.join(" \\| "),
            Ty::Objective => "loss kind, or array of { kind, weight }".to_string(),
            Ty::EnumList(options) => format!("list of {}", options.join(" \\| ")),
            Ty::Coef { min, open_min } => format!(
                "number or schedule, {} {min}",
                if open_min { ">" } else { ">=" }
            ),
            Ty::Sources | Ty::Tables => "array of tables".to_string(),
            Ty::Axes => "table of arrays".to_string(),
            Ty::ZipAxes => "table or array of tables".to_string(),
            Ty::Seeds => "array of integers".to_string(),
            Ty::Filters => "array of tables".to_string(),
            Ty::Section => unreachable!(),
        };
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            k.path, ty, k.default, doc
        ));
    }
    out.push_str(&format!(
        "\n### Loss kinds\n\nEvery kind reads {}; the table says what else. \
         docs/losses.md defines the first five, docs/trl-losses.md the TRL ones, \
         docs/listwise-losses.md LiPO-λ, PRO and RRHF.\n\n\
         `loss.kind` may also be a weighted sum of kinds, as TRL's `loss_weights` \
         (MPO: `[{{ kind = \"dpo\", weight = 0.8 }}, {{ kind = \"bco_pair\", weight = 0.2 }}, {{ kind = \"sft\" }}]`): \
         the loss is each part's per-prompt terms times its weight, summed, plus the supervised term, \
         averaged over the prompts where any of them contributes. A weighted sum needs a reference \
         when some part does, couples the batch when some part does, reads the keys its parts read, \
         and logs each part's loss per step in loss_parts.csv and under `loss_parts/` in TensorBoard \
         (docs/trl-losses.md).\n\n{}",
        crate::losses::EVERY_KIND_READS
            .iter()
            .map(|k| format!("`loss.{k}`"))
            .collect::<Vec<_>>()
            .join(", "),
        crate::losses::markdown()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Recipe;

    fn problems(text: &str) -> Vec<Problem> {
        check_table(&toml::from_str(text).unwrap())
    }

    #[test]
    fn a_valid_recipe_has_no_problems() {
        let p = problems(
            "name = \"x\"\n[model]\nsize = \"tiny\"\n[loss]\nkind = \"dpo\"\nbeta = { kind = \"linear\", from = 0.1, to = 0.5 }\n\
             [data]\nmix = [{ task = \"arith\", weight = 2 }, { path = \"a.jsonl\", format = \"native\" }]\n\
             [sweep]\ngrid = { \"loss.kind\" = [\"lpo\", \"dpo\"], \"train.learning_rate\" = [1e-4, 1] }\nseeds = [1, 2]\n\
             exclude = [{ \"loss.kind\" = \"dpo\" }]",
        );
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn unknown_keys_get_suggestions() {
        let p = problems("[train]\nlerning_rate = 1e-4\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].message, "unknown key `train.lerning_rate`");
        assert_eq!(p[0].help.as_deref(), Some("did you mean `learning_rate`?"));
        assert_eq!(p[0].path, vec!["train", "lerning_rate"]);
        let misplaced = problems("[model]\nbeta = 0.1\n");
        assert_eq!(
            misplaced[0].help.as_deref(),
            Some("did you mean `loss.beta`?")
        );
    }

    #[test]
    fn types_and_ranges_are_checked() {
        let p = problems(
            "[train]\nlearning_rate = \"fast\"\nsteps = 0\n[loss]\nkind = \"dop\"\nbeta = -1\n",
        );
        let messages: Vec<_> = p.iter().map(|p| p.message.as_str()).collect();
        assert!(
            messages.contains(&"`train.learning_rate` must be a number, found string \"fast\""),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("`train.steps` is 0, outside")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("(did you mean `dpo`?)")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("`loss.beta` is -1, but must be > 0")),
            "{messages:?}"
        );
    }

    #[test]
    fn floats_beyond_the_f32_range_are_refused() {
        // 1e308 is finite in f64 but infinite in f32: beta = 1e308 made the
        // first step's loss NaN instead of being refused.
        let p = problems(
            "[loss]\nbeta = 1e308\nalpha = { kind = \"step\", values = [1.0, 1e39], at = [3] }\n\
             [eval]\ntemperature = 3.5e38\n",
        );
        let messages: Vec<_> = p.iter().map(|p| p.message.as_str()).collect();
        for key in ["loss.beta", "loss.alpha", "eval.temperature"] {
            assert!(
                messages
                    .iter()
                    .any(|m| m.starts_with(&format!("`{key}` is"))
                        && m.ends_with("beyond the f32 range (about 3.4e38) the run computes in")),
                "{key}: {messages:?}"
            );
        }
        // The largest finite f32 itself is in range.
        assert!(problems("[loss]\nbeta = 3.4e38\n").is_empty());
    }

    #[test]
    fn absurd_sizes_are_load_errors_not_failed_allocations() {
        for (section, key) in [
            ("eval", "prompts"),
            ("data", "train_prompts"),
            ("train", "batch_size"),
            ("model", "vocab"),
            ("model", "max_len"),
            ("model", "layers"),
        ] {
            let p = problems(&format!("[{section}]\n{key} = 4000000000000\n"));
            assert!(
                p.len() == 1
                    && p[0].message.contains("outside the allowed range ")
                    && p[0].message.contains("..="),
                "{section}.{key}: {p:?}"
            );
        }
    }

    #[test]
    fn the_documented_mistral_7b_preset_can_be_selected() {
        let text = "[model]\nsize = \"mistral-7b\"\n";
        assert!(problems(text).is_empty());
        let recipe: crate::Recipe = toml::from_str(text).unwrap();
        assert_eq!(recipe.model.size, Some(crate::SizePreset::Mistral7b));
        assert_eq!(recipe.model.dims().layers, 32);
    }

    #[test]
    fn names_are_single_path_components() {
        for bad in [
            "../../../outside/x",
            "/abs",
            "",
            "a/b",
            "..",
            ".hidden",
            "_cache",
            "a\\b",
        ] {
            let text = format!("name = {bad:?}\n[[report.tables]]\nname = {bad:?}\n");
            let p = problems(&text);
            assert_eq!(p.len(), 2, "{bad:?}: {p:?}");
            assert!(
                p.iter().all(|p| p
                    .message
                    .contains("single file name inside the results directory")),
                "{p:?}"
            );
        }
        assert!(problems("name = \"my-sweep_2 (v1)\"\n").is_empty());
    }

    #[test]
    fn schedules_are_checked() {
        let p = problems("[loss]\nalpha = { kind = \"linear\", from = 1.0, too = 0.5 }\ngamma = { kind = \"step\", values = [1.0], at = [5] }\n");
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn sweep_axes_must_exist_and_type_check() {
        let p =
            problems("[sweep]\ngrid = { \"loss.betta\" = [0.1], \"train.steps\" = [\"many\"] }\n");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p
            .iter()
            .any(|p| p.message.contains("`loss.betta` is not a recipe key")
                && p.help.as_deref() == Some("did you mean `loss.beta`?")));
        assert!(p.iter().any(|p| p
            .message
            .contains("sweep axis `train.steps` value 1 must be an integer")));
    }

    #[test]
    fn data_sources_need_task_or_path() {
        let p = problems("[data]\nmix = [{ weight = 1 }, { path = \"x.jsonl\" }, { task = \"arith\", wieght = 1 }]\n");
        assert_eq!(p.len(), 3, "{p:?}");
    }

    #[test]
    fn every_serialized_default_key_is_documented_and_matches() {
        // The key table and the typed defaults must agree.
        let defaults = toml::Value::try_from(Recipe::default()).unwrap();
        fn walk(prefix: &str, value: &toml::Value, seen: &mut Vec<String>) {
            if let Some(table) = value.as_table() {
                for (k, v) in table {
                    let path = join(prefix, k);
                    let is_section = spec(&path).is_some_and(|s| s.ty == Ty::Section);
                    if is_section {
                        walk(&path, v, seen);
                    } else {
                        seen.push(path);
                    }
                }
            }
        }
        let mut seen = Vec::new();
        walk("", &defaults, &mut seen);
        for path in &seen {
            let spec = spec(path).unwrap_or_else(|| panic!("`{path}` is missing from KEYS"));
            if spec.default != "-"
                && spec.default != "preset"
                && !matches!(spec.ty, Ty::Sources | Ty::Tables)
            {
                let documented: toml::Value =
                    toml::from_str::<toml::Table>(&format!("v = {}", spec.default))
                        .map(|t| t["v"].clone())
                        .unwrap_or_else(|_| panic!("default of {path} is not TOML"));
                let mut actual = defaults.clone();
                for segment in path.split('.') {
                    actual = actual[segment].clone();
                }
                let same = match (number(&documented), number(&actual)) {
                    (Some(a), Some(b)) => a == b,
                    _ => documented == actual,
                };
                assert!(
                    same,
                    "{path}: KEYS says {documented}, Default says {actual}"
                );
            }
        }
        assert!(check_table(defaults.as_table().unwrap()).is_empty());
    }
}

#[cfg(test)]
mod docs_tests {
    /// docs/recipes.md carries the generated key reference between markers.
    #[test]
    fn docs_recipes_md_lists_every_key() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/recipes.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (begin, end) = ("<!-- keys:begin -->\n", "<!-- keys:end -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let expected = super::reference_markdown();
        if std::env::var_os("LPO_BLESS").is_some() {
            std::fs::write(
                &path,
                format!("{}{}{}", &doc[..start], expected, &doc[stop..]),
            )
            .unwrap();
            return;
        }
        assert_eq!(
            &doc[start..stop],
            expected,
            "docs/recipes.md is stale: run LPO_BLESS=1 cargo test -p lpo-recipe"
        );
    }
}
