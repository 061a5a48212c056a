//! Cross-field checks on a resolved recipe (single keys are checked by [`crate::keys`]).

use crate::schema::{LoraTarget, Objective, Recipe};

/// Problems as (key path, message).
pub fn problems(recipe: &Recipe) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = recipe
        .model
        .dims()
        .problems()
        .into_iter()
        .map(|(k, m)| (k.to_string(), m))
        .collect();
    out.extend(name_problems(recipe));
    out.extend(family_problems(recipe));
    let dims = recipe.model.dims();
    if recipe.eval.max_new_tokens >= dims.max_len {
        out.push((
            "eval.max_new_tokens".into(),
            format!(
                "is {}, but must be below model.max_len ({})",
                recipe.eval.max_new_tokens, dims.max_len
            ),
        ));
    }
    if recipe.eval.samples > 1 && recipe.eval.decoding == crate::schema::Decoding::Greedy {
        out.push((
            "eval.samples".into(),
            format!(
                "is {}, but greedy decoding gives one response: set eval.samples = 1 or eval.decoding = \"sample\"",
                recipe.eval.samples
            ),
        ));
    }
    if recipe.train.rounds > 1
        && recipe
            .data
            .mix
            .iter()
            .any(|s| s.task.is_none() && s.reward.is_none())
    {
        out.push((
            "train.rounds".into(),
            format!(
                "is {}, but on-policy rounds score new responses with a reward source; data.mix has a file of scored responses (give it as a prompt file with a `reward`, or set train.rounds = 1)",
                recipe.train.rounds
            ),
        ));
    }
    reward_sources(recipe, &mut out);
    let lora = &recipe.model.lora;
    if !lora.is_off() && lora.dropout > 0.0 && recipe.train.activation_checkpointing {
        out.push((
            "model.lora.dropout".into(),
            format!(
                "is {}, but activation checkpointing recomputes each block in backward and would draw other dropout masks: set it to 0 or turn train.activation_checkpointing off",
                lora.dropout
            ),
        ));
    }
    if recipe.data.mix.is_empty() {
        out.push(("data.mix".into(), "needs at least one source".into()));
    }
    for (i, source) in recipe.data.mix.iter().enumerate() {
        if source.split.is_some() && source.path.is_none() {
            out.push((
                format!("data.mix[{i}].split"),
                "needs a `path` (a dataset directory)".into(),
            ));
        }
        match (&source.eval_split, &source.split) {
            (Some(_), None) => out.push((
                format!("data.mix[{i}].eval_split"),
                "needs `split` too: the training split of the same dataset directory".into(),
            )),
            (Some(e), Some(t)) if e == t => out.push((
                format!("data.mix[{i}].eval_split"),
                format!("is {e:?}, the training split itself: held-out lists must not train"),
            )),
            _ => {}
        }
        if recipe.data.train_prompts == 0 {
            if let Some(task) = &source.task {
                out.push((
                    "data.train_prompts".into(),
                    format!("is 0 (every file record once), but data.mix[{i}] is the built-in task {task:?}, which has no fixed set of records: give a number of prompts"),
                ));
            }
        }
    }
    let d = &recipe.data;
    for (key, set) in [
        ("data.bos_token", d.bos_token.is_some()),
        ("data.eos_token", d.eos_token.is_some()),
        ("data.pad_token", d.pad_token.is_some()),
    ] {
        if set && d.tokenizer.is_none() && recipe.reference.checkpoint.is_none() {
            out.push((
                key.into(),
                "names a token of a tokenizer.json: set data.tokenizer (or reference.checkpoint) too"
                    .into(),
            ));
        }
    }
    let t = &recipe.train;
    if t.reproducible && t.device == crate::schema::DeviceChoice::Cuda {
        out.push((
            "train.reproducible".into(),
            "is true, but train.device is \"cuda\": reproducible mode fixes the CPU's kernels (docs/performance.md); use train.device = \"cpu\"".into(),
        ));
    }
    if t.grad_accum > 1 && !t.batch_size.is_multiple_of(t.grad_accum) {
        out.push((
            "train.grad_accum".into(),
            format!(
                "is {}, but must divide train.batch_size ({}): a step's batch_size lists are split into grad_accum micro-batches of equal size",
                t.grad_accum, t.batch_size
            ),
        ));
    }
    if let Some(kind) = recipe.loss.kind.batch_kind().filter(|_| t.grad_accum > 1) {
        let what = match recipe.loss.kind {
            Objective::One(_) => format!("loss.kind = \"{}\"", kind.as_str()),
            Objective::Weighted(_) => format!("loss.kind's part \"{}\"", kind.as_str()),
        };
        out.push((
            "train.grad_accum".into(),
            format!(
                "is {}, but {what} couples the prompts of a batch (it sorts or token-weights across it), so its batch cannot be split into micro-batches: use grad_accum = 1",
                t.grad_accum,
            ),
        ));
    }
    out.extend(sweep_problems(&recipe.sweep));
    out.extend(label_problems(recipe));
    out.extend(tracking_problems(recipe));
    for (i, group) in recipe.sweep.zip.iter().enumerate() {
        let lengths: Vec<usize> = group.values().map(Vec::len).collect();
        if lengths.windows(2).any(|w| w[0] != w[1]) {
            let axes = group
                .iter()
                .map(|(k, v)| format!("{k} ({})", v.len()))
                .collect::<Vec<_>>()
                .join(", ");
            out.push((
                format!("sweep.zip[{i}]"),
                format!("axes must have equal lengths: {axes}"),
            ));
        }
    }
    out
}

