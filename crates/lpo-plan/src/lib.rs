//! The sweep planner: expands a recipe's `[sweep]` (grid x zip groups x seeds,
//! minus exclusions) into concrete, validated runs in a deterministic order.
//!
//! A run's id is a short hash of its canonical configuration: everything that
//! changes what the run computes, and nothing cosmetic. So the same run in two
//! recipes has the same id, and comments, key order, the recipe's name or a
//! label never change it. Execution settings (`train.device`,
//! `train.threads`, `train.checkpoint_every`) are not part of the id either.

pub mod identical;
pub mod memory;
mod resolve;

use std::collections::{BTreeMap, HashSet};

use lpo_recipe::{Coef, Diagnostic, Diagnostics, Recipe, Schedule};
use serde_json::Value as Json;
use toml::Value;

/// Hashed in front of every canonical configuration; bump when the id scheme
/// changes, or when the same configuration would now compute other numbers
/// (v2: libtorch's fused AdamW formula and the inverse-CDF sampler; v3:
/// oneDNN's matrix products on the CPU; v4: prompts and records split into
/// training, validation and test by content, `lpo_tasks::split`), so a
/// sweep never mixes runs of two implementations under one id.
const ID_SCHEME: &str = "lpo-run-v4";

/// One concrete run.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    /// Position in the sweep's order (0-based).
    pub index: usize,
    /// Stable identity: 12 hex digits of the canonical configuration's SHA-256.
    pub id: String,
    /// The swept keys and the values this run takes (seed included when swept).
    pub assignments: Vec<(String, Value)>,
    /// The run's full resolved recipe (its `sweep` section emptied).
    pub recipe: Box<Recipe>,
    /// The index of the run it is evaluated against (`eval.baseline`: the
    /// one run with that label and the same held-out prompts); `None`: the
    /// reference (also for the baseline run itself).
    pub baseline: Option<usize>,
}

/// An expanded sweep.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The runs in order.
    pub runs: Vec<PlannedRun>,
    /// Swept keys, in column order.
    pub axes: Vec<String>,
    /// Combinations dropped by `sweep.exclude`.
    pub excluded: usize,
    /// Combinations that resolved to an earlier run's configuration (kept once).
    pub duplicates: usize,
}

/// One choice along an axis: the assignments it makes.
type Choice = Vec<(String, Value)>;

/// One `sweep.exclude` entry.
type ExcludeFilter = BTreeMap<String, Value>;

/// Expands `recipe`'s sweep. Every run is validated; all problems are reported together,
/// each with the recipe key it concerns as its location (`eval.baseline`,
/// `data.mix[0].path`), which [`lpo_recipe::Loaded::locate`] turns into the
/// `file:line:col` that set it.
pub fn plan(recipe: &Recipe) -> Result<Plan, Diagnostics> {
    let sweep = &recipe.sweep;
    let (axes, names) = axes_of(sweep);
    let base = base_of(recipe)?;

    let total: usize = axes.iter().map(Vec::len).product();
    // Resolving and hashing runs is independent work: split it across threads,
    // then merge in sweep order so the result does not depend on the split.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(total.div_ceil(1024))
        .max(1);
    let chunk = total.div_ceil(threads);
    let shared = resolve::Shared::new(&axes, &base, &sweep.exclude);
    let resolved: Vec<Vec<Resolved>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let shared = &shared;
                scope.spawn(move || shared.resolve_range(t * chunk..((t + 1) * chunk).min(total)))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("planner thread panicked"))
            .collect()
    });

    let mut runs = Vec::with_capacity(total);
    let mut seen: HashSet<String> = HashSet::with_capacity(total);
    let (mut excluded, mut duplicates) = (0, 0);
    let mut problems = Vec::new();
    for item in resolved.into_iter().flatten() {
        match item {
            Resolved::Excluded => excluded += 1,
            Resolved::Invalid(mut found) => problems.append(&mut found),
            Resolved::Run {
                id,
                assignments,
                recipe,
            } => {
                if seen.insert(id.clone()) {
                    runs.push(PlannedRun {
                        index: runs.len(),
                        id,
                        assignments,
                        recipe,
                        baseline: None,
                    });
                } else {
                    duplicates += 1;
                }
            }
        }
    }
    problems.extend(link_baselines(&mut runs));
    problems.extend(lone_self_baselines(&runs));
    if runs.is_empty() && excluded > 0 && problems.is_empty() {
        problems.push(Diagnostic {
            message: format!("`sweep.exclude` removes every one of the sweep's {excluded} combinations: nothing would run"),
            location: "sweep.exclude".into(),
            help: Some("narrow the exclude entries, or widen the sweep".into()),
        });
    }
    if !problems.is_empty() {
        return Err(Diagnostics(problems));
    }
    Ok(Plan {
        runs,
        axes: names,
        excluded,
        duplicates,
    })
}

