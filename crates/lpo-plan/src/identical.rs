//! Runs of a plan that compute the same numbers although their ids differ,
//! by the K = 2 identities of docs/losses.md.
//!
//! With two responses per list (`data.list_size = 2`, or `data.form =
//! "preference"`, which binarizes every list to its best response against a
//! strictly worse one), several losses are DPO's `softplus(-(s_w - s_l))`:
//!
//! - LPO with `gamma` = 0 at every step and `margin_weight` off, for any
//!   `alpha` and either coefficient mode (identity 1: the one response with
//!   a worse one has coefficient 1, and a tied list adds no term to either);
//! - ListMLE (identity 2), but only when no list ties: ListMLE still ranks a
//!   tied list by position where DPO drops it, so only preference pairs
//!   (never tied) qualify, not reward lists of two;
//! - DPO under any `pairing` (a list of two has one pair).
//!
//! Runs are grouped when, besides, everything else they compute from is
//! equal. The runs of a plan share one base recipe and differ only in their
//! swept values, so two of them are grouped when they take the same value on
//! every swept key except the loss keys above (`loss.kind`, `alpha`,
//! `gamma`, `coefficient`, `margin_weight`, `reward_scale`, `pairing`),
//! `eval.baseline` (which picks what a run is compared with, not what it
//! trains) and the keys outside run ids (labels, threads, ...). `beta`,
//! `normalize`, `sft_weight`, data, model, training and seed must agree.
//! Such runs train the same policy. Both still run: they are separate
//! methods in the report.

use std::collections::HashMap;

use lpo_recipe::{Coef, DataForm, LossKind, Recipe};

use crate::{Plan, PlannedRun};

/// Runs of a plan that compute the same numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdenticalGroup {
    /// Plan indices, ascending (two or more).
    pub runs: Vec<usize>,
    /// Why, citing docs/losses.md: e.g. "K = 2, gamma = 0, margin_weight off
    /// (docs/losses.md identity 1)".
    pub reason: String,
}

impl IdenticalGroup {
    /// The note `lpo plan` and `lpo sweep` print: the runs with their
    /// labels, the reason, and that both run.
    pub fn note(&self, plan: &Plan) -> String {
        let runs: Vec<String> = self
            .runs
            .iter()
            .map(|&i| {
                let run = &plan.runs[i];
                format!("{} ({})", run.id, run.recipe.method_label())
            })
            .collect();
        let (last, first) = runs.split_last().expect("a group has two or more runs");
        let (all, both) = match runs.len() {
            2 => ("", "both run"),
            _ => ("all ", "all run"),
        };
        format!(
            "runs {} and {last} are {all}mathematically identical: {}; {both}, as separate methods in the report",
            first.join(", "),
            self.reason
        )
    }
}

/// How a run's loss reduces to DPO's on its lists, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Pairwise {
    Dpo,
    Lpo,
    Listmle,
}

/// Whether `recipe`'s loss is DPO's on every list it trains on.
fn pairwise(recipe: &Recipe) -> Option<Pairwise> {
    let loss = &recipe.loss;
    // Preference pairs: two responses, the first strictly better.
    let untied_pairs = recipe.data.form == DataForm::Preference;
    let two = untied_pairs || recipe.data.list_size == 2;
    match loss.kind.single()? {
        LossKind::Dpo if two => Some(Pairwise::Dpo),
        LossKind::Lpo if two && !loss.margin_weight && always_zero(&loss.gamma) => {
            Some(Pairwise::Lpo)
        }
        LossKind::Listmle if untied_pairs => Some(Pairwise::Listmle),
        _ => None,
    }
}

/// Whether a coefficient is 0 at every step (its extremes bound it).
fn always_zero(coef: &Coef) -> bool {
    coef.extremes().iter().all(|&v| v == 0.0)
}

/// Swept keys that may differ between runs of a group: the loss keys that
/// do not change DPO's loss at K = 2 (given [`pairwise`]) and
/// `eval.baseline`; keys outside run ids are left out too.
const MAY_DIFFER: &[&str] = &[
    "loss.kind",
    "loss.alpha",
    "loss.gamma",
    "loss.coefficient",
    "loss.margin_weight",
    "loss.reward_scale",
    "loss.pairing",
    "eval.baseline",
];