/// Axes that would silently override one another, and repeated seeds.
fn sweep_problems(sweep: &crate::schema::SweepConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut owner: std::collections::BTreeMap<&str, String> = Default::default();
    let zips = sweep.zip.iter().enumerate();
    let axes = sweep
        .grid
        .keys()
        .map(|k| (k, "sweep.grid".to_string()))
        .chain(zips.flat_map(|(i, g)| g.keys().map(move |k| (k, format!("sweep.zip[{i}]")))));
    for (key, place) in axes {
        match owner.get(key.as_str()) {
            Some(first) => out.push((
                place.clone(),
                format!("sweeps `{key}`, which {first} sweeps already: one would silently override the other; keep one axis"),
            )),
            None => {
                owner.insert(key, place);
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for seed in &sweep.seeds {
        if !seen.insert(seed) {
            out.push((
                "sweep.seeds".into(),
                format!(
                    "lists the seed {seed} twice: a replicate with the same seed is the same run"
                ),
            ));
        }
    }
    out
}

/// An empty `label` (a run that is its own baseline is the planner's
/// concern: it depends on the other runs).
fn tracking_problems(recipe: &Recipe) -> Vec<(String, String)> {
    let t = &recipe.tracking;
    let mut out = Vec::new();
    if let Some(problem) = t.mlflow.as_deref().and_then(mlflow_uri_problem) {
        out.push(("tracking.mlflow".into(), problem));
    }
    if t.experiment.as_deref().is_some_and(|e| e.trim().is_empty()) {
        out.push((
            "tracking.experiment".into(),
            "is empty: leave it out to use the recipe's name".into(),
        ));
    }
    out
}

/// What is wrong with an MLflow tracking URI, if anything: lpo speaks the
/// REST API over http(s), and credentials belong in the environment.
pub fn mlflow_uri_problem(uri: &str) -> Option<String> {
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "is \"{}\", which holds a space or a control character: not a URI",
            uri.escape_default()
        ));
    }
    let Some(rest) = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
    else {
        return Some(format!(
            "is \"{}\": lpo logs to an MLflow tracking server over http:// or https:// (file:, databricks and database URIs are not supported)",
            uri.escape_default()
        ));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Some(format!(
            "is \"{}\", which names no host",
            uri.escape_default()
        ));
    }
    if host.contains('@') {
        return Some(
            "holds credentials: set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, in the environment instead (recipes are shared and stored with results)".into(),
        );
    }
    None
}

