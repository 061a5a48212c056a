//! Clean splits (issue 29): no prompt a run validates or tests on is seen
//! by any training stage of any run (SFT demonstrations, reward lists; the
//! rounds answer the training lists' prompts again, tests/cli_rounds.rs),
//! and a prompt's split is a function of its text: it does not move with
//! `eval.prompts`, seeds or `data.train_prompts`.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use lpo_recipe::{DataSource, Recipe};
use lpo_results::{Layout, Split};
use lpo_train::eval::heldout_split;
use lpo_train::{lists, reference, sources, Silent};
use tch::Device;

fn recipe(file: &std::path::Path, seed: u64, train_prompts: u32, eval_prompts: u32) -> Recipe {
    let mut r = Recipe::default();
    r.reference.sft_steps = 2;
    r.reference.sft_batch_size = 4;
    r.data.list_size = 2;
    r.data.train_prompts = train_prompts;
    r.data.eval_fraction = 0.25;
    r.eval.prompts = eval_prompts;
    r.eval.max_new_tokens = 4;
    r.train.seed = seed;
    let source = |task: Option<&str>, path: Option<String>| DataSource {
        task: task.map(String::from),
        path,
        format: None,
        weight: 1.0,
        split: None,
        eval_split: None,
        reward: None,
    };
    let task = |name: &str| source(Some(name), None);
    r.data.mix = vec![
        task("arith"),
        task("program"),
        task("rating"),
        source(None, Some(file.display().to_string())),
    ];
    r
}

/// What one run trains on and what it holds out (prompt keys and splits).
struct Seen {
    trained: HashSet<String>,
    held: Vec<(String, Split)>,
}

fn seen(recipe: &Recipe, layout: &Layout) -> Seen {
    let srcs = sources::load_sources(recipe).unwrap();
    let (tok, tok_id) = sources::tokenizer(recipe).unwrap();
    let reference = reference::obtain(
        recipe,
        &srcs,
        tok.as_ref(),
        &tok_id,
        layout,
        Device::Cpu,
        &mut Silent,
    )
    .unwrap();
    let rewards = lpo_train::rewards::Rewards::load(recipe, Device::Cpu).unwrap();
    let built = lists::obtain(
        recipe,
        &srcs,
        tok.as_ref(),
        &reference,
        &rewards,
        layout,
        &mut Silent,
    )
    .unwrap();
    // Far more demonstrations than this SFT shows (a 6000-step SFT of
    // batch 32 shows 192,000): the same stream, so a prefix of it.
    let mut trained: HashSet<String> = reference::Demonstrations::new(recipe, &srcs)
        .take(50_000)
        .map(|(context, prompt, _)| lpo_data::prompt_key(&context, &prompt))
        .collect();
    trained.extend(built.lists.iter().map(|l| l.list.key()));
    let vf = recipe.eval.validation_fraction;
    let mut held: Vec<(String, Split)> = built
        .heldout
        .iter()
        .map(|l| {
            let key = l.list.key();
            let split = heldout_split(lpo_tasks::Task::from_name(&l.source), &key, vf);
            (key, split)
        })
        .collect();
    for e in lists::eval_examples(recipe, &srcs).unwrap() {
        let key = lpo_data::prompt_key(e.context(), e.prompt());
        let split = heldout_split(e.task(), &key, vf);
        held.push((key, split));
    }
    Seen { trained, held }
}

#[test]
fn no_held_out_prompt_is_trained_on_in_any_setting_and_splits_stay() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scored.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    for i in 0..80 {
        writeln!(
            f,
            r#"{{"prompt": "q{i}", "responses": [{{"text": "a", "reward": 1}}, {{"text": "b", "reward": 2}}]}}"#
        )
        .unwrap();
    }
    drop(f);
    let layout = Layout::new(dir.path());
    let runs: Vec<Seen> = [(0, 60, 30), (1, 120, 90), (2, 30, 150)]
        .into_iter()
        .map(|(seed, train, eval)| seen(&recipe(&file, seed, train, eval), &layout))
        .collect();

    let mut split_of: HashMap<&str, Split> = HashMap::new();
    for run in &runs {
        assert!(run.held.len() > 30);
        for (key, split) in &run.held {
            // Never seen by training in this run or any other setting.
            for other in &runs {
                assert!(!other.trained.contains(key), "{key:?} is trained on");
            }
            // One split per prompt in every setting.
            let first = *split_of.entry(key).or_insert(*split);
            assert_eq!(first, *split, "{key:?} moved between splits");
        }
    }
    let tests = split_of.values().filter(|s| **s == Split::Test).count();
    let validations = split_of.len() - tests;
    assert!(
        tests > 50 && validations > 50,
        "{tests} test, {validations} validation"
    );
    // Prompts of a task drawn as test in one run are test in all: some
    // prompts recur across the three settings, with one split.
    let recurring = split_of
        .keys()
        .filter(|k| {
            runs.iter()
                .filter(|r| r.held.iter().any(|(h, _)| h == *k))
                .count()
                > 1
        })
        .count();
    assert!(recurring > 0);
}
