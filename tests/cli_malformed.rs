//! The malformed-recipe table of issue 27's audit: recipes a hostile (or
//! hurried) user might write, each of which `lpo plan` must refuse with exit
//! status 2 and an error located at the `file:line:col` that causes it,
//! before anything runs or is written.
//!
//! Every row of [`CASES`] is one case: a short name, the recipe (written to
//! `r.toml` in the case's own scratch directory and planned as `lpo plan
//! r.toml` there), the other files it needs ([`Extra`]: an `extends` target,
//! a data file, a tokenizer or checkpoint directory, a FIFO), the location
//! an error line must end with (`at r.toml:4:1`, or followed by `; help`),
//! and a fragment of that same error line's message. The rows run in
//! parallel, each under a 30 s deadline; every broken row is reported in
//! one failure.
//!
//! To add a case, add a row in its category: `case(name, recipe, at, says)`,
//! or `Case { extra: &[File("base.toml", b"...")], ..case(...) }` when it
//! needs files beside the recipe. Locations are relative to the case's
//! directory (`r.toml:2:1`, `base.toml:3:1`); for a problem of two keys
//! the location is the key the message starts with (the other key's place
//! is in the message, which `says` may check). Each row must be a recipe
//! that is really wrong, not merely unusual.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Something a case needs beside its recipe `r.toml`.
enum Extra {
    /// A file with these bytes (its directories are created).
    File(&'static str, &'static [u8]),
    /// An empty directory.
    Dir(&'static str),
    /// A named pipe: reading it would wait forever for a writer.
    Fifo(&'static str),
}
use Extra::{Dir, Fifo, File};

/// One malformed recipe and the error it must give.
struct Case {
    /// Short name, also the case's scratch directory.
    name: &'static str,
    /// The recipe's bytes, written to `r.toml`.
    recipe: &'static [u8],
    /// The other files it needs.
    extra: &'static [Extra],
    /// `file:line:col` an error line must be located at.
    at: &'static str,
    /// A fragment of that error line.
    says: &'static str,
}

const fn case(
    name: &'static str,
    recipe: &'static [u8],
    at: &'static str,
    says: &'static str,
) -> Case {
    Case {
        name,
        recipe,
        extra: &[],
        at,
        says,
    }
}

/// The table: 128 malformed recipes.
#[rustfmt::skip]
const CASES: &[Case] = &[
    // TOML syntax: the parser's own position.
    case("toml-unterminated-string", b"name = \"x\n[train]\nsteps = 1\n", "r.toml:1:10", "invalid basic string"),
    case("toml-bad-table-header", b"name = \"x\"\n[train\nsteps = 1\n", "r.toml:2:7", "unclosed table"),
    case("toml-duplicate-key", b"[train]\nsteps = 1\nsteps = 2\n", "r.toml:3:1", "invalid TOML: duplicate key"),
    case("toml-inline-table-duplicate-key", b"[data]\nmix = [{ task = \"arith\", task = \"program\" }]\n", "r.toml:2:26", "invalid TOML: duplicate key"),
    case("toml-invalid-escape", b"description = \"a\\qb\"\n", "r.toml:1:18", "missing escaped value"),
    case("toml-number-underscore", b"[train]\nsteps = 1__0\n", "r.toml:2:10", "`_` may only go between digits"),
    case("toml-integer-overflow", b"[train]\nsteps = 99999999999999999999\n", "r.toml:2:9", "invalid TOML"),
    case("toml-bare-word-value", b"[loss]\nkind = dpo\n", "r.toml:2:8", "string values must be quoted"),
    case("toml-bad-time", b"description = 1979-05-27T25:00:00\n", "r.toml:1:15", "expected hour between 00 and 23"),
    case("toml-non-ascii-bare-key", b"[train]\nst\xc3\xa9ps = 10\n", "r.toml:2:3", "invalid unquoted key"),
    case("toml-not-utf8", b"name = \"x\"\ndescription = \"caf\xe9\"\n", "r.toml:2:19", "not UTF-8 text"),
    // Unknown keys, with suggestions.
    case("unknown-top-level-key", b"nmae = \"x\"\n", "r.toml:1:1", "unknown key `nmae` at r.toml:1:1; did you mean `name`?"),
    case("unknown-nested-key", b"name = \"x\"\n[train]\nsteps = 10\nlerning_rate = 1e-4\n", "r.toml:4:1", "did you mean `learning_rate`?"),
    case("unknown-key-in-wrong-section", b"[model]\nbeta = 0.1\n", "r.toml:2:1", "unknown key `model.beta` at r.toml:2:1; did you mean `loss.beta`?"),
    case("unknown-section", b"[trainer]\nsteps = 1\n", "r.toml:1:2", "unknown key `trainer` at r.toml:1:2; did you mean `train`?"),
    case("unknown-mix-entry-key", b"[data]\nmix = [{ task = \"arith\", wieght = 2.0 }]\n", "r.toml:2:26", "unknown key `wieght` in a `data.mix` entry"),
    case("unknown-quoted-dotted-key", b"\"train.steps\" = 5\n", "r.toml:1:1", "unknown field: found `train.steps`"),
    // Wrong types, one of each type class.
    case("type-string-for-integer", b"[train]\nsteps = \"many\"\n", "r.toml:2:1", "`train.steps` must be an integer, found string \"many\""),
    case("type-string-for-float", b"[train]\nlearning_rate = \"fast\"\n", "r.toml:2:1", "must be a number, found string \"fast\""),
    case("type-string-for-bool", b"[loss]\nmargin_weight = \"yes\"\n", "r.toml:2:1", "`loss.margin_weight` must be true or false"),
    case("type-integer-for-enum", b"[loss]\nkind = 3\n", "r.toml:2:1", "`loss.kind` must be one of"),
    case("type-enum-list-unknown-item", b"[model.lora]\ntargets = [\"q_proj\", \"qproj\"]\n", "r.toml:2:1", "has string \"qproj\", expected each of"),
    case("type-integer-for-path", b"extends = 3\n", "r.toml:1:1", "`extends` must be a string, found integer 3"),
    case("type-integer-for-name", b"name = 5\n", "r.toml:1:1", "`name` must be a string"),
    case("type-array-for-string", b"description = [\"a\"]\n", "r.toml:1:1", "`description` must be a string, found array"),
    case("type-integer-for-section", b"train = 5\n", "r.toml:1:1", "`train` must be a table, found integer 5"),
    case("type-string-for-mix", b"[data]\nmix = \"arith\"\n", "r.toml:2:1", "`data.mix` must be an array of tables"),
    case("type-table-for-report-tables", b"[report]\ntables = { name = \"main\" }\n", "r.toml:2:1", "`report.tables` must be an array of tables"),
    case("type-string-for-schedule", b"[loss]\nbeta = \"high\"\n", "r.toml:2:1", "`loss.beta` must be a number or a schedule table"),
    // Out of range: integers, floats, the f32 range, NaN and infinity.
    case("range-list-size-above", b"[data]\nlist_size = 65\n", "r.toml:2:1", "`data.list_size` is 65, outside the allowed range 2..=64"),
    case("range-steps-zero", b"[train]\nsteps = 0\n", "r.toml:2:1", "`train.steps` is 0, outside"),
    case("range-seed-negative", b"[train]\nseed = -1\n", "r.toml:2:1", "`train.seed` is -1, outside"),
    case("type-string-for-reproducible", b"[train]\nreproducible = \"yes\"\n", "r.toml:2:1", "`train.reproducible` must be true or false, found string \"yes\""),
    case("type-number-for-packed", b"[train]\npacked = 1\n", "r.toml:2:1", "`train.packed` must be true or false, found integer 1"),
    case("reproducible-on-cuda", b"[train]\nreproducible = true\ndevice = \"cuda\"\n", "r.toml:2:1", "`train.reproducible` is true, but train.device is \"cuda\""),
    case("range-equivalence-margin-negative", b"[report]\nequivalence_margin = -1\n", "r.toml:2:1", "`report.equivalence_margin` is -1, but must be > 0"),
    case("family-method-against-itself", b"[report]\nfamily = [{ a = \"lpo\", b = \"lpo\" }]\n", "r.toml:2:24", "`report.family[0].b` is \"lpo\", the same method as `a`"),
    case("range-layers-absurd", b"[model]\nlayers = 4000000000000\n", "r.toml:2:1", "`model.layers` is 4000000000000, outside the allowed range 1..=1024"),
    case("range-learning-rate-zero", b"[train]\nlearning_rate = 0.0\n", "r.toml:2:1", "`train.learning_rate` is 0, but must be > 0"),
    case("range-eval-fraction-above", b"[data]\neval_fraction = 0.95\n", "r.toml:2:1", "`data.eval_fraction` is 0.95, but must be >= 0 and <= 0.9"),
    case("range-beta-negative", b"[loss]\nbeta = -0.1\n", "r.toml:2:1", "`loss.beta` is -0.1, but must be > 0"),
    case("range-beta-beyond-f32", b"[loss]\nbeta = 1e308\n", "r.toml:2:1", "`loss.beta` is 1e308, beyond the f32 range (about 3.4e38)"),
    case("range-rope-theta-beyond-f32", b"[model]\nrope_theta = 1e39\n", "r.toml:2:1", "`model.rope_theta` is 1e39, beyond the f32 range"),
    case("range-temperature-inf", b"[eval]\ntemperature = inf\n", "r.toml:2:1", "`eval.temperature` is inf, but must be > 0"),
    case("range-mix-weight-zero", b"[data]\nmix = [{ task = \"arith\", weight = 0 }]\n", "r.toml:2:26", "`data.mix.weight` is 0, but must be > 0"),
    // Enum typos.
    case("enum-loss-kind", b"[loss]\nkind = \"dop\"\n", "r.toml:2:1", "`loss.kind` is \"dop\", expected one of \"lpo\", \"dpo\", "),
    case("enum-model-size", b"[model]\nsize = \"nanoo\"\n", "r.toml:2:1", "(did you mean `nano`?)"),
    case("enum-mix-task", b"[data]\nmix = [{ task = \"arithmetic\" }]\n", "r.toml:2:10", "`data.mix.task` is \"arithmetic\", expected one of \"arith\", \"program\", \"rating\""),
    Case { extra: &[File("d.jsonl", b"{}\n")], ..case("enum-mix-format", b"[data]\nmix = [{ path = \"d.jsonl\", format = \"jsonl\" }]\n", "r.toml:2:28", "`data.mix.format` is \"jsonl\"") },
    // Coefficient schedules.
    case("schedule-unknown-kind", b"[loss]\nbeta = { kind = \"exp\", from = 1.0, to = 0.1 }\n", "r.toml:2:1", "`loss.beta` is not a valid schedule table: unknown variant `exp`"),
    case("schedule-missing-field", b"[loss]\nalpha = { kind = \"linear\", from = 1.0 }\n", "r.toml:2:1", "`loss.alpha` is not a valid schedule table: missing field `to`"),
    case("schedule-at-not-increasing", b"[loss]\ngamma = { kind = \"step\", values = [0.0, 0.5, 1.0], at = [50, 50] }\n", "r.toml:2:1", "`loss.gamma` step boundaries `at` must increase strictly"),
    case("schedule-lengths-differ", b"[loss]\ngamma = { kind = \"step\", values = [0.0, 0.5], at = [10, 20] }\n", "r.toml:2:1", "needs one more value than boundaries (values has 2, at has 2)"),
    case("schedule-nan", b"[loss]\nsft_weight = { kind = \"step\", values = [0.0, nan], at = [10] }\n", "r.toml:2:1", "`loss.sft_weight` schedule values must be finite"),
    case("schedule-negative-value", b"[loss]\nbeta = { kind = \"cosine\", from = 0.5, to = -0.1 }\n", "r.toml:2:1", "`loss.beta` is -0.1, but must be > 0"),
    case("schedule-beyond-f32", b"[loss]\nalpha = { kind = \"constant\", value = 1e39 }\n", "r.toml:2:1", "`loss.alpha` is 1e39, beyond the f32 range"),
    // Sweeps: axes, zip groups, exclusions, seeds, runs an axis breaks.
    case("sweep-unknown-axis", b"[sweep]\ngrid = { \"loss.temperature\" = [0.5, 1.0] }\n", "r.toml:2:10", "sweep axis `loss.temperature` is not a recipe key that can be swept"),
    case("sweep-empty-axis", b"[sweep]\ngrid = { \"loss.kind\" = [] }\n", "r.toml:2:10", "sweep axis `loss.kind` has no values"),
    case("sweep-axis-not-an-array", b"[sweep]\ngrid = { \"loss.kind\" = \"dpo\" }\n", "r.toml:2:10", "must list its values in an array, found \"dpo\""),
    case("sweep-axis-value-type", b"[sweep]\ngrid = { \"train.steps\" = [10, \"many\"] }\n", "r.toml:2:10", "sweep axis `train.steps` value 2 must be an integer"),
    case("sweep-axis-mix-not-tables", b"[sweep]\ngrid = { \"data.mix\" = [\"arith\"] }\n", "r.toml:2:10", "sweep axis `data.mix` value 1 `data.mix` must be an array of tables"),
    case("sweep-grid-not-a-table", b"[sweep]\ngrid = [\"loss.kind\"]\n", "r.toml:2:1", "`sweep.grid` must be a table"),
    case("sweep-zip-lengths-differ", b"[sweep.zip]\nlabel = [\"a\", \"b\", \"c\"]\n\"loss.kind\" = [\"lpo\", \"dpo\"]\n", "r.toml:1:8", "`sweep.zip[0]` axes must have equal lengths: label (3), loss.kind (2)"),
    case("sweep-second-zip-lengths-differ", b"[[sweep.zip]]\nlabel = [\"a\", \"b\"]\n\"loss.kind\" = [\"lpo\", \"dpo\"]\n[[sweep.zip]]\n\"train.seed\" = [1, 2]\n\"train.steps\" = [10]\n", "r.toml:4:1", "`sweep.zip[1]` axes must have equal lengths"),
    case("sweep-key-on-grid-and-zip", b"[sweep]\ngrid = { \"loss.kind\" = [\"lpo\", \"dpo\"] }\nzip = { \"loss.kind\" = [\"dpo\", \"lpo\"], label = [\"a\", \"b\"] }\n", "r.toml:3:1", "sweeps `loss.kind`, which sweep.grid sweeps already"),
    case("sweep-key-in-two-zips", b"[[sweep.zip]]\n\"loss.kind\" = [\"lpo\", \"dpo\"]\n[[sweep.zip]]\n\"loss.kind\" = [\"nca\", \"dpo\"]\n", "r.toml:3:1", "`sweep.zip[1]` sweeps `loss.kind`, which sweep.zip[0] sweeps already"),
    case("sweep-exclude-unknown-key", b"[sweep]\ngrid = { \"loss.kind\" = [\"lpo\", \"dpo\"] }\nexclude = [{ \"loss.knd\" = \"dpo\" }]\n", "r.toml:3:14", "sweep axis `loss.knd` is not a recipe key that can be swept"),
    case("sweep-exclude-value-type", b"[sweep]\ngrid = { \"loss.kind\" = [\"lpo\", \"dpo\"] }\nexclude = [{ \"train.steps\" = \"ten\" }]\n", "r.toml:3:14", "exclude filter on `train.steps`: must be an integer"),
    case("sweep-exclude-removes-every-run", b"[sweep]\ngrid = { \"loss.kind\" = [\"lpo\", \"dpo\"] }\nexclude = [{ \"loss.kind\" = \"lpo\" }, { \"loss.kind\" = \"dpo\" }]\n", "r.toml:3:1", "removes every one of the sweep's 2 combinations"),
    case("sweep-duplicate-seeds", b"[sweep]\nseeds = [1, 2, 1]\n", "r.toml:2:1", "`sweep.seeds` lists the seed 1 twice"),
    case("sweep-negative-seed", b"[sweep]\nseeds = [0, -1]\n", "r.toml:2:1", "`sweep.seeds` must be an array of non-negative integers, found [0, -1]"),
    case("sweep-axis-breaks-grad-accum", b"[train]\nbatch_size = 8\n[sweep]\ngrid = { \"train.grad_accum\" = [1, 3] }\n", "r.toml:4:10", "run [train.grad_accum=3]: `train.grad_accum` is 3, but must divide train.batch_size (8)"),
    case("sweep-axis-breaks-default-key", b"[sweep]\ngrid = { \"model.max_len\" = [16, 256] }\n", "r.toml:2:10", "run [model.max_len=16]: `eval.max_new_tokens` is 32, but must be below model.max_len (16)"),
    case("sweep-axis-breaks-greedy", b"[eval]\nsamples = 4\n[sweep]\ngrid = { \"eval.decoding\" = [\"sample\", \"greedy\"] }\n", "r.toml:2:1", "run [eval.decoding=\"greedy\"]: `eval.samples` is 4, but greedy decoding gives one response"),
    case("sweep-axis-empty-label", b"[sweep]\ngrid = { label = [\"a\", \"\"] }\n", "r.toml:2:10", "run [label=\"\"]: `label` is empty"),
    case("sweep-axis-escaping-table-name", b"[sweep]\ngrid = { \"report.tables\" = [[{ name = \"../x\" }]] }\n", "r.toml:2:10", "`report.tables[0].name` is \"../x\", which contains a path separator"),
    case("sweep-axis-missing-data-file", b"[sweep]\ngrid = { \"data.mix\" = [[{ task = \"arith\" }], [{ path = \"none.jsonl\", format = \"native\" }]] }\n", "r.toml:2:10", "`data.mix[0].path`: none.jsonl does not exist"),
    case("sweep-axis-unknown-baseline", b"[sweep]\ngrid = { \"eval.baseline\" = [\"reference\", \"nobody\"] }\n", "r.toml:2:10", "`eval.baseline` is \"nobody\" in run"),
    // extends.
    case("extends-missing-file", b"extends = \"base.toml\"\nname = \"x\"\n", "r.toml:1:1", "cannot read the recipe `extends` names: failed to read `base.toml`"),
    case("extends-itself", b"extends = \"r.toml\"\nname = \"x\"\n", "r.toml:1:1", "`extends` forms a cycle"),
    Case { extra: &[File("a.toml", b"name = \"a\"\nextends = \"r.toml\"\n")], ..case("extends-cycle", b"name = \"x\"\nextends = \"a.toml\"\n", "a.toml:2:1", "`extends` forms a cycle") },
    Case { extra: &[Dir("base")], ..case("extends-directory", b"extends = \"base\"\nname = \"x\"\n", "r.toml:1:1", "failed to read `base`: not a regular file") },
    case("extends-dev-zero", b"extends = \"/dev/zero\"\nname = \"x\"\n", "r.toml:1:1", "failed to read `/dev/zero`: not a regular file"),
    Case { extra: &[Fifo("fifo.toml")], ..case("extends-fifo", b"extends = \"fifo.toml\"\nname = \"x\"\n", "r.toml:1:1", "failed to read `fifo.toml`: not a regular file") },
    Case { extra: &[File("base.toml", b"[train]\nsteps = = 3\n")], ..case("extends-base-syntax-error", b"extends = \"base.toml\"\nname = \"x\"\n", "base.toml:2:9", "invalid TOML") },
    Case { extra: &[File("base.toml", b"name = \"b\"\n[train]\nstpes = 3\n")], ..case("extends-base-unknown-key", b"extends = \"base.toml\"\nname = \"x\"\n", "base.toml:3:1", "unknown key `train.stpes`") },
    Case { extra: &[File("base.toml", b"\n")], ..case("extends-empty-base", b"extends = \"base.toml\"\nname = \"x\"\n", "base.toml:1:1", "the recipe sets no key") },
    Case { extra: &[File("base.toml", b"[model]\nheads = 4\n")], ..case("extends-cross-file-conflict", b"extends = \"base.toml\"\n[model]\nkv_heads = 3\n", "r.toml:3:1", "`model.kv_heads` heads 4 is not divisible by kv_heads 3 (`model.heads` at base.toml:2:1)") },
    // data.mix and files.
    case("mix-empty", b"[data]\nmix = []\n", "r.toml:2:1", "`data.mix` needs at least one source"),
    case("mix-missing-file", b"[data]\nmix = [{ path = \"no/such.jsonl\", format = \"native\" }]\n", "r.toml:2:10", "`data.mix[0].path`: no/such.jsonl does not exist"),
    Case { extra: &[File("d.jsonl", b"{}\n")], ..case("mix-task-and-path", b"[data]\nmix = [{ task = \"arith\", path = \"d.jsonl\", format = \"native\" }]\n", "r.toml:2:8", "needs exactly one of `task` or `path`") },
    Case { extra: &[File("d.jsonl", b"{}\n")], ..case("mix-path-without-format", b"[data]\nmix = [{ path = \"d.jsonl\" }]\n", "r.toml:2:8", "a `data.mix` entry with `path` needs a `format`") },
    Case { extra: &[File("ds/train.jsonl", b"{}\n")], ..case("mix-dataset-directory-without-split", b"[data]\ntrain_prompts = 0\nmix = [{ path = \"ds\", format = \"trl\" }]\n", "r.toml:3:10", "ds is a dataset directory: name the split to read (`split`)") },
    case("mix-split-without-path", b"[data]\nmix = [{ task = \"arith\", split = \"train\" }]\n", "r.toml:2:26", "`data.mix[0].split` needs a `path`"),
    Case { extra: &[Dir("ds")], ..case("mix-eval-split-without-split", b"[data]\nmix = [{ path = \"ds\", eval_split = \"test\", format = \"trl\" }]\n", "r.toml:2:23", "`data.mix[0].eval_split` needs `split` too") },
    Case { extra: &[Dir("ds")], ..case("mix-eval-split-is-the-split", b"[data]\nmix = [{ path = \"ds\", split = \"train\", eval_split = \"train\", format = \"trl\" }]\n", "r.toml:2:40", "the training split itself") },
    Case { extra: &[File("p.jsonl", b"{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n")], ..case("mix-prompt-format-without-reward", b"[data]\nmix = [{ path = \"p.jsonl\", format = \"gsm8k\" }]\n", "r.toml:2:8", "`data.mix[0].reward` is missing") },
    case("mix-reward-on-a-task", b"[data]\nmix = [{ task = \"arith\", reward = \"math\" }]\n", "r.toml:2:26", "a built-in task has its own reward"),
    Case { extra: &[File("d.jsonl", b"{}\n")], ..case("mix-reward-on-scored-file", b"[data]\nmix = [{ path = \"d.jsonl\", format = \"native\", reward = \"math\" }]\n", "r.toml:2:47", "the source's format holds scored responses") },
    Case { extra: &[File("p.jsonl", b"{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n")], ..case("mix-reward-without-checkpoint", b"[data]\nmix = [{ path = \"p.jsonl\", format = \"gsm8k\", reward = \"math\" }]\n", "r.toml:2:46", "is set, but reference.checkpoint is not") },
    Case { extra: &[File("p.jsonl", b"{\"prompt\": \"hi\"}\n"), Dir("ckpt")], ..case("mix-model-reward-without-model", b"[reference]\ncheckpoint = \"ckpt\"\n[data]\nmix = [{ path = \"p.jsonl\", format = \"prompts\", reward = \"model\" }]\n", "r.toml:4:48", "is \"model\", but reward.model names no reward model") },
    Case { extra: &[File("p.jsonl", b"{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n"), Dir("ckpt")], ..case("mix-prompt-file-twice", b"[reference]\ncheckpoint = \"ckpt\"\n[data]\nmix = [\n  { path = \"p.jsonl\", format = \"gsm8k\", reward = \"math\" },\n  { path = \"p.jsonl\", format = \"gsm8k\", reward = \"math\" },\n]\n", "r.toml:6:5", "`data.mix[1].path` names the same prompt file as data.mix[0]") },
    case("mix-train-prompts-zero-with-task", b"[data]\ntrain_prompts = 0\n", "r.toml:2:1", "which has no fixed set of records"),
    Case { extra: &[File("d.jsonl", b"{}\n")], ..case("rounds-with-scored-file", b"[train]\nrounds = 2\n[data]\nmix = [{ path = \"d.jsonl\", format = \"native\" }]\n", "r.toml:2:1", "`train.rounds` is 2, but on-policy rounds score new responses") },
    case("tokenizer-missing-file", b"[data]\ntokenizer = \"tok/tokenizer.json\"\n", "r.toml:2:1", "`data.tokenizer`: tok/tokenizer.json does not exist"),
    Case { extra: &[Dir("tok")], ..case("tokenizer-directory-without-json", b"[data]\ntokenizer = \"tok\"\n", "r.toml:2:1", "`data.tokenizer`: the directory tok has no tokenizer.json") },
    case("eos-token-without-tokenizer", b"[data]\neos_token = \"</s>\"\n", "r.toml:2:1", "`data.eos_token` names a token of a tokenizer.json"),
    case("checkpoint-missing", b"[reference]\ncheckpoint = \"no-such-ckpt\"\n", "r.toml:2:1", "failed to read `no-such-ckpt/config.json`"),
    Case { extra: &[File("ckpt/config.json", b"{")], ..case("checkpoint-config-not-json", b"[reference]\ncheckpoint = \"ckpt\"\n", "r.toml:2:1", "in `ckpt/config.json`: EOF while parsing") },
    case("reward-model-missing", b"[reward]\nmodel = \"rm\"\n", "r.toml:2:1", "`reward.model`: rm does not exist"),
    // Model and training: cross-key rules.
    case("model-heads-do-not-divide-d-model", b"[model]\nd_model = 64\nheads = 3\n", "r.toml:3:1", "`model.heads` d_model 64 is not divisible by heads 3 (`model.d_model` at r.toml:2:1)"),
    case("model-kv-heads-do-not-divide-heads", b"[model]\nheads = 4\nkv_heads = 3\n", "r.toml:3:1", "heads 4 is not divisible by kv_heads 3 (`model.heads` at r.toml:2:1)"),
    case("model-odd-head-width", b"[model]\nd_model = 36\nheads = 4\n", "r.toml:3:1", "head width 9 must be even for rotary embeddings"),
    case("model-max-new-tokens-fill-max-len", b"[model]\nmax_len = 32\n[eval]\nmax_new_tokens = 32\n", "r.toml:4:1", "`eval.max_new_tokens` is 32, but must be below model.max_len (32)"),
    case("model-lora-dropout-with-checkpointing", b"[model.lora]\nrank = 4\ndropout = 0.1\n[train]\nactivation_checkpointing = true\n", "r.toml:3:1", "would draw other dropout masks"),
    case("model-lora-dense-target-on-experts", b"[model]\nexperts = 4\n[model.lora]\nrank = 4\ntargets = [\"q_proj\", \"down_proj\"]\n", "r.toml:5:1", "sparse (mixture-of-experts) blocks do not have"),
    case("model-lora-expert-target-on-dense", b"[model.lora]\nrank = 4\ntargets = [\"w2\"]\n", "r.toml:3:1", "dense blocks do not have"),
    case("model-lora-w1-without-w3", b"[model]\nexperts = 4\n[model.lora]\nrank = 4\ntargets = [\"w1\", \"gate\"]\n", "r.toml:5:1", "without the other"),
    case("model-experts-per-token-above-experts", b"[model]\nexperts = 2\nexperts_per_token = 3\n", "r.toml:3:1", "between 1 and model.experts (2)"),
    case("model-experts-per-token-without-experts", b"[model]\nexperts_per_token = 2\n", "r.toml:2:1", "has no experts"),
    case("model-router-aux-on-dense", b"[model]\nrouter_aux_loss_coef = 0.01\n", "r.toml:2:1", "no experts to route to"),
    case("model-router-aux-with-checkpointing", b"[model]\nexperts = 4\nrouter_aux_loss_coef = 0.01\n[train]\nactivation_checkpointing = true\n", "r.toml:3:1", "does not carry the router's loss"),
    case("model-router-aux-negative", b"[model]\nrouter_aux_loss_coef = -1.0\n", "r.toml:2:1", ">= 0"),
    case("loss-kind-trl-name-for-dpo", b"[loss]\nkind = \"sigmoid\"\n", "r.toml:2:1", "`loss.kind` is \"sigmoid\", expected one of"),
    case("loss-label-smoothing-half", b"[loss]\nkind = \"robust\"\nlabel_smoothing = 0.5\n", "r.toml:3:1", "`loss.label_smoothing` is 0.5, but must be >= 0 and <= 0.499"),
    case("loss-exo-epsilon-zero", b"[loss]\nkind = \"exo_pair\"\nexo_epsilon = 0\n", "r.toml:3:1", "`loss.exo_epsilon` is 0, but must be > 0"),
    case("loss-discopop-tau-string", b"[loss]\ndiscopop_tau = \"cold\"\n", "r.toml:2:1", "`loss.discopop_tau` must be a number"),
    case("loss-kind-empty-list", b"[loss]\nkind = []\n", "r.toml:2:1", "`loss.kind` is an empty list"),
    case("loss-kind-part-not-a-table", b"[loss]\nkind = [\"dpo\", \"ipo\"]\n", "r.toml:2:1", "`loss.kind` part 1 must be a table"),
    case("loss-kind-part-unknown-kind", b"[loss]\nkind = [{ kind = \"dop\", weight = 1 }]\n", "r.toml:2:1", "part 1's kind is \"dop\", expected one of"),
    case("loss-kind-part-without-kind", b"[loss]\nkind = [{ weight = 1 }]\n", "r.toml:2:1", "`loss.kind` part 1 has no `kind`"),
    case("loss-kind-part-unknown-field", b"[loss]\nkind = [{ kind = \"dpo\", wieght = 1 }]\n", "r.toml:2:1", "part 1 has the unknown field `wieght`"),
    case("loss-kind-part-weight-string", b"[loss]\nkind = [{ kind = \"dpo\", weight = \"high\" }]\n", "r.toml:2:1", "part 1's weight must be a number"),
    case("loss-kind-part-weight-zero", b"[loss]\nkind = [{ kind = \"dpo\", weight = 0 }]\n", "r.toml:2:1", "weights must be finite, > 0"),
    case("loss-kind-part-weight-negative", b"[loss]\nkind = [{ kind = \"dpo\", weight = 0.8 }, { kind = \"ipo\", weight = -0.2 }]\n", "r.toml:2:1", "gives \"ipo\" the weight -0.2"),
    case("loss-kind-part-weight-beyond-f32", b"[loss]\nkind = [{ kind = \"dpo\", weight = 1e39 }]\n", "r.toml:2:1", "within f32's range"),
    case("loss-kind-part-twice", b"[loss]\nkind = [{ kind = \"dpo\" }, { kind = \"dpo\", weight = 2 }]\n", "r.toml:2:1", "lists \"dpo\" twice"),
    case("loss-kind-weighted-batch-part-with-grad-accum", b"[loss]\nkind = [{ kind = \"dpo\" }, { kind = \"sft\" }]\n[train]\nbatch_size = 8\ngrad_accum = 2\n", "r.toml:5:1", "loss.kind's part \"sft\" couples the prompts of a batch"),
    case("loss-kind-sweep-value-with-bad-part", b"[sweep]\ngrid = { \"loss.kind\" = [\"dpo\", [{ kind = \"ipo\", weight = 0 }]] }\n", "r.toml:2:10", "sweep axis `loss.kind` value 2 gives \"ipo\" the weight 0"),
    case("tracking-mlflow-file-uri", b"[tracking]\nmlflow = \"file:///tmp/mlruns\"\n", "r.toml:2:1", "lpo logs to an MLflow tracking server over http:// or https://"),
    case("tracking-mlflow-credentials-in-uri", b"[tracking]\nmlflow = \"https://me:secret@mlflow.example.org\"\n", "r.toml:2:1", "holds credentials: set MLFLOW_TRACKING_TOKEN"),
    case("tracking-mlflow-no-host", b"[tracking]\nmlflow = \"http://\"\n", "r.toml:2:1", "which names no host"),
    case("tracking-mlflow-not-a-string", b"[tracking]\nmlflow = 5000\n", "r.toml:2:1", "`tracking.mlflow` must be a string"),
    case("tracking-mlflow-shell-metacharacters", b"[tracking]\nmlflow = \"http://h/$(touch pwned; echo)\"\n", "r.toml:2:1", "holds a space or a control character"),
    case("tracking-unknown-key", b"[tracking]\nwandb = \"x\"\n", "r.toml:2:1", "unknown key `tracking.wandb`"),
    case("tracking-experiment-empty", b"[tracking]\nexperiment = \" \"\n", "r.toml:2:1", "`tracking.experiment` is empty"),
    case("loss-simpo-gamma-negative", b"[loss]\nkind = \"simpo\"\nsimpo_gamma = -1\n", "r.toml:3:1", "`loss.simpo_gamma` is -1, but must be >= 0"),
    case("train-grad-accum-with-a-batch-coupled-loss", b"[loss]\nkind = \"aot\"\n[train]\nbatch_size = 8\ngrad_accum = 2\n", "r.toml:5:1", "loss.kind = \"aot\" couples the prompts of a batch"),
    case("train-grad-accum-does-not-divide", b"[train]\nbatch_size = 8\ngrad_accum = 3\n", "r.toml:3:1", "`train.grad_accum` is 3, but must divide train.batch_size (8)"),
    case("eval-greedy-with-default-samples", b"[eval]\ndecoding = \"greedy\"\n", "r.toml:2:1", "`eval.samples` is 8, but greedy decoding gives one response"),
    case("eval-more-prompts-than-the-task-has", b"[eval]\nprompts = 14751\n", "r.toml:2:1", "`eval.prompts` asks for 7375 evaluation arith prompts from the task's test part"),
    case("data-held-out-more-than-the-task-has", b"[data]\ntrain_prompts = 14000\neval_fraction = 0.9\n", "r.toml:3:1", "`data.eval_fraction` asks for 6300 held-out list arith prompts from the task's test part"),
    // Names, labels, report tables, baselines, empty files.
    case("label-empty", b"label = \"\"\n", "r.toml:1:1", "`label` is empty"),
    case("name-empty", b"name = \"\"\n", "r.toml:1:1", "`name` is \"\", which is empty"),
    case("name-parent-directory", b"name = \"../x\"\n", "r.toml:1:1", "`name` is \"../x\", which contains a path separator"),
    case("name-absolute", b"name = \"/abs\"\n", "r.toml:1:1", "`name` is \"/abs\", which contains a path separator"),
    case("name-hidden", b"name = \".hidden\"\n", "r.toml:1:1", "`name` is \".hidden\", which starts with `.` or `_`"),
    case("report-table-name-escapes", b"[[report.tables]]\nname = \"../../x\"\n", "r.toml:2:1", "`report.tables.name` is \"../../x\", which contains a path separator"),
    case("report-table-without-name", b"[[report.tables]]\nmetric = \"reward\"\n", "r.toml:1:1", "`report.tables.0`: missing field `name`"),
    case("report-tables-share-a-name", b"[[report.tables]]\nname = \"main\"\n[[report.tables]]\nname = \"main\"\n", "r.toml:4:1", "`report.tables[1].name` is \"main\", the name of report.tables[0] too"),
    case("baseline-unknown-label", b"[eval]\nbaseline = \"dpoo\"\n[sweep]\ngrid = { \"loss.kind\" = [\"lpo\", \"dpo\"] }\n", "r.toml:2:1", "`eval.baseline` is \"dpoo\" in run"),
    case("baseline-with-trailing-space", b"[eval]\nbaseline = \"reference \"\n", "r.toml:2:1", "`eval.baseline` is \"reference \" in run"),
    case("baseline-is-the-run-itself", b"label = \"mine\"\n[eval]\nbaseline = \"mine\"\n", "r.toml:3:1", "its own label, and no other run compares with it"),
    case("baseline-label-on-two-runs", b"label = \"x\"\n[eval]\nbaseline = \"y\"\n[sweep.zip]\nlabel = [\"y\", \"y\", \"z\"]\n\"loss.kind\" = [\"lpo\", \"dpo\", \"nca\"]\n", "r.toml:3:1", "make labels distinct"),
    case("empty-file", b"", "r.toml:1:1", "the recipe sets no key"),
    case("comments-only", b"# nothing here\n\n", "r.toml:1:1", "the recipe sets no key"),
];

/// How long one `lpo plan` may take: a read of a FIFO or of `/dev/zero`
/// would never end.
const DEADLINE: Duration = Duration::from_secs(30);

/// Processes at once: each `lpo plan` is mostly its start-up (loading
/// libtorch), so a few at a time keep the table fast on two cores.
const THREADS: usize = 4;

#[test]
fn the_table_has_at_least_90_distinct_cases() {
    assert!(CASES.len() >= 90, "{} cases", CASES.len());
    let mut names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), CASES.len(), "case names repeat");
}

