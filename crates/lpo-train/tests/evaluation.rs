//! Evaluation on the nano model: sampled generations against the reference
//! (common random numbers, KL estimate), and held-out list metrics checked
//! against a list-by-list recomputation.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use lpo_model::logps::response_logps;
use lpo_recipe::Recipe;
use lpo_results::{Layout, Outcome, Split};
use lpo_train::eval::{self, HeldoutSet};
use lpo_train::request::{Baseline, RunRequest};
use lpo_train::sources::encode_pair;
use lpo_train::{lists, reference, sources, Silent};
use tch::Device;

/// Model initialisation draws from libtorch's global generator (seeded per
/// run, one run per process in production): the tests here take turns, so
/// their models do not depend on how they interleave.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn recipe(seed: u64) -> Recipe {
    let mut r = Recipe::default();
    r.reference.sft_steps = 20;
    r.reference.sft_batch_size = 8;
    r.data.train_prompts = 40;
    r.data.list_size = 3;
    r.data.eval_fraction = 0.25;
    r.eval.prompts = 10;
    r.eval.samples = 3;
    r.eval.max_new_tokens = 6;
    r.train.seed = seed;
    r
}

#[test]
fn a_policy_equal_to_the_reference_ties_everywhere_with_zero_kl() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let recipe = recipe(3);
    let srcs = sources::load_sources(&recipe).unwrap();
    let (tok, tok_id) = sources::tokenizer(&recipe).unwrap();
    let reference = reference::obtain(
        &recipe,
        &srcs,
        tok.as_ref(),
        &tok_id,
        &layout,
        Device::Cpu,
        &mut Silent,
    )
    .unwrap();
    let (_vs, policy) = reference.policy(Device::Cpu).unwrap();
    let examples = lists::eval_examples(&recipe, &srcs).unwrap();
    let request = RunRequest {
        recipe: &recipe,
        run_id: "test",
        assignments: BTreeMap::new(),
        layout: &layout,
        device: Device::Cpu,
        baseline: Baseline::Reference,
        group: None,
    };
    let rows = eval::generations(
        &request,
        &reference,
        &policy,
        tok.as_ref(),
        &lpo_train::rewards::Rewards::load(&recipe, Device::Cpu).unwrap(),
        &examples,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(rows.len(), 10);
    // Common random numbers: the same model draws the same responses.
    for r in &rows {
        assert_eq!(r.samples, 3);
        assert_eq!(r.outcome, Outcome::Tie, "{r:?}");
        assert_eq!(r.policy_response, r.baseline_response);
        assert_eq!(
            (r.policy_reward, r.policy_pass),
            (r.baseline_reward, r.baseline_pass)
        );
        assert_eq!(r.policy_kl, 0.0);
        assert!(r.prompt_id.contains("-s3-"), "{}", r.prompt_id);
    }
    // Half validation, half test; the headline counts the test half only.
    let validation = rows.iter().filter(|r| r.split == Split::Validation).count();
    assert_eq!(validation, 5);
    let headline = eval::headline(&rows, &examples);
    assert_eq!(
        (headline.prompts, headline.ties, headline.samples),
        (5, 5, 3)
    );
}