/// The sweep's axes (each a list of choices, the last moving fastest) and
/// the swept keys in column order.
fn axes_of(sweep: &lpo_recipe::SweepConfig) -> (Vec<Vec<Choice>>, Vec<String>) {
    let mut axes: Vec<Vec<Choice>> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (key, values) in &sweep.grid {
        axes.push(
            values
                .iter()
                .map(|v| vec![(key.clone(), v.clone())])
                .collect(),
        );
        names.push(key.clone());
    }
    for group in &sweep.zip {
        let len = group.values().map(Vec::len).min().unwrap_or(0);
        axes.push(
            (0..len)
                .map(|i| {
                    group
                        .iter()
                        .map(|(k, v)| (k.clone(), v[i].clone()))
                        .collect()
                })
                .collect(),
        );
        names.extend(group.keys().cloned());
    }
    if !sweep.seeds.is_empty() {
        axes.push(
            sweep
                .seeds
                .iter()
                .map(|&s| vec![("train.seed".to_string(), Value::Integer(s as i64))])
                .collect(),
        );
        names.push("train.seed".into());
    }
    (axes, names)
}

/// The recipe as TOML without its sweep: what every run starts from.
fn base_of(recipe: &Recipe) -> Result<Value, Diagnostics> {
    let mut base = Value::try_from(recipe)
        .map_err(|e| Diagnostics::one(e.to_string(), "the merged recipe"))?;
    if let Some(table) = base.as_table_mut() {
        table.remove("sweep");
    }
    Ok(base)
}

/// Sets each run's `baseline` to the one run of the plan labelled
/// `eval.baseline` with the same held-out prompts ([`eval_key`]); a label
/// that no such run carries, or that several carry, is a problem caught
/// here rather than after training. The one place baselines are resolved.
fn link_baselines(runs: &mut [PlannedRun]) -> Vec<Diagnostic> {
    if runs.iter().all(|r| r.recipe.eval.baseline == "reference") {
        return Vec::new();
    }
    let keys: Vec<String> = runs.iter().map(|r| eval_key(&r.recipe)).collect();
    let mut by_label: std::collections::HashMap<(String, &str), Vec<usize>> = Default::default();
    for (i, (r, k)) in runs.iter().zip(&keys).enumerate() {
        by_label
            .entry((r.recipe.method_label(), k.as_str()))
            .or_default()
            .push(i);
    }
    let mut labels: Vec<String> = runs.iter().map(|r| r.recipe.method_label()).collect();
    labels.sort();
    labels.dedup();
    let mut problems = Vec::new();
    let mut links = vec![None; runs.len()];
    for (i, (r, k)) in runs.iter().zip(&keys).enumerate() {
        let b = &r.recipe.eval.baseline;
        if b == "reference" || *b == r.recipe.method_label() {
            continue;
        }
        let message = match by_label.get(&(b.clone(), k.as_str())).map(Vec::as_slice) {
            Some([one]) => {
                links[i] = Some(*one);
                continue;
            }
            Some(many) => format!(
                "`eval.baseline` is \"{b}\" in run {}, but {} runs with the same data, model, evaluation and seed are labelled so ({}): make labels distinct",
                r.id,
                many.len(),
                many.iter().map(|&j| runs[j].id.as_str()).collect::<Vec<_>>().join(", ")
            ),
            None => format!(
                "`eval.baseline` is \"{b}\" in run {}, but no run of the plan with the same data, model, evaluation and seed is labelled so (labels: {})",
                r.id,
                labels.join(", ")
            ),
        };
        problems.push(Diagnostic {
            message,
            location: "eval.baseline".into(),
            help: Some("use `reference` or a label of the sweep".into()),
        });
    }
    for (run, link) in runs.iter_mut().zip(links) {
        run.baseline = link;
    }
    problems
}