fn label_problems(recipe: &Recipe) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if recipe.label.as_deref().is_some_and(|l| l.trim().is_empty()) {
        out.push((
            "label".into(),
            "is empty: reports group runs by it; leave it out to use loss.kind".into(),
        ));
    }
    out
}

/// `name` and every `report.tables[].name` name a directory or file under
/// the results directory. Checked on the resolved recipe, so that a value
/// from any route (a file, `--set`, an `LPO_` variable, a sweep axis, a
/// zip group) is held to the one rule of the key table (`keys::leaf` on a
/// [`Ty::Name`](crate::keys::Ty::Name) key); the layer checks report file
/// values earlier, with their line. Two tables may not share a name.
fn name_problems(recipe: &Recipe) -> Vec<(String, String)> {
    let tables = recipe.report.tables.iter().enumerate().map(|(i, t)| {
        (
            format!("report.tables[{i}].name"),
            "report.tables[].name",
            &t.name,
        )
    });
    let mut out: Vec<(String, String)> =
        std::iter::once(("name".to_string(), "name", &recipe.name))
            .chain(tables)
            .filter_map(|(key, path, value)| {
                let spec = crate::keys::spec(path).expect("name keys are in the key table");
                crate::keys::leaf(spec, &toml::Value::String(value.clone()))
                    .err()
                    .map(|message| (key, message))
            })
            .collect();
    // Two tables of one name would write the same files, the last one winning.
    let tables = &recipe.report.tables;
    for (i, table) in tables.iter().enumerate() {
        if let Some(j) = tables[..i].iter().position(|t| t.name == table.name) {
            out.push((
                format!("report.tables[{i}].name"),
                format!(
                    "is \"{}\", the name of report.tables[{j}] too: each table needs its own name (its files are results/tables/<name>.*)",
                    table.name.escape_default()
                ),
            ));
        }
    }
    out
}

/// `report.family`: each entry names two different methods (`a` a method,
/// `b` a method or `reference`), once.
fn family_problems(recipe: &Recipe) -> Vec<(String, String)> {
    let family = &recipe.report.family;
    let mut out = Vec::new();
    for (i, h) in family.iter().enumerate() {
        let at = |field: &str| format!("report.family[{i}].{field}");
        for (field, value) in [("a", &h.a), ("b", &h.b)] {
            if value.trim().is_empty() {
                out.push((at(field), "is empty: name a method label".into()));
            }
        }
        if h.task.as_deref().is_some_and(|t| t.trim().is_empty()) {
            out.push((
                at("task"),
                "is empty: name a task, or leave it out for every task".into(),
            ));
        }
        if h.a == "reference" {
            out.push((
                at("a"),
                "is \"reference\", the SFT model every method is compared with: it can only be `b`"
                    .into(),
            ));
        }
        if h.a == h.b {
            out.push((
                at("b"),
                format!("is \"{}\", the same method as `a`", h.b.escape_default()),
            ));
        }
        if let Some(j) = family[..i].iter().position(|o| o == h) {
            out.push((
                at("a"),
                format!("repeats report.family[{j}]: a hypothesis counts once"),
            ));
        }
    }
    out
}

/// The labels `report.family` names that no planned run carries (`labels`:
/// the method labels of the plan), as diagnostics located at the key: a
/// typo would otherwise leave the declared family silently smaller.
pub fn family_label_problems(
    report: &crate::schema::ReportConfig,
    labels: &std::collections::BTreeSet<String>,
) -> Vec<crate::Diagnostic> {
    let known = labels.iter().map(String::as_str).collect::<Vec<_>>();
    let mut out = Vec::new();
    for (i, h) in report.family.iter().enumerate() {
        for (field, value) in [("a", &h.a), ("b", &h.b)] {
            if (field == "b" && value == "reference") || labels.contains(value) {
                continue;
            }
            out.push(crate::Diagnostic {
                message: format!(
                    "`report.family[{i}].{field}` is \"{}\", which no run of the sweep is labelled (labels: {})",
                    value.escape_default(),
                    known.join(", ")
                ),
                location: format!("report.family[{i}].{field}"),
                help: crate::diag::did_you_mean(value, known.iter().copied())
                    .or_else(|| Some("use a method label of the sweep (`lpo plan` lists them), or `reference` as `b`".into())),
            });
        }
    }
    out
}

