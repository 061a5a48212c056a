//! `lpo loss`: evaluate a configured loss on given values, for parity checks.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use lpo_loss::{compute, LossInput, LossOutput, LossParams};
use lpo_recipe::{LossConfig, LossKind, Recipe};
use tch::Tensor;

/// Options of `lpo loss`.
#[derive(Debug, Args)]
pub struct LossArgs {
    /// Loss kind (the table of loss kinds in docs/recipes.md). A weighted
    /// sum of kinds is given as a recipe gives it, with
    /// `--set 'loss.kind=[{ kind = "dpo", weight = 0.8 }, { kind = "bco_pair", weight = 0.2 }]'`
    /// instead.
    #[arg(long = "loss", value_name = "KIND",
          value_parser = clap::builder::PossibleValuesParser::new(lpo_recipe::LOSS_NAMES))]
    pub kind: Option<String>,
    /// Loss parameters: `--set loss.alpha=0.5` (any `loss.` key; schedules allowed).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// JSON with policy_logps, reference_logps, rewards and optional mask and
    /// token_counts (tokens each policy log-prob sums over, for the supervised
    /// term; absent: log-probs are per token), each [[...]].
    #[arg(long)]
    pub input: PathBuf,
    /// Optimizer step at which schedules are evaluated.
    #[arg(long, default_value_t = 0)]
    pub step: u64,
    /// Total optimizer steps for schedules.
    #[arg(long, default_value_t = 1)]
    pub steps: u64,
}

/// Runs `lpo loss` and prints JSON. A malformed input file or `--set` is
/// bad input (exit 2, `lpo_exec::exit`), printed like every error.
pub fn run(args: &LossArgs) -> Result<std::process::ExitCode> {
    let inputs = loss_config(args).and_then(|config| Ok((config, Values::read(&args.input)?)));
    let (config, values) = match inputs {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(crate::exit::code(crate::exit::BAD_INPUT));
        }
    };
    let params = LossParams::at_step(&config, args.step, args.steps);
    let (out, grad_rows) = loss_and_grad(&params, &values);
    let report = serde_json::json!({
        "loss": out.loss.double_value(&[]),
        "per_prompt": Vec::<f64>::try_from(&out.per_prompt)?,
        "contributes": Vec::<bool>::try_from(&out.contributes)?,
        "grad_policy_logps": grad_rows,
        "params": {
            "kind": config.kind.label(), "beta": params.beta, "alpha": params.alpha, "gamma": params.gamma,
            "sft_weight": params.sft_weight, "step": args.step, "steps": args.steps,
        },
        "parts": params.parts.iter().zip(Vec::<f64>::try_from(&out.parts)?).map(|(p, loss)| {
            serde_json::json!({ "kind": p.kind.as_str(), "weight": p.weight, "loss": loss })
        }).collect::<Vec<_>>(),
        "ranking_accuracy": out.stats().ranking_accuracy,
        "sft_loss": out.stats().sft_loss,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(std::process::ExitCode::SUCCESS)
}

/// The contents of an `--input` file: `rows` lists of `k` values each.
struct Values {
    rows: usize,
    k: usize,
    policy_logps: Vec<Vec<f64>>,
    reference_logps: Vec<Vec<f64>>,
    rewards: Vec<Vec<f64>>,
    mask: Vec<Vec<bool>>,
    token_counts: Option<Vec<Vec<f64>>>,
}

impl Values {
    /// Reads and checks the JSON file at `path`: every matrix shaped like
    /// policy_logps, and each row valid for a loss.
    fn read(path: &Path) -> Result<Values> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let file = path.display().to_string();
        let lp = matrix(&json, "policy_logps", &file)?;
        let (rows, k) = (lp.len(), lp[0].len());
        let lr = matrix(&json, "reference_logps", &file)?;
        let r = matrix(&json, "rewards", &file)?;
        for (name, m) in [("reference_logps", &lr), ("rewards", &r)] {
            check_shape(m, name, rows, k, &file)?;
        }
        let mask: Vec<Vec<bool>> = match json.get("mask") {
            None => vec![vec![true; k]; rows],
            Some(m) => bool_matrix(m, rows, k, &file)?,
        };
        let token_counts = match json.get("token_counts") {
            None => None,
            Some(_) => {
                let m = matrix(&json, "token_counts", &file)?;
                check_shape(&m, "token_counts", rows, k, &file)?;
                Some(m)
            }
        };
        let values = Values {
            rows,
            k,
            policy_logps: lp,
            reference_logps: lr,
            rewards: r,
            mask,
            token_counts,
        };
        values.check_rows(&file)?;
        Ok(values)
    }

    /// Every row has at least two valid responses, and every valid one
    /// finite values (and a positive token count).
    fn check_rows(&self, file: &str) -> Result<()> {
        let k = self.k;
        for (b, row) in self.mask.iter().enumerate() {
            let valid = row.iter().filter(|v| **v).count();
            if valid < 2 {
                bail!("{file}: row {b} has {valid} valid response(s); every loss needs K >= 2");
            }
            for (name, m) in [
                ("policy_logps", &self.policy_logps),
                ("reference_logps", &self.reference_logps),
                ("rewards", &self.rewards),
            ] {
                if let Some(i) = (0..k).find(|&i| row[i] && !m[b][i].is_finite()) {
                    bail!(
                        "{file}: `{name}`[{b}][{i}] is {}, not a finite number",
                        m[b][i]
                    );
                }
            }
            if let Some(m) = &self.token_counts {
                if let Some(i) = (0..k).find(|&i| row[i] && !(m[b][i].is_finite() && m[b][i] > 0.0))
                {
                    bail!(
                        "{file}: `token_counts`[{b}][{i}] is {}, not a positive number",
                        m[b][i]
                    );
                }
            }
        }
        Ok(())
    }
}