/// The runs whose `eval.baseline` is their own label: the baseline method
/// of a sweep whose other runs compare with it (`eval.baseline = "dpo"` over
/// a grid of losses). Such a run is compared with the reference, and `lpo
/// plan` and `lpo sweep` say so.
pub fn self_baselines(plan: &Plan) -> Vec<&PlannedRun> {
    plan.runs
        .iter()
        .filter(|r| {
            r.recipe.eval.baseline != "reference"
                && r.recipe.eval.baseline == r.recipe.method_label()
        })
        .collect()
}

/// A run that is its own baseline while no other run with its held-out
/// prompts compares with it: nothing would be compared with it, and it
/// would silently be compared with the reference instead.
fn lone_self_baselines(runs: &[PlannedRun]) -> Vec<Diagnostic> {
    runs.iter()
        .filter(|r| r.recipe.eval.baseline != "reference" && r.recipe.eval.baseline == r.recipe.method_label())
        .filter(|r| {
            let key = eval_key(&r.recipe);
            !runs.iter().any(|o| {
                o.id != r.id && o.recipe.eval.baseline == r.recipe.eval.baseline && eval_key(&o.recipe) == key
            })
        })
        .map(|r| Diagnostic {
            message: format!(
                "`eval.baseline` is \"{}\" in run {}, its own label, and no other run compares with it: a run cannot be its own baseline",
                r.recipe.eval.baseline, r.id
            ),
            location: "eval.baseline".into(),
            help: Some("use `reference`, or another method's label".into()),
        })
        .collect()
}

/// One combination after resolution.
enum Resolved {
    Excluded,
    Invalid(Vec<Diagnostic>),
    Run {
        id: String,
        assignments: Choice,
        recipe: Box<Recipe>,
    },
}

/// One combination, resolved the direct way: the base recipe's TOML with
/// the assignments set, deserialized whole. The reference for
/// [`resolve::Shared`], which takes this path where it cannot decide.
fn resolve(assignments: Choice, base: &Value, exclude: &[ExcludeFilter]) -> Resolved {
    let mut value = base.clone();
    for (key, v) in &assignments {
        set_path(&mut value, key, v.clone());
    }
    if exclude.iter().any(|filter| {
        filter
            .iter()
            .all(|(k, want)| get_path(&value, k).is_some_and(|have| same(have, want)))
    }) {
        return Resolved::Excluded;
    }
    let recipe: Recipe = match value.try_into() {
        Ok(run) => run,
        Err(e) => {
            let message = format!("run [{}]: {e}", describe(&assignments));
            return Resolved::Invalid(vec![Diagnostic {
                message,
                location: "sweep".into(),
                help: None,
            }]);
        }
    };
    finish(recipe, assignments, run_id)
}

