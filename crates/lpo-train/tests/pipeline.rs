//! The data pipeline end to end on the nano model: SFT reference, reward
//! lists, caching, binarization, held-out prompts, file sources.
#![allow(clippy::too_many_lines)]

use std::io::Write;

use lpo_recipe::{DataForm, DataSource, FileFormat, OnBadRecord, Recipe};
use lpo_results::Layout;
use lpo_train::{lists, reference, sources, Silent};
use tch::Device;

/// Records the phases a call starts.
#[derive(Default)]
struct Phases(Vec<String>);

impl lpo_train::Progress for Phases {
    fn start(&mut self, phase: &str, _total: u64) {
        self.0.push(phase.to_string());
    }
    fn update(&mut self, _done: u64, _detail: &str) {}
    fn finish(&mut self) {}
}

fn recipe() -> Recipe {
    let mut r = Recipe::default();
    r.reference.sft_steps = 10;
    r.reference.sft_batch_size = 8;
    r.data.train_prompts = 24;
    r.data.list_size = 3;
    r.eval.prompts = 20;
    r.eval.max_new_tokens = 6;
    r
}

#[test]
fn reference_and_lists_are_built_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let recipe = recipe();
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
    assert_eq!(reference.meta.origin, "sft");
    assert!(reference.meta.final_loss.unwrap().is_finite());
    let built = lists::obtain(
        &recipe,
        &srcs,
        tok.as_ref(),
        &reference,
        &no_rewards(),
        &layout,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(built.lists.len(), 24);
    assert!(built
        .lists
        .iter()
        .all(|l| l.list.responses.len() == 3 && l.source == "arith"));
    assert!(built
        .lists
        .iter()
        .flat_map(|l| &l.list.responses)
        .all(|r| (0.0..=10.0).contains(&r.reward)));

    // A second request (same recipe) loads both from the cache.
    let modified = std::fs::metadata(reference.dir.join("model.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    let again = reference::obtain(
        &recipe,
        &srcs,
        tok.as_ref(),
        &tok_id,
        &layout,
        Device::Cpu,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(again.meta.id, reference.meta.id);
    assert_eq!(again.meta.seconds, reference.meta.seconds);
    assert_eq!(
        std::fs::metadata(again.dir.join("model.safetensors"))
            .unwrap()
            .modified()
            .unwrap(),
        modified
    );
    // The lists come from the cache: nothing is sampled (no phase starts),
    // and the file is read as it is, not regenerated.
    let mut phases = Phases::default();
    let cached = lists::obtain(
        &recipe,
        &srcs,
        tok.as_ref(),
        &again,
        &no_rewards(),
        &layout,
        &mut phases,
    )
    .unwrap();
    assert_eq!(cached.id, built.id);
    assert_eq!(cached.lists, built.lists);
    assert!(
        phases.0.is_empty(),
        "cached lists were regenerated: {:?}",
        phases.0
    );

    // A cache file with one reward flipped (same length, still valid JSON)
    // no longer matches its manifest: it is moved aside and made again.
    let text = std::fs::read_to_string(&built.path).unwrap();
    let flipped = text.replacen("\"reward\":", "\"reward\":1", 1);
    assert_ne!(flipped, text);
    std::fs::write(&built.path, &flipped).unwrap();
    let healed = lists::obtain(
        &recipe,
        &srcs,
        tok.as_ref(),
        &again,
        &no_rewards(),
        &layout,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(healed.lists, built.lists);
    let aside = built.path.with_file_name(format!(
        "{}.damaged-1",
        built.path.file_name().unwrap().to_string_lossy()
    ));
    assert_eq!(std::fs::read_to_string(aside).unwrap(), flipped);

    // A loss setting does not change the data; a data setting does.
    let mut other_loss = recipe.clone();
    other_loss.loss.kind = lpo_recipe::LossKind::Dpo.into();
    let same = lists::obtain(
        &other_loss,
        &srcs,
        tok.as_ref(),
        &again,
        &no_rewards(),
        &layout,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(same.id, built.id);
    let mut bigger = recipe.clone();
    bigger.data.list_size = 4;
    let different = lists::obtain(
        &bigger,
        &srcs,
        tok.as_ref(),
        &again,
        &no_rewards(),
        &layout,
        &mut Silent,
    )
    .unwrap();
    assert_ne!(different.id, built.id);

    // Preference form: pairs of (best, strictly worse); all-tied lists dropped.
    let (pairs, dropped) = built.in_form(DataForm::Preference, 0);
    assert_eq!(pairs.len() + dropped, 24);
    assert!(pairs
        .iter()
        .all(|p| p.list.responses.len() == 2
            && p.list.responses[0].reward > p.list.responses[1].reward));

    // Evaluation prompts never repeat a training prompt.
    let train: std::collections::HashSet<&str> =
        built.lists.iter().map(|l| l.list.prompt.as_str()).collect();
    let eval = lists::eval_examples(&recipe, &srcs).unwrap();
    assert_eq!(eval.len(), 20);
    assert!(eval.iter().all(|e| !train.contains(e.prompt())));
}

#[test]
fn file_sources_mix_with_tasks_and_bad_lines_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lists.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..5 {
        writeln!(
            f,
            r#"{{"prompt": "q{i}", "responses": [{{"text": "a", "reward": 1}}, {{"text": "b", "reward": 2}}, {{"text": "c", "reward": 3}}, {{"text": "d", "reward": 4}}]}}"#
        )
        .unwrap();
    }
    writeln!(f, r#"{{"prompt": "bad"}}"#).unwrap();
    drop(f);
    let mut recipe = recipe();
    recipe.data.mix.push(DataSource {
        task: None,
        path: Some(path.display().to_string()),
        format: Some(FileFormat::Native),
        weight: 1.0,
        split: None,
        eval_split: None,
        reward: None,
    });
    let err = sources::load_sources(&recipe).err().unwrap().to_string();
    assert_eq!(
        err,
        format!("{}:6: missing field `responses`", path.display())
    );

    recipe.data.on_bad_record = OnBadRecord::Skip;
    recipe.data.eval_fraction = 0.25;
    recipe.data.oversample = true; // the file's few records fill their share of 24 lists
    let srcs = sources::load_sources(&recipe).unwrap();
    let layout = Layout::new(dir.path().join("results"));
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
    let built = lists::obtain(
        &recipe,
        &srcs,
        tok.as_ref(),
        &reference,
        &no_rewards(),
        &layout,
        &mut Silent,
    )
    .unwrap();
    let from_file: Vec<_> = built.lists.iter().filter(|l| l.source != "arith").collect();
    assert!(
        !from_file.is_empty() && from_file.len() < 24,
        "{}",
        from_file.len()
    );
    // Records with more than K = 3 responses are subsampled to K.
    assert!(from_file.iter().all(|l| l.list.responses.len() == 3));

    // Held-out lists: the file records whose prompt hashes into the 0.25
    // share (q3 alone), and round(0.25 * 24) slots over the mix for the
    // task; none of their prompts is trained on.
    let held_files: Vec<_> = built
        .heldout
        .iter()
        .filter(|l| l.source != "arith")
        .collect();
    let held: Vec<String> = (0..5)
        .map(|i| format!("q{i}"))
        .filter(|q| lpo_tasks::split::is_heldout(q, 0.25))
        .collect();
    assert_eq!(held, ["q3"]);
    assert_eq!(held_files.len(), 1);
    assert_eq!(held_files[0].list.prompt, "q3");
    assert!(built.heldout.iter().all(|l| l.heldout));
    assert!(!built.heldout.iter().any(|l| l.source == "arith") || built.heldout.len() > 1);
    let trained: std::collections::HashSet<&str> =
        built.lists.iter().map(|l| l.list.prompt.as_str()).collect();
    for l in &built.heldout {
        assert!(
            !trained.contains(l.list.prompt.as_str()),
            "{} was trained on",
            l.list.prompt
        );
    }
    // The cache reads back both parts.
    let again = lists::obtain(
        &recipe,
        &srcs,
        tok.as_ref(),
        &reference,
        &no_rewards(),
        &layout,
        &mut Silent,
    )
    .unwrap();
    assert_eq!((again.lists, again.heldout), (built.lists, built.heldout));
}

/// The reward sources of a mix without prompt files: nothing loaded.
fn no_rewards() -> lpo_train::rewards::Rewards {
    lpo_train::rewards::Rewards::load(&Recipe::default(), Device::Cpu).unwrap()
}