/// A prompt format needs a reward source and a checkpoint to sample from,
/// a response format refuses one, and `reward = "model"` needs `reward.model`.
fn reward_sources(recipe: &Recipe, out: &mut Vec<(String, String)>) {
    for (i, source) in recipe.data.mix.iter().enumerate() {
        let prompts = source
            .format
            .is_some_and(crate::schema::FileFormat::is_prompts);
        match (prompts, source.reward, source.task.is_some()) {
            (_, Some(kind), true) => out.push((
                format!("data.mix[{i}].reward"),
                format!(
                    "is \"{}\", but a built-in task has its own reward; only prompt files take a reward source",
                    kind.name()
                ),
            )),
            (true, None, _) => out.push((
                format!("data.mix[{i}].reward"),
                "is missing: a prompt file's responses are sampled and need a reward source (\"math\", \"code\" or \"model\")".into(),
            )),
            (false, Some(kind), false) => out.push((
                format!("data.mix[{i}].reward"),
                format!(
                    "is \"{}\", but the source's format holds scored responses; a reward source scores prompt files (format \"prompts\", \"gsm8k\" or \"humaneval\")",
                    kind.name()
                ),
            )),
            _ => {}
        }
        let twin = recipe.data.mix[..i]
            .iter()
            .position(|o| o.path.is_some() && o.path == source.path && o.split == source.split);
        if let (Some(j), Some(_)) = (twin, source.reward) {
            out.push((
                format!("data.mix[{i}].path"),
                format!("names the same prompt file as data.mix[{j}]: list it once (with the weight of both)"),
            ));
        }
        if source.reward.is_some() && recipe.reference.checkpoint.is_none() {
            out.push((
                format!("data.mix[{i}].reward"),
                "is set, but reference.checkpoint is not: a prompt file has no demonstrations to train an SFT reference on, so its responses are sampled from a checkpoint".into(),
            ));
        }
        if source.reward == Some(crate::schema::RewardKind::Model) && recipe.reward.model.is_none()
        {
            out.push((
                format!("data.mix[{i}].reward"),
                "is \"model\", but reward.model names no reward model".into(),
            ));
        }
    }
}