/// `k=v, ...` of a run's assignments, for messages.
fn describe(assignments: &Choice) -> String {
    assignments
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A deserialized run: validated, its model taken from a checkpoint
/// reference, and its id computed by `id`.
fn finish(recipe: Recipe, assignments: Choice, id: impl FnOnce(&Recipe) -> String) -> Resolved {
    let context = || describe(&assignments);
    // Problems as (key, message), each located at its key.
    let located = |problems: Vec<(String, String)>| -> Option<Resolved> {
        let diagnostics: Vec<Diagnostic> = problems
            .into_iter()
            .map(|(key, message)| Diagnostic {
                message: format!("run [{}]: `{key}` {message}", context()),
                location: key,
                help: None,
            })
            .collect();
        (!diagnostics.is_empty()).then_some(Resolved::Invalid(diagnostics))
    };
    if let Some(invalid) = located(lpo_recipe::validate::problems(&recipe)) {
        return invalid;
    }
    let mut recipe = recipe;
    if let Err((key, message)) = localize(&mut recipe) {
        return Resolved::Invalid(vec![Diagnostic {
            message: format!("run [{}]: {message}", context()),
            location: key,
            help: None,
        }]);
    }
    let checked = checkpoint_model(&mut recipe)
        .and_then(|()| checkpoint_tokenizer(&mut recipe).map_err(|m| (m, None)));
    if let Err((message, help)) = checked {
        return Resolved::Invalid(vec![Diagnostic {
            message: format!("run [{}]: {message}", context()),
            location: "reference.checkpoint".into(),
            help: help.map(String::from),
        }]);
    }
    // Known only now that a checkpoint has given the architecture.
    if let Some(invalid) = located(lpo_recipe::validate::architecture_problems(&recipe)) {
        return invalid;
    }
    if let Err(message) = reward_model(&recipe) {
        return Resolved::Invalid(vec![Diagnostic {
            message: format!("run [{}]: {message}", context()),
            location: "reward.model".into(),
            help: None,
        }]);
    }
    Resolved::Run {
        id: id(&recipe),
        assignments,
        recipe: Box::new(recipe),
    }
}

/// Hub names of `reference.checkpoint`, `data.tokenizer` and the mix's
/// paths become the snapshot directories of the Hugging Face cache (whose
/// last component is the commit, so the revision enters the run id).
/// Errors as (key, message).
pub fn localize(recipe: &mut Recipe) -> Result<(), (String, String)> {
    use lpo_hf::hub::{resolve, RepoKind};
    let local = |key: &str, value: &mut String, kind: RepoKind| -> Result<(), (String, String)> {
        if let Some(name) = lpo_recipe::paths::hub_name(value) {
            let dir =
                resolve(name, kind).map_err(|e| (key.to_string(), format!("`{key}`: {e:#}")))?;
            *value = dir.display().to_string();
        }
        Ok(())
    };
    if let Some(dir) = &mut recipe.reference.checkpoint {
        local("reference.checkpoint", dir, RepoKind::Model)?;
    }
    if let Some(path) = &mut recipe.data.tokenizer {
        local("data.tokenizer", path, RepoKind::Model)?;
    }
    if let Some(dir) = &mut recipe.reward.model {
        local("reward.model", dir, RepoKind::Model)?;
    }
    for (i, source) in recipe.data.mix.iter_mut().enumerate() {
        if let Some(path) = &mut source.path {
            local(&format!("data.mix[{i}].path"), path, RepoKind::Dataset)?;
        }
    }
    // Files a run reads, checked now rather than after a reference is trained.
    let files = recipe.data.mix.iter().enumerate().filter_map(|(i, s)| {
        let path = s.path.as_deref()?;
        Some((format!("data.mix[{i}].path"), path))
    });
    let named = [
        ("data.tokenizer", &recipe.data.tokenizer),
        ("reward.model", &recipe.reward.model),
    ];
    let named = named
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_string(), value.as_deref()?)));
    for (key, path) in files.chain(named) {
        if !std::path::Path::new(path).exists() {
            return Err((key.clone(), format!("`{key}`: {path} does not exist")));
        }
    }
    // A dataset directory is read by split, a tokenizer directory through
    // its tokenizer.json: without them a run would fail on its first read.
    for (i, source) in recipe.data.mix.iter().enumerate() {
        if let (Some(path), None) = (&source.path, &source.split) {
            if std::path::Path::new(path).is_dir() {
                let key = format!("data.mix[{i}].path");
                let message = format!(
                    "`{key}`: {path} is a dataset directory: name the split to read (`split`)"
                );
                return Err((key, message));
            }
        }
    }
    if let Some(path) = &recipe.data.tokenizer {
        let dir = std::path::Path::new(path);
        if dir.is_dir() && !dir.join("tokenizer.json").is_file() {
            return Err((
                "data.tokenizer".into(),
                format!("`data.tokenizer`: the directory {path} has no tokenizer.json"),
            ));
        }
    }
    Ok(())
}

/// With a checkpoint and no `data.tokenizer`, the tokenizer is the
/// checkpoint's: its directory must hold a `tokenizer.json`, since the
/// character tokenizer never goes with a Hugging Face checkpoint.
pub fn checkpoint_tokenizer(recipe: &mut Recipe) -> Result<(), String> {
    if let (Some(dir), None) = (&recipe.reference.checkpoint, &recipe.data.tokenizer) {
        let file = std::path::Path::new(dir).join("tokenizer.json");
        if !file.is_file() {
            return Err(format!(
                    "the checkpoint {dir} has no tokenizer.json ({} is missing): a Hugging Face checkpoint trains with its own tokenizer; \
                     save it beside the weights (tokenizer.save_pretrained), or set data.tokenizer to the tokenizer it was trained with",
                file.display()
            ));
        }
        recipe.data.tokenizer = Some(file.display().to_string());
    }
    Ok(())
}