#[test]
fn every_malformed_recipe_exits_2_naming_its_location() {
    let root = common::scratch("malformed");
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = CASES.get(i) else { break };
                if let Err(why) = check(case, &root) {
                    failures
                        .lock()
                        .unwrap()
                        .push((i, format!("{}: {why}", case.name)));
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    let report: Vec<String> = failures.into_iter().map(|(_, f)| f).collect();
    assert!(
        report.is_empty(),
        "{} of {} malformed recipes were not refused as the table says:\n\n{}",
        report.len(),
        CASES.len(),
        report.join("\n\n")
    );
}

/// Writes `case` into its own directory under `root`, plans it, and says
/// what is wrong with the outcome, if anything.
fn check(case: &Case, root: &Path) -> Result<(), String> {
    let dir = root.join(case.name);
    write_case(case, &dir).map_err(|e| format!("writing the case: {e}"))?;
    let stderr_file = root.join(format!("{}.stderr", case.name));
    let (status, stderr) = plan(&dir, &stderr_file)?;
    let mut wrong = Vec::new();
    if status != Some(2) {
        wrong.push(format!("exit status {status:?}, not 2"));
    }
    if !stderr.lines().any(|line| located(line, case)) {
        wrong.push(format!("no error line says {:?} at {}", case.says, case.at));
    }
    if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
        wrong.push("it panicked".into());
    }
    if dir.join("results").exists() {
        wrong.push("it wrote under results/".into());
    }
    match wrong.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "{}\n  stderr:\n  {}",
            wrong.join("; "),
            stderr.trim_end().replace('\n', "\n  ")
        )),
    }
}

