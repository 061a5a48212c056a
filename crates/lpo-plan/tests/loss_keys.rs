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

#[test]
fn a_kind_s_run_id_moves_with_exactly_the_keys_it_reads() {
    let loss_keys: Vec<_> = KEYS
        .iter()
        .filter(|k| k.path.starts_with("loss.") && k.path != "loss.kind")
        .collect();
    assert!(loss_keys.len() >= 10, "{}", loss_keys.len());
    let mut wrong = Vec::new();
    for spec in LOSSES {
        for margin_weight in [false, true] {
            let base_text = format!(
                "[loss]\nkind = \"{}\"\nmargin_weight = {margin_weight}\n",
                spec.name
            );
            let base = lpo_plan::run_id(&recipe(&base_text));
            let reads = spec.kind.relevant_keys(margin_weight);
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
                        "{} (margin_weight = {margin_weight}): {} {}",
                        spec.name,
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