/// Every Hub name the recipe's runs may use, once each, with its kind: the
/// base values of `reference.checkpoint`, `data.tokenizer` and
/// `data.mix[].path`, and those values on sweep axes. What the commands that
/// run fetch before planning ([`lpo_hf::hub::download`]).
pub fn hub_names(recipe: &Recipe) -> Vec<(String, lpo_hf::hub::RepoKind)> {
    use lpo_hf::hub::RepoKind;
    let mut out: Vec<(String, RepoKind)> = Vec::new();
    let mut add = |value: &str, kind: RepoKind| {
        if let Some(name) = lpo_recipe::paths::hub_name(value) {
            if !out.iter().any(|(n, k)| n == name && *k == kind) {
                out.push((name.to_string(), kind));
            }
        }
    };
    let models = [
        &recipe.reference.checkpoint,
        &recipe.data.tokenizer,
        &recipe.reward.model,
    ];
    for value in models.into_iter().flatten() {
        add(value, RepoKind::Model);
    }
    for path in recipe.data.mix.iter().filter_map(|s| s.path.as_deref()) {
        add(path, RepoKind::Dataset);
    }
    let axes = recipe
        .sweep
        .grid
        .iter()
        .chain(recipe.sweep.zip.iter().flatten());
    for (key, values) in axes {
        for value in values {
            match (key.as_str(), value) {
                ("reference.checkpoint" | "data.tokenizer" | "reward.model", Value::String(s)) => {
                    add(s, RepoKind::Model)
                }
                ("data.mix", Value::Array(sources)) => {
                    let paths = sources.iter().filter_map(|t| t.get("path")?.as_str());
                    paths.for_each(|p| add(p, RepoKind::Dataset));
                }
                _ => {}
            }
        }
    }
    out
}

/// Whether `recipe` names a Hub repository anywhere [`localize`] resolves
/// one (its id then depends on the cache, so the memoized path steps aside).
pub(crate) fn names_hub(recipe: &Recipe) -> bool {
    let hub = |v: &Option<String>| v.as_deref().and_then(lpo_recipe::paths::hub_name).is_some();
    hub(&recipe.reference.checkpoint)
        || hub(&recipe.data.tokenizer)
        || hub(&recipe.reward.model)
        || recipe.data.mix.iter().any(|s| hub(&s.path))
}

/// `reward.model`, when a source is scored by it, must be a
/// sequence-classification checkpoint with one output and a tokenizer.
pub fn reward_model(recipe: &Recipe) -> Result<(), String> {
    let uses = recipe
        .reward_kinds()
        .contains(&lpo_recipe::RewardKind::Model);
    let Some(dir) = recipe.reward.model.as_deref().filter(|_| uses) else {
        return Ok(());
    };
    let path = std::path::Path::new(dir);
    let config = lpo_hf::Config::read(path).map_err(|e| format!("`reward.model`: {e:#}"))?;
    let head = lpo_hf::Head::read(path).map_err(|e| format!("`reward.model`: {e:#}"))?;
    if head != (lpo_hf::Head::Classifier { num_labels: 1 }) {
        return Err(format!(
            "`reward.model` {dir} is not a reward model: it must be a {} with num_labels = 1 (its config.json says {head:?})",
            config.family.classifier_architecture()
        ));
    }
    if !path.join("tokenizer.json").is_file() {
        return Err(format!(
            "`reward.model` {dir} has no tokenizer.json: a reward model reads text with its own tokenizer"
        ));
    }
    Ok(())
}