/// Whether `line` is an error saying `case.says`, located at `case.at`:
/// ` at FILE:LINE:COL` ends the line or is followed by `; help` (so
/// `r.toml:2:1` is not `r.toml:2:10`, nor another key's place the message
/// mentions in parentheses).
fn located(line: &str, case: &Case) -> bool {
    let at = format!(" at {}", case.at);
    line.starts_with("error: ")
        && line.contains(case.says)
        && line
            .match_indices(&at)
            .any(|(i, _)| matches!(line[i + at.len()..].chars().next(), None | Some(';')))
}

fn write_case(case: &Case, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("r.toml"), case.recipe)?;
    for extra in case.extra {
        match extra {
            File(name, bytes) => {
                let path = dir.join(name);
                std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
                std::fs::write(path, bytes)?;
            }
            Dir(name) => std::fs::create_dir_all(dir.join(name))?,
            Fifo(name) => {
                let path = std::ffi::CString::new(dir.join(name).to_str().unwrap()).unwrap();
                // SAFETY: mkfifo on a NUL-terminated path.
                if unsafe { libc::mkfifo(path.as_ptr(), 0o600) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
    }
    Ok(())
}

/// `lpo plan r.toml` in `dir`, its stderr captured in `stderr_file`, killed
/// at the deadline: its exit status and stderr.
fn plan(dir: &Path, stderr_file: &Path) -> Result<(Option<i32>, String), String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lpo"));
    command
        .args(["plan", "r.toml"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr_file).map_err(|e| e.to_string())?);
    // Only the recipe file speaks: no `LPO_` layer from this environment.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LPO_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start lpo: {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("did not finish in {} s", DEADLINE.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = std::fs::read(stderr_file).map_err(|e| e.to_string())?;
    Ok((status.code(), String::from_utf8_lossy(&stderr).into_owned()))
}