#[test]
fn heldout_metrics_match_a_list_by_list_recomputation() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    // A files-only mix: 40 records of 3 responses with distinct rewards.
    let path = dir.path().join("lists.jsonl");
    let lines: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#"{{"prompt": "{i}+{i}=", "responses": [{{"text": "{}", "reward": 3}}, {{"text": "{}", "reward": 1}}, {{"text": "7", "reward": 2}}]}}"#,
                2 * i,
                i + 1
            )
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    let mut recipe = recipe(0);
    recipe.data.mix = vec![lpo_recipe::DataSource {
        task: None,
        path: Some(path.display().to_string()),
        format: Some(lpo_recipe::FileFormat::Native),
        weight: 1.0,
        split: None,
        eval_split: None,
        reward: None,
    }];
    recipe.data.oversample = true; // 40 lists from 28 training records
    let srcs = sources::load_sources(&recipe).unwrap();
    let (tok, tok_id) = sources::tokenizer(&recipe).unwrap();
    let obtain = |r: &Recipe| {
        reference::obtain(
            r,
            &srcs,
            tok.as_ref(),
            &tok_id,
            &layout,
            Device::Cpu,
            &mut Silent,
        )
        .unwrap()
    };
    let reference = obtain(&recipe);
    // Another SFT model (other seed) stands in for a trained policy.
    let mut other = recipe.clone();
    other.train.seed = 1;
    other.reference.sft_steps = 30;
    let policy = obtain(&other);
    let built = lists::obtain(
        &recipe,
        &srcs,
        tok.as_ref(),
        &reference,
        &lpo_train::rewards::Rewards::load(&recipe, Device::Cpu).unwrap(),
        &layout,
        &mut Silent,
    )
    .unwrap();
    // The records whose prompt hashes into the held-out share (12 of 40
    // here), none of them trained on.
    let held_out = (0..40)
        .filter(|i| lpo_tasks::split::is_heldout(&format!("{i}+{i}="), 0.25))
        .count();
    assert_eq!(held_out, 12);
    assert_eq!(built.heldout.len(), held_out);
    for l in &built.heldout {
        assert!(built.lists.iter().all(|t| t.list.prompt != l.list.prompt));
    }
    // Without a built-in task there is nothing to generate for.
    assert!(lists::eval_examples(&recipe, &srcs).unwrap().is_empty());
    let held = HeldoutSet::build(
        &recipe,
        &built.heldout,
        tok.as_ref(),
        &reference.model,
        None,
        &mut Silent,
    )
    .unwrap();
    let beta = 0.5;
    let (rows, headline) = held
        .evaluate(&policy.model, beta, None, &mut Silent)
        .unwrap();
    assert_eq!(rows.len(), held_out);
    let window = sources::Window::new(
        &recipe,
        reference.model.config().max_position_embeddings as usize,
    );
    let mut pairs = 0;
    let mut correct = 0;
    for (row, list) in rows.iter().zip(&built.heldout) {
        let responses: Vec<Vec<i64>> = list
            .list
            .responses
            .iter()
            .map(|r| {
                encode_pair(tok.as_ref(), &[], &list.list.prompt, Some(&r.text), &window)
                    .unwrap()
                    .response
            })
            .collect();
        let prompt = encode_pair(tok.as_ref(), &[], &list.list.prompt, None, &window)
            .unwrap()
            .prompt;
        let k = responses.len();
        let logps = |m: &lpo_model::Mistral| -> Vec<f64> {
            let out = tch::no_grad(|| {
                response_logps(m, std::slice::from_ref(&prompt), &responses, k, tok.pad())
            });
            Vec::<f64>::try_from(out.sum.to_kind(tch::Kind::Double).view(-1)).unwrap()
        };
        let (lp, lr) = (logps(&policy.model), logps(&reference.model));
        let s: Vec<f64> = lp.iter().zip(&lr).map(|(p, r)| beta * (p - r)).collect();
        let rewards: Vec<f64> = list.list.responses.iter().map(|r| r.reward).collect();
        let expected = plain_metrics(&rewards, &s);
        assert_eq!(row.pairs, expected.pairs, "{row:?}");
        // The batch and the single list are different products (other row
        // counts, so other kernels or blockings): implicit rewards agree to
        // about 1e-6, so a pair closer than 1e-5 may order either way.
        let near_ties = (0..k)
            .flat_map(|i| (0..k).map(move |j| (i, j)))
            .filter(|&(i, j)| rewards[i] > rewards[j] && (s[i] - s[j]).abs() < 1e-5)
            .count() as u32;
        assert!(
            row.correct.abs_diff(expected.correct) <= near_ties,
            "{row:?} vs {expected:?}"
        );
        match (row.margin, expected.margin) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-4, "{a} vs {b}"),
            (a, b) => assert_eq!(a, b),
        }
        assert_eq!(row.responses as usize, k);
        if row.split == Split::Test {
            pairs += row.pairs;
            correct += row.correct;
        }
    }
    assert!(pairs > 0, "the sampled held-out lists have ordered pairs");
    let accuracy = f64::from(correct) / f64::from(pairs);
    assert!((headline.ranking_accuracy - accuracy).abs() < 1e-12);
    // The curve at the reference itself: every implicit reward is 0.
    let curve = held
        .curve(&reference.model, beta, 0, None, &mut Silent)
        .unwrap();
    assert_eq!((curve.margin, curve.ranking_accuracy), (0.0, 0.0));
}

/// Pairs, correctly ordered pairs and margin of one list by the definitions
/// in docs/results.md, written out with plain loops (independent of
/// `lpo_train::eval::list_metrics`): every (i, j) with r_i > r_j is a pair,
/// correct when s_i > s_j; the margin is the mean of s_i - s_j over them.
#[derive(Debug)]
struct Plain {
    pairs: u32,
    correct: u32,
    margin: Option<f64>,
}

fn plain_metrics(rewards: &[f64], s: &[f64]) -> Plain {
    let (mut pairs, mut correct, mut gap) = (0u32, 0u32, 0.0);
    for i in 0..rewards.len() {
        for j in 0..rewards.len() {
            if rewards[i] > rewards[j] {
                pairs += 1;
                correct += u32::from(s[i] > s[j]);
                gap += s[i] - s[j];
            }
        }
    }
    Plain {
        pairs,
        correct,
        margin: (pairs > 0).then(|| gap / f64::from(pairs)),
    }
}