/// With `reference.checkpoint`, the model is the checkpoint's: its
/// `config.json` replaces the recipe's model section (every field set, no
/// preset), so the plan, the run id and the run's config.toml describe the
/// model that trains. A preset or field the recipe sets explicitly must
/// agree with the checkpoint.
///
/// The error is the message and, for contradicting fields, a hint.
pub fn checkpoint_model(recipe: &mut Recipe) -> Result<(), (String, Option<&'static str>)> {
    let Some(dir) = &recipe.reference.checkpoint else {
        return Ok(());
    };
    let config =
        lpo_hf::Config::read(std::path::Path::new(dir)).map_err(|e| (format!("{e:#}"), None))?;
    let head =
        lpo_hf::Head::read(std::path::Path::new(dir)).map_err(|e| (format!("{e:#}"), None))?;
    if head != lpo_hf::Head::CausalLm {
        return Err((format!(
            "`reference.checkpoint` {dir} is a {} (a reward model), not a causal language model: name it as a reward source (`reward = {{ model = \"{dir}\" }}`)",
            config.family.classifier_architecture()
        ), None));
    }
    let have = config.dims().ok_or_else(|| {
        (
            format!(
                "the checkpoint {} does not fit a recipe's model fields",
                config.describe()
            ),
            None,
        )
    })?;
    let m = &recipe.model;
    let explicit = [
        m.layers.map(f64::from),
        m.d_model.map(f64::from),
        m.heads.map(f64::from),
        m.kv_heads.map(f64::from),
        m.d_ff.map(f64::from),
        m.vocab.map(f64::from),
        m.max_len.map(f64::from),
        m.rope_theta,
        m.sliding_window.map(f64::from),
        m.experts.map(f64::from),
        m.experts_per_token.map(f64::from),
    ];
    let preset = m.size.map(|s| (s.as_str(), dims_fields(&s.dims())));
    let mut conflicts = Vec::new();
    for (i, ((key, hf_key, checkpoint), explicit)) in
        dims_fields(&have).into_iter().zip(explicit).enumerate()
    {
        let (value, source) = match (explicit, &preset) {
            (Some(v), _) => (v, format!("`model.{key}` is {v}")),
            (None, Some((name, fields))) => (
                fields[i].2,
                format!("`model.size` = \"{name}\" has {key} {}", fields[i].2),
            ),
            (None, None) => continue,
        };
        if value != checkpoint {
            conflicts.push(format!(
                "{source}, but {dir}/config.json has {hf_key} = {checkpoint}"
            ));
        }
    }
    if !conflicts.is_empty() {
        return Err((
            conflicts.join("; "),
            Some("remove the model keys that contradict the checkpoint: its config.json gives the architecture"),
        ));
    }
    recipe.model = lpo_recipe::ModelConfig {
        size: None,
        layers: Some(have.layers),
        d_model: Some(have.d_model),
        heads: Some(have.heads),
        kv_heads: Some(have.kv_heads),
        d_ff: Some(have.d_ff),
        vocab: Some(have.vocab),
        max_len: Some(have.max_len),
        rope_theta: Some(have.rope_theta),
        sliding_window: Some(have.sliding_window),
        experts: (have.experts > 0).then_some(have.experts),
        experts_per_token: (have.experts > 0).then_some(have.experts_per_token),
        router_aux_loss_coef: recipe.model.router_aux_loss_coef,
        lora: recipe.model.lora.clone(),
    };
    Ok(())
}

/// A model's fields as numbers: (recipe key, config.json key, value).
fn dims_fields(d: &lpo_recipe::ModelDims) -> [(&'static str, &'static str, f64); 11] {
    [
        ("layers", "num_hidden_layers", f64::from(d.layers)),
        ("d_model", "hidden_size", f64::from(d.d_model)),
        ("heads", "num_attention_heads", f64::from(d.heads)),
        ("kv_heads", "num_key_value_heads", f64::from(d.kv_heads)),
        ("d_ff", "intermediate_size", f64::from(d.d_ff)),
        ("vocab", "vocab_size", f64::from(d.vocab)),
        ("max_len", "max_position_embeddings", f64::from(d.max_len)),
        ("rope_theta", "rope_theta", d.rope_theta),
        (
            "sliding_window",
            "sliding_window",
            f64::from(d.sliding_window),
        ),
        ("experts", "num_local_experts", f64::from(d.experts)),
        (
            "experts_per_token",
            "num_experts_per_tok",
            f64::from(d.experts_per_token),
        ),
    ]
}