/// What a run computes from besides its loss kind: its swept values on
/// every key but [`MAY_DIFFER`] and `outside` (the keys outside run ids);
/// the runs of a plan share everything else.
fn computes_from(run: &PlannedRun, outside: &[&str]) -> String {
    let within = |key: &str, root: &str| {
        key.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    };
    run.assignments
        .iter()
        .filter(|(key, _)| {
            !MAY_DIFFER.contains(&key.as_str()) && !outside.iter().any(|o| within(key, o))
        })
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect()
}

/// Groups of runs of `plan` that compute the same numbers, in plan order of
/// their first run; runs in no group are left out.
pub fn groups(plan: &Plan) -> Vec<IdenticalGroup> {
    let outside: Vec<&str> = lpo_recipe::keys::outside_run_ids()
        .map(|k| k.path)
        .collect();
    let mut by_key: HashMap<String, Vec<(usize, Pairwise)>> = HashMap::new();
    for (i, run) in plan.runs.iter().enumerate() {
        if let Some(form) = pairwise(&run.recipe) {
            by_key
                .entry(computes_from(run, &outside))
                .or_default()
                .push((i, form));
        }
    }
    let mut groups: Vec<IdenticalGroup> = by_key
        .into_values()
        .filter(|members| members.len() > 1)
        .map(|members| IdenticalGroup {
            runs: members.iter().map(|&(i, _)| i).collect(),
            reason: reason(&members),
        })
        .collect();
    groups.sort_by_key(|g| g.runs[0]);
    groups
}

