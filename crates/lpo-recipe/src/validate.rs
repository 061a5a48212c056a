//! Cross-field checks on a resolved recipe (single keys are checked by [`crate::keys`]).

use crate::schema::Recipe;

/// Problems as (key path, message).
pub fn problems(recipe: &Recipe) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = recipe
        .model
        .dims()
        .problems()
        .into_iter()
        .map(|(k, m)| (k.to_string(), m))
        .collect();
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
    if recipe.train.rounds > 1 && recipe.data.mix.iter().any(|s| s.task.is_none()) {
        out.push((
            "train.rounds".into(),
            format!(
                "is {}, but on-policy rounds score new responses with a built-in task's reward; data.mix has a file source",
                recipe.train.rounds
            ),
        ));
    }
    let lora = &recipe.model.lora;
    if !lora.is_off() && recipe.train.rounds > 1 {
        out.push((
            "model.lora.rank".into(),
            format!(
                "is {}, but on-policy rounds (train.rounds = {}) restart from full checkpoints; LoRA runs are offline (train.rounds = 1)",
                lora.rank, recipe.train.rounds
            ),
        ));
    }
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
    }
    let d = &recipe.data;
    for (key, set) in [
        ("data.bos_token", d.bos_token.is_some()),
        ("data.eos_token", d.eos_token.is_some()),
        ("data.pad_token", d.pad_token.is_some()),
    ] {
        if set && d.tokenizer.is_none() {
            out.push((
                key.into(),
                "names a token of a tokenizer.json: set data.tokenizer too".into(),
            ));
        }
    }
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