/// The odometer reading of combination number `n` (last axis fastest).
fn position(mut n: usize, axes: &[Vec<Choice>]) -> Vec<usize> {
    let mut odometer = vec![0; axes.len()];
    for (slot, axis) in odometer.iter_mut().zip(axes).rev() {
        *slot = n % axis.len();
        n /= axis.len();
    }
    odometer
}

fn advance(odometer: &mut [usize], axes: &[Vec<Choice>]) {
    for position in (0..odometer.len()).rev() {
        odometer[position] += 1;
        if odometer[position] < axes[position].len() {
            return;
        }
        odometer[position] = 0;
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Integer(x), Value::Float(y)) | (Value::Float(y), Value::Integer(x)) => {
            *x as f64 == *y
        }
        _ => a == b,
    }
}

/// Sets a dotted key inside a TOML value, creating tables on the way.
pub fn set_path(root: &mut Value, dotted: &str, value: Value) {
    let mut node = root;
    let mut segments = dotted.split('.').peekable();
    while let Some(segment) = segments.next() {
        let table = node
            .as_table_mut()
            .expect("recipe paths run through tables");
        if segments.peek().is_none() {
            table.insert(segment.to_string(), value);
            return;
        }
        node = table
            .entry(segment.to_string())
            .or_insert_with(|| Value::Table(toml::Table::new()));
    }
}

/// The value at a dotted key, if present.
pub fn get_path<'a>(root: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .try_fold(root, |node, segment| node.as_table()?.get(segment))
}

/// The canonical configuration a run id hashes: what the run computes, nothing else.
pub fn canonical(recipe: &Recipe) -> Json {
    let Json::Object(fields) = serde_json::to_value(recipe).expect("recipes serialize") else {
        unreachable!("a recipe is an object");
    };
    Json::Object(
        fields
            .into_iter()
            .filter_map(|(name, json)| Some((name.clone(), canonical_field(recipe, &name, json)?)))
            .collect(),
    )
}

/// One top-level field of the canonical configuration (`json` is
/// `recipe`'s field `name`), computed from that field alone; `None` for a
/// field outside run ids.
fn canonical_field(recipe: &Recipe, name: &str, mut json: Json) -> Option<Json> {
    // The keys outside run ids are declared once, in the key table.
    for spec in lpo_recipe::keys::outside_run_ids() {
        match spec.path.split_once('.') {
            None if spec.path == name => return None,
            Some((section, key)) if section == name => {
                if let Some(table) = json.as_object_mut() {
                    table.remove(key);
                }
            }
            _ => {}
        }
    }
    match name {
        "train" => {
            if let Some(train) = json.as_object_mut() {
                // With epochs the step count follows from the data: steps is ignored.
                if recipe.train.epochs.is_some() {
                    train.remove("steps");
                }
                // Accumulation splits the batch and weights micro-batches by
                // their contributing prompts (before: equal weights), so such
                // runs compute other numbers than under earlier ids.
                if recipe.train.grad_accum > 1 {
                    train.insert("accumulation".into(), "split-weighted".into());
                }
            }
        }
        "model" => {
            json = serde_json::to_value(recipe.model.dims()).expect("dims serialize");
            let aux = recipe.model.router_aux_loss_coef();
            if aux > 0.0 {
                json["router_aux_loss_coef"] = aux.into();
            }
            if !recipe.model.lora.is_off() {
                // Targets as a set: their order does not change the run.
                let mut lora = recipe.model.lora.clone();
                lora.targets.sort();
                json["lora"] = serde_json::to_value(lora).expect("lora serializes");
            }
        }
        "loss" => {
            let relevant = recipe.loss.kind.relevant_keys(recipe.loss.margin_weight);
            if let Some(loss) = json.as_object_mut() {
                loss.retain(|k, _| relevant.contains(&k.as_str()));
                // A weighted list of one part of weight 1 is that kind.
                if let Some(kind) = recipe.loss.kind.single() {
                    loss.insert("kind".into(), Json::from(kind.as_str()));
                }
                for (key, coef) in [
                    ("beta", &recipe.loss.beta),
                    ("alpha", &recipe.loss.alpha),
                    ("gamma", &recipe.loss.gamma),
                    ("sft_weight", &recipe.loss.sft_weight),
                ] {
                    if let (Some(slot), Coef::Schedule(Schedule::Constant { value })) =
                        (loss.get_mut(key), coef)
                    {
                        *slot = Json::from(*value);
                    }
                }
            }
        }
        // None left, no member (ids stay as without [reward]).
        "reward" => return relevant_reward(recipe),
        _ => {}
    }
    Some(json)
}