/// Problems of the model's architecture against keys that need a kind of
/// block: LoRA targets that exist only in dense or only in sparse
/// (mixture-of-experts) blocks, and the router's load-balancing loss. Checked
/// once the architecture is known (after a checkpoint gives it).
pub fn architecture_problems(recipe: &Recipe) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let moe = recipe.model.dims().is_moe();
    let lora = &recipe.model.lora;
    if !lora.is_off() {
        let absent: Vec<&str> = lora
            .targets
            .iter()
            .filter(|t| !t.exists(moe))
            .map(|t| t.as_str())
            .collect();
        if !absent.is_empty() {
            let (kind, have) = match moe {
                true => (
                    "sparse (mixture-of-experts)",
                    "q_proj, k_proj, v_proj, o_proj, w1, w2, w3, gate",
                ),
                false => (
                    "dense",
                    "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj",
                ),
            };
            out.push((
                "model.lora.targets".into(),
                format!(
                    "names {}, which the model's {kind} blocks do not have (they have {have})",
                    absent.join(", ")
                ),
            ));
        }
    }
    let has = |t: LoraTarget| lora.targets.contains(&t);
    if !lora.is_off() && moe && has(LoraTarget::W1) != has(LoraTarget::W3) {
        out.push((
            "model.lora.targets".into(),
            "names one of w1 and w3 without the other: transformers 5.x fuses them into one gate_up_proj, and PEFT loads adapters on it only for both".into(),
        ));
    }
    let aux = recipe.model.router_aux_loss_coef();
    if aux > 0.0 && !moe {
        out.push((
            "model.router_aux_loss_coef".into(),
            format!("is {aux}, but the model has no experts to route to"),
        ));
    }
    if aux > 0.0 && recipe.train.activation_checkpointing {
        out.push((
            "model.router_aux_loss_coef".into(),
            format!("is {aux}, but activation checkpointing does not carry the router's loss through its recomputation: set it to 0 or turn train.activation_checkpointing off"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn mlflow_uris_are_http_without_credentials() {
        assert_eq!(mlflow_uri_problem("http://127.0.0.1:5000"), None);
        assert_eq!(mlflow_uri_problem("https://mlflow.example.org/path"), None);
        let problem = |u| mlflow_uri_problem(u).unwrap();
        assert!(problem("file:///tmp/mlruns").contains("http://"));
        assert!(problem("databricks").contains("not supported"));
        assert!(problem("http://").contains("no host"));
        assert!(problem("https://me:secret@host").contains("MLFLOW_TRACKING_TOKEN"));
        assert!(problem("http://h/$(touch x; y)").contains("not a URI"));
        assert!(problem("http://h\nx").contains("control character"));
    }

    use super::{family_label_problems, mlflow_uri_problem, problems};
    use crate::schema::{Hypothesis, Recipe, TableSpec};

    fn table(name: &str) -> TableSpec {
        toml::from_str(&format!("name = {name:?}")).unwrap()
    }

    #[test]
    fn names_on_the_resolved_recipe_stay_inside_the_results_directory() {
        for bad in ["../../../x", "/abs/x", "", ".hidden", "a/b"] {
            let mut recipe = Recipe::default();
            recipe.report.tables = vec![table("ok"), table(bad)];
            let p = problems(&recipe);
            assert_eq!(p.len(), 1, "{bad:?}: {p:?}");
            assert_eq!(p[0].0, "report.tables[1].name");
            assert!(
                p[0].1
                    .contains("single file name inside the results directory"),
                "{p:?}"
            );
            let recipe = Recipe {
                name: bad.into(),
                ..Recipe::default()
            };
            let p = problems(&recipe);
            assert_eq!(p.len(), 1, "{bad:?}: {p:?}");
            assert_eq!(p[0].0, "name");
        }
        let mut recipe = Recipe::default();
        recipe.report.tables = vec![table("main"), table("lpo-vs-dpo (v2)")];
        assert!(problems(&recipe).is_empty());
        // Two tables of one name would write one set of files.
        recipe.report.tables.push(table("main"));
        let p = problems(&recipe);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "report.tables[2].name");
        assert!(p[0].1.contains("the name of report.tables[0] too"), "{p:?}");
    }

    fn hypothesis(a: &str, b: &str) -> Hypothesis {
        Hypothesis {
            a: a.into(),
            b: b.into(),
            task: None,
        }
    }

    #[test]
    fn a_declared_family_names_two_methods_once() {
        let mut recipe = Recipe::default();
        recipe.report.family = vec![hypothesis("lpo", "dpo"), hypothesis("lpo", "reference")];
        assert!(problems(&recipe).is_empty(), "{:?}", problems(&recipe));
        recipe.report.family = vec![
            hypothesis("lpo", "lpo"),
            hypothesis("reference", "dpo"),
            hypothesis("", "dpo"),
            hypothesis("lpo", "dpo"),
            hypothesis("lpo", "dpo"),
        ];
        let p = problems(&recipe);
        let at: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            at,
            [
                "report.family[0].b",
                "report.family[1].a",
                "report.family[2].a",
                "report.family[4].a"
            ],
            "{p:?}"
        );
        assert!(p[3].1.contains("repeats report.family[3]"), "{p:?}");
    }

    #[test]
    fn family_labels_must_be_the_sweeps() {
        let report = crate::schema::ReportConfig {
            family: vec![hypothesis("lpo", "reference"), hypothesis("lpx", "dpo")],
            ..Default::default()
        };
        let labels: std::collections::BTreeSet<String> =
            ["lpo", "dpo"].iter().map(|s| s.to_string()).collect();
        let d = family_label_problems(&report, &labels);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].location, "report.family[1].a");
        assert!(d[0].message.contains("\"lpx\"") && d[0].message.contains("dpo, lpo"));
        assert_eq!(d[0].help.as_deref(), Some("did you mean `lpo`?"));
    }
}