/// Why the runs of a group are identical, citing docs/losses.md.
fn reason(members: &[(usize, Pairwise)]) -> String {
    let has = |form| members.iter().any(|&(_, f)| f == form);
    let (lpo, listmle) = (has(Pairwise::Lpo), has(Pairwise::Listmle));
    let mut clauses = vec![match listmle {
        true => "K = 2 preference pairs (no ties)",
        false => "K = 2",
    }];
    if lpo {
        clauses.push("gamma = 0, margin_weight off");
    }
    let cite = match (lpo, listmle) {
        (true, true) => "identities 1 and 2",
        (true, false) => "identity 1",
        (false, true) => "identity 2",
        // DPO runs that differ in loss.pairing only.
        (false, false) => {
            return "K = 2: one pair per list, whatever loss.pairing says (docs/losses.md, DPO)"
                .into()
        }
    };
    format!("{} (docs/losses.md {cite})", clauses.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of `text` (a recipe's TOML).
    fn plan_of(text: &str) -> Plan {
        let recipe: Recipe = toml::from_str(text).unwrap();
        crate::plan(&recipe).unwrap()
    }

    fn kinds(form: &str, list_size: u32, extra_axes: &str) -> Plan {
        plan_of(&format!(
            "[data]\nform = \"{form}\"\nlist_size = {list_size}\n[sweep.grid]\n\"loss.kind\" = [\"lpo\", \"dpo\", \"listmle\", \"infonca\", \"nca\"]\n{extra_axes}"
        ))
    }

    #[test]
    fn lpo_without_anchor_equals_dpo_on_lists_of_two() {
        let plan = kinds("reward", 2, "");
        let groups = groups(&plan);
        // ListMLE is not DPO on reward lists of two: they may tie.
        assert_eq!(
            groups,
            vec![IdenticalGroup {
                runs: vec![0, 1],
                reason: "K = 2, gamma = 0, margin_weight off (docs/losses.md identity 1)".into()
            }]
        );
        let note = groups[0].note(&plan);
        assert_eq!(
            note,
            format!(
                "runs {} (lpo) and {} (dpo) are mathematically identical: K = 2, gamma = 0, margin_weight off (docs/losses.md identity 1); both run, as separate methods in the report",
                plan.runs[0].id, plan.runs[1].id
            )
        );
    }

    #[test]
    fn preference_pairs_make_listmle_dpo_too() {
        // Preference pairs are two responses whatever data.list_size says.
        let plan = kinds("preference", 4, "");
        let groups = groups(&plan);
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].runs, vec![0, 1, 2]);
        assert_eq!(
            groups[0].reason,
            "K = 2 preference pairs (no ties), gamma = 0, margin_weight off (docs/losses.md identities 1 and 2)"
        );
        assert!(groups[0]
            .note(&plan)
            .contains("(listmle) are all mathematically identical"));
    }

    #[test]
    fn longer_lists_an_anchor_or_a_margin_weight_are_not_dpo() {
        assert!(groups(&kinds("reward", 4, "")).is_empty());
        assert!(groups(&kinds("reward", 3, "")).is_empty());
        // gamma > 0, at some step or throughout.
        for gamma in ["0.5", "{ kind = \"step\", values = [0.0, 0.1], at = [10] }"] {
            let plan = plan_of(&format!(
                "[data]\nlist_size = 2\n[loss]\ngamma = {gamma}\n[sweep.grid]\n\"loss.kind\" = [\"lpo\", \"dpo\"]\n"
            ));
            assert!(groups(&plan).is_empty(), "gamma = {gamma}");
        }
        let plan = plan_of(
            "[data]\nlist_size = 2\n[loss]\nmargin_weight = true\n[sweep.grid]\n\"loss.kind\" = [\"lpo\", \"dpo\"]\n",
        );
        assert!(groups(&plan).is_empty());
        // A gamma schedule that is 0 at every step is gamma = 0.
        let plan = plan_of(
            "[data]\nlist_size = 2\n[loss]\ngamma = { kind = \"linear\", from = 0.0, to = 0.0 }\n[sweep.grid]\n\"loss.kind\" = [\"lpo\", \"dpo\"]\n",
        );
        assert_eq!(groups(&plan).len(), 1);
    }

    #[test]
    fn anything_else_that_differs_keeps_runs_apart() {
        // Different beta, sft_weight, normalize, seed or data: not identical.
        for axis in [
            "\"loss.beta\" = [0.1, 0.2]",
            "\"loss.sft_weight\" = [0.0, 1.0]",
            "\"loss.normalize\" = [\"sum\", \"mean\"]",
            "\"train.seed\" = [0, 1]",
            "\"data.train_prompts\" = [64, 128]",
        ] {
            let zip = format!(
                "[data]\nlist_size = 2\n[sweep.zip]\n\"loss.kind\" = [\"lpo\", \"dpo\"]\n{axis}\n"
            );
            assert!(groups(&plan_of(&zip)).is_empty(), "{axis}");
        }
        // The same setting crossed with seeds: one group per seed.
        let plan = plan_of(
            "[data]\nlist_size = 2\n[sweep]\nseeds = [0, 1]\n[sweep.grid]\n\"loss.kind\" = [\"lpo\", \"dpo\"]\n",
        );
        let found = groups(&plan);
        assert_eq!(found.len(), 2, "{found:?}");
        for g in &found {
            let seeds: Vec<u64> = g
                .runs
                .iter()
                .map(|&i| plan.runs[i].recipe.train.seed)
                .collect();
            assert_eq!(seeds[0], seeds[1]);
        }
    }

    #[test]
    fn alpha_coefficient_pairing_labels_and_baselines_do_not_matter_at_k_2() {
        let plan = plan_of(
            "[data]\nlist_size = 2\n[sweep.zip]\n\"eval.baseline\" = [\"d\", \"d\", \"d\", \"reference\"]\nlabel = [\"a\", \"b\", \"c\", \"d\"]\n\"loss.kind\" = [\"lpo\", \"lpo\", \"dpo\", \"dpo\"]\n\"loss.alpha\" = [1.0, 0.1, 1.0, 1.0]\n\"loss.coefficient\" = [\"adaptive\", \"uniform\", \"adaptive\", \"adaptive\"]\n\"loss.pairing\" = [\"best-worst\", \"best-worst\", \"all\", \"best-rest\"]\n\"train.threads\" = [1, 2, 3, 4]\n",
        );
        assert_eq!(plan.runs.len(), 4);
        let found = groups(&plan);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].runs, vec![0, 1, 2, 3]);
        // Two DPO runs alone: the pairing has one pair to pick.
        let plan = plan_of(
            "[data]\nlist_size = 2\n[sweep.grid]\n\"loss.pairing\" = [\"best-worst\", \"all\"]\n[loss]\nkind = \"dpo\"\n",
        );
        let found = groups(&plan);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].reason.contains("whatever loss.pairing says"),
            "{found:?}"
        );
    }
}