/// Fails unless `m` (the input's `name`) is `rows` x `k` like policy_logps.
fn check_shape(m: &[Vec<f64>], name: &str, rows: usize, k: usize, file: &str) -> Result<()> {
    if m.len() != rows || m[0].len() != k {
        bail!(
            "{file}: `{name}` is {}x{}, but policy_logps is {rows}x{k}",
            m.len(),
            m[0].len()
        );
    }
    Ok(())
}

/// The loss of `values` under `params`, and its gradient with respect to
/// the policy log-probs (zero where masked), row by row.
fn loss_and_grad(params: &LossParams, values: &Values) -> (LossOutput, Vec<Vec<f64>>) {
    let (rows, k) = (values.rows as i64, values.k as i64);
    let tensor = |m: &Vec<Vec<f64>>| Tensor::from_slice(&m.concat()).view([rows, k]);
    let policy = tensor(&values.policy_logps).set_requires_grad(true);
    let mask_t = Tensor::from_slice(&values.mask.concat()).view([rows, k]);
    let counts_t = values.token_counts.as_ref().map(tensor);
    let out = compute(
        params,
        &LossInput {
            policy_logps: &policy,
            reference_logps: &tensor(&values.reference_logps),
            rewards: &tensor(&values.rewards),
            mask: &mask_t,
            token_counts: counts_t.as_ref(),
        },
    );
    out.loss.backward();
    let grad = policy.grad().masked_fill(&mask_t.logical_not(), 0.0);
    let grad_rows = (0..rows)
        .map(|b| Vec::<f64>::try_from(grad.get(b)).unwrap_or_default())
        .collect();
    (out, grad_rows)
}

fn loss_config(args: &LossArgs) -> Result<LossConfig> {
    let sets_kind = args.sets.iter().any(|s| s.starts_with("loss.kind="));
    let kind = match (&args.kind, sets_kind) {
        (Some(_), true) => bail!("give the loss as --loss KIND or as --set loss.kind=..., not both"),
        (None, false) => bail!(
            "give the loss: --loss KIND, or a weighted sum as --set 'loss.kind=[{{ kind = \"dpo\", weight = 0.8 }}, ...]'"
        ),
        (Some(name), false) => Some(LossKind::from_name(name).with_context(|| {
            format!(
                "unknown loss `{name}`; expected one of {}",
                lpo_recipe::LOSS_NAMES.join(", ")
            )
        })?),
        (None, true) => None,
    };
    let mut value = toml::Value::try_from(Recipe::default())?;
    for set in &args.sets {
        let (key, raw) = set
            .split_once('=')
            .with_context(|| format!("`--set {set}` is not key=value"))?;
        if !key.starts_with("loss.") {
            bail!("`--set {set}`: lpo loss only takes `loss.` keys");
        }
        let table = lpo_recipe::load::nest(key, lpo_recipe::load::parse_value(raw));
        if let Some(problem) = lpo_recipe::keys::check_table(&table).into_iter().next() {
            bail!(
                "--set {set}: {}{}",
                problem.message,
                problem.help.map(|h| format!("; {h}")).unwrap_or_default()
            );
        }
        lpo_plan::set_path(&mut value, key, lpo_recipe::load::parse_value(raw));
    }
    let recipe: Recipe = value.try_into()?;
    Ok(match kind {
        Some(kind) => LossConfig {
            kind: kind.into(),
            ..recipe.loss
        },
        None => recipe.loss,
    })
}

fn matrix(json: &serde_json::Value, name: &str, file: &str) -> Result<Vec<Vec<f64>>> {
    let rows = json
        .get(name)
        .and_then(|v| v.as_array())
        .with_context(|| format!("{file}: `{name}` is missing or not an array of rows"))?;
    if rows.is_empty() {
        bail!("{file}: `{name}` has no rows");
    }
    let mut out = Vec::with_capacity(rows.len());
    for (b, row) in rows.iter().enumerate() {
        let row = row
            .as_array()
            .with_context(|| format!("{file}: `{name}`[{b}] is not an array"))?;
        let values: Vec<f64> = row
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f64().with_context(|| {
                    format!("{file}: `{name}`[{b}][{i}] is {v}, not a number (NaN is not allowed)")
                })
            })
            .collect::<Result<_>>()?;
        if let Some(first) = out.first().map(Vec::len) {
            if values.len() != first {
                bail!("{file}: `{name}` is ragged: row {b} has {} entries, row 0 has {first}; pad rows and use `mask`", values.len());
            }
        }
        out.push(values);
    }
    Ok(out)
}

fn bool_matrix(
    value: &serde_json::Value,
    rows: usize,
    k: usize,
    file: &str,
) -> Result<Vec<Vec<bool>>> {
    let parsed: Vec<Vec<bool>> = serde_json::from_value(value.clone())
        .with_context(|| format!("{file}: `mask` must be [[true/false, ...]]"))?;
    if parsed.len() != rows || parsed.iter().any(|row| row.len() != k) {
        bail!("{file}: `mask` must be {rows}x{k} like policy_logps");
    }
    Ok(parsed)
}
