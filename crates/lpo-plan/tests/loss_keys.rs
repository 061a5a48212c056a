//! Which `loss.*` keys enter a run id comes from the loss-kind table
//! (`lpo_recipe::LOSSES`): for every kind, moving a key it reads away from
//! its default moves the run id, and moving a key it does not read leaves
//! the id alone (two runs that compute the same numbers share an id; two
//! that do not never do).

use lpo_recipe::keys::KEYS;
use lpo_recipe::{LossKind, Recipe, LOSSES};

fn recipe(text: &str) -> Recipe {
    let table: toml::Table = toml::from_str(text).unwrap();
    let problems = lpo_recipe::keys::check_table(&table);
    assert!(problems.is_empty(), "{text}: {problems:?}");
    toml::Value::Table(table).try_into().unwrap()
}

/// `loss.kind` as recipes write it: every kind alone, and weighted sums
/// whose parts read different keys.
fn objectives() -> Vec<String> {
    let mut out: Vec<String> = LOSSES.iter().map(|s| format!("\"{}\"", s.name)).collect();
    out.extend([
        "[{ kind = \"simpo\", weight = 0.5 }, { kind = \"lpo\", weight = 0.5 }]".to_string(),
        "[{ kind = \"robust\" }, { kind = \"exo_pair\", weight = 2 }, { kind = \"discopop\" }]"
            .to_string(),
        "[{ kind = \"pro\", weight = 0.1 }, { kind = \"rrhf\", weight = 0.9 }]".to_string(),
    ]);
    out
}

#[test]
fn a_kind_s_run_id_moves_with_exactly_the_keys_it_reads() {
    let loss_keys: Vec<_> = KEYS
        .iter()
        .filter(|k| k.path.starts_with("loss.") && k.path != "loss.kind")
        .collect();
    assert!(loss_keys.len() >= 10, "{}", loss_keys.len());
    let mut wrong = Vec::new();
    for kind in objectives() {
        for margin_weight in [false, true] {
            let base_text = format!("[loss]\nkind = {kind}\nmargin_weight = {margin_weight}\n");
            let base_recipe = recipe(&base_text);
            let base = lpo_plan::run_id(&base_recipe);
            let reads = base_recipe.loss.kind.relevant_keys(margin_weight);
            for key in &loss_keys {
                let name = key.path.trim_start_matches("loss.");
                if name == "margin_weight" {
                    continue; // the switch itself: set on the base line
                }
                let text = format!(
                    "{base_text}{name} = {}\n",
                    key.ty.another_value(key.default).unwrap()
                );
                let moved = lpo_plan::run_id(&recipe(&text)) != base;
                if moved != reads.contains(&name) {
                    wrong.push(format!(
                        "{kind} (margin_weight = {margin_weight}): {} {}",
                        key.path,
                        if moved {
                            "moves the id but is not read"
                        } else {
                            "is read but does not move the id"
                        }
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A weighted sum's id moves with each weight and with the parts' order
/// (the first part's implicit reward is the one logged); one part of weight
/// 1 is the kind itself.
#[test]
fn weights_and_order_of_parts_enter_the_run_id() {
    let id = |kind: &str| lpo_plan::run_id(&recipe(&format!("[loss]\nkind = {kind}\n")));
    let mpo = id("[{ kind = \"dpo\", weight = 0.8 }, { kind = \"bco_pair\", weight = 0.2 }]");
    assert_ne!(
        mpo,
        id("[{ kind = \"dpo\", weight = 0.7 }, { kind = \"bco_pair\", weight = 0.2 }]")
    );
    assert_ne!(
        mpo,
        id("[{ kind = \"bco_pair\", weight = 0.2 }, { kind = \"dpo\", weight = 0.8 }]")
    );
    assert_ne!(mpo, id("\"dpo\""));
    assert_eq!(id("\"nca\""), id("[{ kind = \"nca\" }]"));
    assert_eq!(id("\"nca\""), id("[{ kind = \"nca\", weight = 1.0 }]"));
    assert_ne!(id("\"nca\""), id("[{ kind = \"nca\", weight = 2.0 }]"));
}

#[test]
fn every_kind_reads_only_keys_that_exist() {
    for spec in LOSSES {
        for key in spec.kind.relevant_keys(true) {
            let path = format!("loss.{key}");
            assert!(
                KEYS.iter().any(|k| k.path == path),
                "{}: {path} is no key",
                spec.name
            );
        }
    }
    assert_eq!(LossKind::from_name("dpo"), Some(LossKind::Dpo));
}