/// The `[reward]` settings away from their defaults that change what the
/// mix's reward kinds compute ([`lpo_recipe::RewardConfig::relevant_keys`]),
/// or `None` when there are none: part of run ids, evaluation keys and
/// shared-data keys.
pub fn relevant_reward(recipe: &Recipe) -> Option<Json> {
    let relevant = recipe.reward.relevant_keys(&recipe.reward_kinds());
    let Json::Object(mut reward) = serde_json::to_value(&recipe.reward).expect("serializes") else {
        return None;
    };
    // Defaults stay out too, so a recipe that writes a default keeps its id.
    let defaults = serde_json::to_value(lpo_recipe::RewardConfig::default()).expect("serializes");
    reward.retain(|k, v| relevant.contains(&k.as_str()) && defaults.get(k) != Some(v));
    (!reward.is_empty()).then_some(Json::Object(reward))
}

/// A member of the canonical configuration's text, `"name":json`, as
/// serde_json writes it inside an object.
fn canonical_member(name: &str, json: &Json) -> Vec<u8> {
    let mut text = serde_json::to_vec(name).expect("strings serialize");
    text.push(b':');
    serde_json::to_writer(&mut text, json).expect("JSON values serialize");
    text
}

/// The run id: 12 hex digits of SHA-256 over the canonical configuration.
///
/// serde_json's maps are ordered by key (its `preserve_order` feature is off;
/// a test guards this), so the serialized text is canonical.
pub fn run_id(recipe: &Recipe) -> String {
    let members = canonical_members(recipe);
    id_of_members(members.iter().filter_map(|(_, member)| member.as_deref()))
}

/// `recipe`'s top-level fields in key order, each with its member of the
/// canonical text (`None` outside run ids).
fn canonical_members(recipe: &Recipe) -> Vec<(String, Option<Vec<u8>>)> {
    let Json::Object(fields) = serde_json::to_value(recipe).expect("recipes serialize") else {
        unreachable!("a recipe is an object");
    };
    fields
        .into_iter()
        .map(|(name, json)| {
            let member = canonical_field(recipe, &name, json).map(|c| canonical_member(&name, &c));
            (name, member)
        })
        .collect()
}

/// The id of the canonical text `{member,member,...}`, members in key order.
fn id_of_members<'m>(members: impl Iterator<Item = &'m [u8]>) -> String {
    let mut parts: Vec<&[u8]> = vec![ID_SCHEME.as_bytes(), b"\n{"];
    for (i, member) in members.enumerate() {
        if i > 0 {
            parts.push(b",");
        }
        parts.push(member);
    }
    parts.push(b"}");
    lpo_results::sha256_hex(&parts, 6)
}

/// Identity of what a run is evaluated on: its model, reference, data,
/// evaluation settings (not the baseline) and seed. Runs with equal keys
/// answer the same held-out prompts, so they can be compared prompt by prompt.
/// `data.form` is left out: preference pairs are binarized from the same
/// reward lists when a run loads them, so its held-out prompts and lists are
/// the reward form's (`lpo` pairs with `lpo` on pairs, and the reference's
/// answers count once).
pub fn eval_key(recipe: &Recipe) -> String {
    let mut eval = recipe.eval.clone();
    eval.baseline = String::new();
    let mut data = recipe.data.clone();
    data.form = lpo_recipe::DataForm::Reward;
    let value = (
        recipe.model.dims(),
        &recipe.reference,
        &data,
        eval,
        recipe.train.seed,
    );
    let mut json = serde_json::to_vec(&value).expect("JSON values serialize");
    // How responses are scored, where a prompt file's reward does it.
    if let Some(reward) = relevant_reward(recipe) {
        json.extend(serde_json::to_vec(&reward).expect("JSON values serialize"));
    }
    lpo_results::sha256_hex(&[b"lpo-eval-key-v1\n", &json], 8)
}

#[cfg(test)]
mod tests;
