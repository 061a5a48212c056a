//! Reports built from synthetic results directories (no training).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lpo_recipe::Recipe;
use lpo_results::records::{to_csv, CONFIG, CURVES, EVAL, HELDOUT, METRICS};
use lpo_results::{
    CurveRow, EvalRecord, Headline, HeldoutHeadline, HeldoutRecord, MetricsRow, Outcome, Split,
    Status, Summary, Timings,
};
use lpo_stats::{
    benjamini_hochberg, hierarchical_bootstrap, hierarchical_bootstrap_ratio, holm, paired_t,
    sign_test, wilson, Adjustment, SplitMix64, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED,
};

use crate::collect::{self, Collection};
use crate::compare::TestKind;
use crate::select::SelectBy;
use crate::{build, render, write_report, Format, Options};

/// One synthetic run.
struct Spec {
    label: &'static str,
    seed: u64,
    /// Swept keys other than the seed.
    config: Vec<(&'static str, serde_json::Value)>,
    /// Rows of eval.csv; `None`: no file.
    eval: Option<Vec<EvalRecord>>,
    /// Rows of heldout.csv; `None`: no file.
    heldout: Option<Vec<HeldoutRecord>>,
    /// Whether summary.json has a generation headline.
    headline: bool,
}

fn write_run(family: &Path, s: &Spec) -> PathBuf {
    let mut assignments: BTreeMap<String, serde_json::Value> = s
        .config
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assignments.insert("train.seed".into(), s.seed.into());
    let id = format!(
        "{}-{}-s{}",
        s.label,
        lpo_results::content_id("t", &assignments),
        s.seed
    );
    let dir = family.join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let mut recipe = Recipe::default();
    recipe.train.seed = s.seed;
    recipe.label = Some(s.label.into());
    std::fs::write(dir.join(CONFIG), toml::to_string(&recipe).unwrap()).unwrap();
    let summary = Summary {
        run_id: id.clone(),
        recipe: "fam".into(),
        label: s.label.into(),
        assignments,
        seed: s.seed,
        status: Status::Complete,
        steps_done: 10,
        steps: 10,
        failed_step: None,
        error: None,
        resumed_from: None,
        device: "cpu".into(),
        threads: 1,
        ranks: None,
        reference: "r".into(),
        lists: "l".into(),
        round_lists: vec!["l".into()],
        round_rewards: Vec::new(),
        reward_model: None,
        sandbox: None,
        truncated: Default::default(),
        repeated: Default::default(),
        timings: Timings::default(),
        headline: s.headline.then(Headline::default),
        heldout: s.heldout.as_ref().map(|_| HeldoutHeadline::default()),
        memory: None,
    };
    summary.write(&dir).unwrap();
    if let Some(rows) = &s.eval {
        std::fs::write(dir.join(EVAL), to_csv(rows).unwrap()).unwrap();
    }
    if let Some(rows) = &s.heldout {
        std::fs::write(dir.join(HELDOUT), to_csv(rows).unwrap()).unwrap();
    }
    let metrics: Vec<MetricsRow> = (0..10)
        .map(|step| MetricsRow {
            step,
            round: 0,
            loss: 1.0 / (1.0 + f64::from(step)),
            beta: 0.1,
            alpha: 0.0,
            gamma: 0.0,
            lr: 1e-3,
            chosen_logp: -10.0 - f64::from(step % 3),
            rejected_logp: -12.0 - f64::from(step),
            chosen_reward: 0.0,
            rejected_reward: 0.0,
            ranking_accuracy: 0.5 + 0.03 * f64::from(step),
            sft_weight: 0.0,
            sft_loss: 1.0,
            grad_norm: 1.0,
            tokens: 100,
            parts: Vec::new(),
        })
        .collect();
    std::fs::write(dir.join(METRICS), to_csv(&metrics).unwrap()).unwrap();
    let curves: Vec<CurveRow> = [0u32, 5, 10]
        .iter()
        .map(|&step| CurveRow {
            step,
            chosen_logp: -10.0 - f64::from(step) * 0.1,
            rejected_logp: -11.0 - f64::from(step) * 0.3,
            chosen_reward: 0.0,
            rejected_reward: 0.0,
            margin: 0.1 * f64::from(step),
            ranking_accuracy: 0.5 + 0.02 * f64::from(step),
        })
        .collect();
    std::fs::write(dir.join(CURVES), to_csv(&curves).unwrap()).unwrap();
    dir
}

/// Deterministic rewards in [0, 10] (quarter steps, so ties happen).
fn reward(rng: &mut SplitMix64) -> f64 {
    rng.index(41) as f64 / 4.0
}

/// eval.csv rows of one run: `n_val` validation and `n_test` test prompts
/// per task; the policy adds `effect` (plus noise) to the reference.
fn eval_rows(
    label: &str,
    seed: u64,
    tasks: &[&str],
    n_val: usize,
    n_test: usize,
    effect: f64,
) -> Vec<EvalRecord> {
    let mut out = Vec::new();
    for task in tasks {
        for i in 0..n_val + n_test {
            // Same reference answer for every method of a seed.
            let mut base = SplitMix64::new(seed * 1000 + i as u64 + task.len() as u64 * 77);
            let b = reward(&mut base);
            let mut noise = SplitMix64::new(
                seed * 7919 + i as u64 * 31 + label.len() as u64 * 131 + task.len() as u64,
            );
            let p = (b + effect + reward(&mut noise) - 5.0).clamp(0.0, 10.0);
            let pass = |r: f64| if r >= 10.0 { 1.0 } else { r / 20.0 };
            out.push(EvalRecord {
                prompt_id: format!("{task}-s{seed}-{i}"),
                split: if i < n_val {
                    Split::Validation
                } else {
                    Split::Test
                },
                task: task.to_string(),
                prompt: format!("prompt, with \"quotes\"\nand a newline {i}"),
                samples: 4,
                policy_response: "x".into(),
                policy_reward: p,
                policy_pass: Some(pass(p)),
                policy_kl: 0.5 + effect.abs() * 0.1 + i as f64 * 0.001,
                baseline: "reference".into(),
                baseline_response: "y".into(),
                baseline_reward: b,
                baseline_pass: Some(pass(b)),
                outcome: Outcome::of(p, b),
            });
        }
    }
    out
}

/// heldout.csv rows: `n` validation and `n` test lists per source.
fn heldout_rows(
    label: &str,
    seed: u64,
    sources: &[&str],
    n: usize,
    skill: usize,
) -> Vec<HeldoutRecord> {
    let mut out = Vec::new();
    for source in sources {
        for i in 0..2 * n {
            let pairs = 6;
            let mut rng = SplitMix64::new(seed * 101 + i as u64 + label.len() as u64 * 1009);
            let correct = (rng.index(4) + skill).min(6) as u32;
            out.push(HeldoutRecord {
                list_id: format!("{source}-s{seed}-{i}"),
                split: if i < n {
                    Split::Validation
                } else {
                    Split::Test
                },
                source: source.to_string(),
                responses: 4,
                pairs,
                correct,
                margin: Some(f64::from(correct) / 6.0 - 0.5),
                ndcg: (i % 5 != 0).then(|| 0.5 + f64::from(correct) / 12.0),
                chosen_logp: -10.0,
                rejected_logp: -12.0,
            });
        }
    }
    out
}

fn family(name: &str, specs: &[Spec]) -> (tempfile::TempDir, Collection) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    for s in specs {
        write_run(&dir, s);
    }
    let c = collect::collect(&dir, None).unwrap();
    (tmp, c)
}

fn gen_spec(label: &'static str, seed: u64, effect: f64, n_test: usize) -> Spec {
    Spec {
        label,
        seed,
        config: vec![("loss.kind", label.into())],
        eval: Some(eval_rows(
            label,
            seed,
            &["arith", "rating"],
            5,
            n_test,
            effect,
        )),
        heldout: Some(heldout_rows(
            label,
            seed,
            &["arith", "rating"],
            6,
            if effect > 0.0 { 2 } else { 1 },
        )),
        headline: true,
    }
}

fn two_by_two() -> (tempfile::TempDir, Collection) {
    family(
        "sweep",
        &[
            gen_spec("lpo", 0, 1.0, 30),
            gen_spec("lpo", 1, 1.0, 30),
            gen_spec("dpo", 0, -0.5, 30),
            gen_spec("dpo", 1, -0.5, 30),
        ],
    )
}

/// The test rows of a label's runs for one task, by seed (ascending).
fn test_groups(c: &Collection, label: &str, task: &str) -> Vec<Vec<EvalRecord>> {
    let mut runs: Vec<_> = c.runs.iter().filter(|r| r.label() == label).collect();
    runs.sort_by_key(|r| r.seed());
    runs.iter()
        .map(|r| {
            r.eval
                .iter()
                .filter(|e| e.split == Split::Test && e.task == task)
                .cloned()
                .collect()
        })
        .collect()
}

#[test]
fn rows_use_test_prompts_grouped_by_seed_and_an_across_seed_test() {
    let (_tmp, c) = two_by_two();
    let (report, _) = build(&c, &Options::new("reference")).unwrap();
    assert_eq!(report.tables.len(), 2);
    assert_eq!(report.family, 4);
    let mut raw = Vec::new();
    for t in &report.tables {
        assert_eq!(t.rows.len(), 2);
        for r in &t.rows {
            let groups = test_groups(&c, &r.method, &t.task);
            let diffs: Vec<Vec<f64>> = groups
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|e| e.policy_reward - e.baseline_reward)
                        .collect()
                })
                .collect();
            assert_eq!(r.seeds, 2);
            assert_eq!(r.prompts, 60, "validation prompts are left out");
            assert_eq!(r.samples, vec![4]);
            let all: Vec<f64> = diffs.iter().flatten().copied().collect();
            let mean = all.iter().sum::<f64>() / all.len() as f64;
            assert!((r.reward_diff - mean).abs() < 1e-12);
            assert_eq!(
                r.reward_diff_ci,
                hierarchical_bootstrap(&diffs, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)
            );
            let per_seed: Vec<f64> = diffs
                .iter()
                .map(|d| d.iter().sum::<f64>() / d.len() as f64)
                .collect();
            let t_test = paired_t(&per_seed).unwrap();
            assert_eq!(r.test.kind, TestKind::AcrossSeeds);
            assert_eq!(r.test.df, 1.0);
            assert_eq!(r.test.p, t_test.p);
            assert_eq!(r.test.interval, Some(t_test.interval));
            let kl: Vec<f64> = groups.iter().flatten().map(|e| e.policy_kl).collect();
            assert!((r.kl - kl.iter().sum::<f64>() / kl.len() as f64).abs() < 1e-12);
            let pass: Vec<Vec<f64>> = groups
                .iter()
                .map(|g| g.iter().map(|e| e.policy_pass.unwrap()).collect())
                .collect();
            assert_eq!(
                r.pass_ci,
                hierarchical_bootstrap(&pass, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)
            );
            // Win rate W / (W + L) with a bootstrap interval (2 seeds).
            let wl: Vec<Vec<(f64, f64)>> = groups
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|e| match e.outcome {
                            Outcome::Win => (1.0, 1.0),
                            Outcome::Loss => (0.0, 1.0),
                            Outcome::Tie => (0.0, 0.0),
                        })
                        .collect()
                })
                .collect();
            assert_eq!(
                r.win_rate_ci,
                hierarchical_bootstrap_ratio(&wl, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)
            );
            assert_eq!(r.win_rate_interval(), "bootstrap");
            raw.push(r.test.p);
        }
        // The baseline row: distinct prompts of the table.
        assert_eq!(t.baseline_prompts, 60);
    }
    // Holm over the whole table's family (both tasks), not per task.
    let adjusted: Vec<f64> = report
        .tables
        .iter()
        .flat_map(|t| t.rows.iter().map(|r| r.p_adjusted))
        .collect();
    assert_eq!(adjusted, holm(&raw));
    let md = render::markdown(&report);
    assert!(md.contains("over all 4 tests"), "{md}");
    assert!(md.contains("Holm–Bonferroni"), "{md}");
    assert!(md.contains("paired t-test across seeds"), "{md}");
    assert!(md.contains("| t(1) = "), "{md}");
    assert!(md.contains("## Held-out lists (test split)"), "{md}");
}

#[test]
fn one_seed_uses_the_sign_test_next_to_its_wilson_interval() {
    let (_tmp, c) = family("one", &[gen_spec("lpo", 3, 1.0, 40)]);
    let (report, _) = build(&c, &Options::new("reference")).unwrap();
    for t in &report.tables {
        let r = &t.rows[0];
        assert_eq!(r.test.kind, TestKind::Sign);
        assert_eq!(r.test.p, sign_test(r.tally.wins, r.tally.losses));
        let w = wilson(
            r.tally.wins as f64,
            (r.tally.wins + r.tally.losses) as f64,
            0.95,
        );
        assert_eq!(r.test.interval, Some(w));
        // The win rate's interval is the sign test's at the level of its
        // adjusted p: it excludes 1/2 when that p is below 0.05.
        let level = r.inference.level();
        let at_level = wilson(
            r.tally.wins as f64,
            (r.tally.wins + r.tally.losses) as f64,
            level,
        );
        assert_eq!(r.win_rate_ci, Some(at_level));
        assert_eq!(r.win_rate_interval(), "Wilson");
        assert_eq!(r.inference.ci, None, "one seed: no t interval");
    }
    let md = render::markdown(&report);
    assert!(md.contains("| sign |"), "{md}");
}

#[test]
fn benjamini_hochberg_is_an_option_and_the_footer_says_so() {
    let (_tmp, c) = two_by_two();
    let mut options = Options::new("reference");
    options.adjustment = Adjustment::BenjaminiHochberg;
    options.compare = vec![("lpo".into(), "dpo".into())];
    let (report, _) = build(&c, &options).unwrap();
    // 4 main tests + 2 tasks + 2 sources head-to-head.
    assert_eq!(report.family, 8);
    let mut raw: Vec<f64> = report
        .tables
        .iter()
        .flat_map(|t| t.rows.iter().map(|r| r.test.p))
        .collect();
    let h = &report.head_to_head[0];
    raw.extend(h.rows.iter().map(|(_, r)| r.test.p));
    raw.extend(h.heldout.iter().map(|d| d.test.p));
    let mut adjusted: Vec<f64> = report
        .tables
        .iter()
        .flat_map(|t| t.rows.iter().map(|r| r.p_adjusted))
        .collect();
    adjusted.extend(h.rows.iter().map(|(_, r)| r.p_adjusted));
    adjusted.extend(h.heldout.iter().map(|d| d.p_adjusted));
    assert_eq!(adjusted, benjamini_hochberg(&raw));
    let md = render::markdown(&report);
    assert!(md.contains("Benjamini–Hochberg"), "{md}");
    assert!(md.contains("over all 8 tests"), "{md}");
    assert!(md.contains("| p (BH) |"), "{md}");
}

#[test]
fn head_to_head_pairs_prompts_and_lists_within_seed() {
    let (_tmp, c) = two_by_two();
    let mut options = Options::new("reference");
    options.compare = vec![("lpo".into(), "dpo".into())];
    let (report, _) = build(&c, &options).unwrap();
    let h = &report.head_to_head[0];
    assert!(h.problems.is_empty(), "{:?}", h.problems);
    assert_eq!((h.a.as_str(), h.b.as_str()), ("lpo", "dpo"));
    assert_eq!(h.rows.len(), 2);
    for (task, r) in &h.rows {
        let a = test_groups(&c, "lpo", task);
        let b = test_groups(&c, "dpo", task);
        let diffs: Vec<Vec<f64>> = a
            .iter()
            .zip(&b)
            .map(|(ga, gb)| {
                ga.iter()
                    .map(|ea| {
                        let eb = gb.iter().find(|e| e.prompt_id == ea.prompt_id).unwrap();
                        ea.policy_reward - eb.policy_reward
                    })
                    .collect()
            })
            .collect();
        let all: Vec<f64> = diffs.iter().flatten().copied().collect();
        assert!((r.reward_diff - all.iter().sum::<f64>() / all.len() as f64).abs() < 1e-12);
        assert_eq!(
            r.reward_diff_ci,
            hierarchical_bootstrap(&diffs, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)
        );
        let per_seed: Vec<f64> = diffs
            .iter()
            .map(|d| d.iter().sum::<f64>() / d.len() as f64)
            .collect();
        assert_eq!(r.test.p, paired_t(&per_seed).unwrap().p);
    }
    // Ranking accuracy difference on the same test lists.
    assert_eq!(h.heldout.len(), 2);
    for d in &h.heldout {
        let acc = |label: &str| {
            let (c_, p_) = c
                .runs
                .iter()
                .filter(|r| r.label() == label)
                .flat_map(|r| r.heldout.iter())
                .filter(|l| l.split == Split::Test && l.source == d.source)
                .fold((0.0, 0.0), |(c_, p_), l| {
                    (c_ + f64::from(l.correct), p_ + f64::from(l.pairs))
                });
            c_ / p_
        };
        assert!((d.diff - (acc("lpo") - acc("dpo"))).abs() < 1e-12);
        assert_eq!(d.lists, 12);
    }
    let md = render::markdown(&report);
    assert!(
        md.contains("## Head-to-head: lpo − dpo (test split)"),
        "{md}"
    );
    let csv = render::compare_csv(&report).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 + 2, "{csv}");
    // A typo is an error naming the methods.
    options.compare = vec![("lpo".into(), "dpx".into())];
    let err = build(&c, &options).err().unwrap().to_string();
    assert!(err.contains("dpx") && err.contains("dpo"), "{err}");
}

#[test]
fn a_files_only_sweep_reports_its_held_out_lists() {
    let specs: Vec<Spec> = [("lpo", 0, 3), ("lpo", 1, 3), ("dpo", 0, 1), ("dpo", 1, 1)]
        .into_iter()
        .map(|(label, seed, skill)| Spec {
            label,
            seed,
            config: vec![],
            eval: None,
            heldout: Some(heldout_rows(label, seed, &["data/prefs.jsonl"], 10, skill)),
            headline: false,
        })
        .collect();
    let (tmp, c) = family("files", &specs);
    let written = write_report(&c, &Options::new("reference"), tmp.path()).unwrap();
    let report = &written.report;
    assert!(report.tables.is_empty());
    assert!(report.unpaired.is_empty(), "{:?}", report.unpaired);
    assert_eq!(report.heldout.len(), 2);
    for row in &report.heldout {
        let lists: Vec<Vec<(f64, f64)>> = {
            let mut runs: Vec<_> = c.runs.iter().filter(|r| r.label() == row.method).collect();
            runs.sort_by_key(|r| r.seed());
            runs.iter()
                .map(|r| {
                    r.heldout
                        .iter()
                        .filter(|l| l.split == Split::Test)
                        .map(|l| (f64::from(l.correct), f64::from(l.pairs)))
                        .collect()
                })
                .collect()
        };
        let (cs, ps) = lists
            .iter()
            .flatten()
            .fold((0.0, 0.0), |a, l| (a.0 + l.0, a.1 + l.1));
        assert_eq!(row.lists, 20);
        assert_eq!(row.seeds, 2);
        assert!((row.accuracy.unwrap() - cs / ps).abs() < 1e-12);
        assert_eq!(
            row.accuracy_ci,
            hierarchical_bootstrap_ratio(&lists, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)
        );
        assert!(row.ndcg.is_some() && row.margin.is_some());
    }
    assert!(
        written.text.contains("ranking accuracy [95% CI]"),
        "{}",
        written.text
    );
    assert!(
        written.text.contains("no generation table"),
        "{}",
        written.text
    );
    assert!(!written.text.contains("not compared"), "{}", written.text);
    assert!(c.dir.join("report-heldout.csv").exists());
    assert!(!c.dir.join("plots/frontier.svg").exists());
    // CSV output falls back to the held-out table.
    let mut options = Options::new("reference");
    options.format = Format::Csv;
    let text = write_report(&c, &options, tmp.path()).unwrap().text;
    assert!(text.starts_with("method,source,seeds,lists"), "{text}");
    // Head-to-head of ranking accuracy only.
    options.compare = vec![("lpo".into(), "dpo".into())];
    let (r, _) = build(&c, &options).unwrap();
    assert_eq!(r.head_to_head[0].heldout.len(), 1);
    assert!(r.head_to_head[0].rows.is_empty());
    assert_eq!(r.family, 1);
}

fn configs() -> Vec<Spec> {
    // lpo at beta 0.1 is better on validation (effect shows on all splits
    // equally here); beta 0.5 worse. dpo has one configuration.
    let mut specs = Vec::new();
    for seed in [0, 1] {
        for (beta, effect) in [(0.1, 1.5), (0.5, -1.0)] {
            specs.push(Spec {
                label: "lpo",
                seed,
                config: vec![("loss.beta", beta.into()), ("loss.kind", "lpo".into())],
                eval: Some(eval_rows("lpo", seed, &["arith"], 20, 20, effect)),
                heldout: None,
                headline: true,
            });
        }
        specs.push(Spec {
            label: "dpo",
            seed,
            config: vec![("loss.beta", 0.1.into()), ("loss.kind", "dpo".into())],
            eval: Some(eval_rows("dpo", seed, &["arith"], 20, 20, 0.0)),
            heldout: None,
            headline: true,
        });
    }
    specs
}

#[test]
fn several_configurations_are_separate_rows_unless_selected_on_validation() {
    let (_tmp, c) = family("cfg", &configs());
    let (report, _) = build(&c, &Options::new("reference")).unwrap();
    let names: Vec<&str> = report.tables[0]
        .rows
        .iter()
        .map(|r| r.method.as_str())
        .collect();
    assert_eq!(names, ["dpo", "lpo [loss.beta=0.1]", "lpo [loss.beta=0.5]"]);
    let md = render::markdown(&report);
    assert!(
        md.contains("`lpo` has 2 configurations (differing in loss.beta)"),
        "{md}"
    );

    let mut options = Options::new("reference");
    options.select_by = Some(SelectBy::Validation);
    let (report, arms) = build(&c, &options).unwrap();
    let names: Vec<&str> = report.tables[0]
        .rows
        .iter()
        .map(|r| r.method.as_str())
        .collect();
    assert_eq!(names, ["dpo", "lpo"]);
    let lpo = arms.arms.iter().find(|a| a.label == "lpo").unwrap();
    assert_eq!(lpo.config, "loss.beta=0.1");
    assert!(lpo
        .runs
        .iter()
        .all(|r| r.summary.assignments["loss.beta"] == 0.1));
    // Picked on validation: the mean validation reward of each candidate.
    let sel = &report.selections[0];
    assert_eq!(sel.label, "lpo");
    assert_eq!(sel.metric, "validation mean reward");
    let val = |beta: f64| {
        let v: Vec<f64> = c
            .runs
            .iter()
            .filter(|r| r.label() == "lpo" && r.summary.assignments["loss.beta"] == beta)
            .flat_map(|r| r.eval.iter().filter(|e| e.split == Split::Validation))
            .map(|e| e.policy_reward)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert_eq!(sel.candidates[0].0, "loss.beta=0.1");
    assert!((sel.candidates[0].1 - val(0.1)).abs() < 1e-12);
    assert!((sel.candidates[1].1 - val(0.5)).abs() < 1e-12);
    let md = render::markdown(&report);
    assert!(
        md.contains("- lpo: picked `loss.beta=0.1` (validation mean reward"),
        "{md}"
    );
    assert!(md.contains("not picked: `loss.beta=0.5`"), "{md}");
    // Reported numbers are test numbers of the picked runs only.
    let r = &report.tables[0].rows[1];
    assert_eq!(r.prompts, 40);
}

#[test]
fn a_baseline_label_with_several_configurations_is_explained() {
    let (_tmp, c) = family("cfg2", &configs());
    let err = build(&c, &Options::new("lpo")).err().unwrap().to_string();
    assert!(err.contains("2 configurations"), "{err}");
    // Selecting first makes it usable.
    let mut options = Options::new("lpo");
    options.select_by = Some(SelectBy::Validation);
    let (report, _) = build(&c, &options).unwrap();
    assert_eq!(report.tables[0].baseline, "lpo");
    assert_eq!(report.tables[0].rows.len(), 1);
    assert_eq!(report.tables[0].rows[0].method, "dpo");
}

#[test]
fn uneven_prompt_counts_and_empty_evaluations_are_reported() {
    let mut short = gen_spec("lpo", 1, 1.0, 25);
    short.heldout = None;
    let empty = Spec {
        label: "dpo",
        seed: 0,
        config: vec![("loss.kind", "dpo".into())],
        eval: Some(vec![]),
        heldout: None,
        headline: true,
    };
    let missing = Spec {
        label: "dpo",
        seed: 1,
        config: vec![("loss.kind", "dpo".into())],
        eval: None,
        heldout: None,
        headline: true,
    };
    let (_tmp, c) = family(
        "uneven",
        &[gen_spec("lpo", 0, 1.0, 30), short, empty, missing],
    );
    let (report, _) = build(&c, &Options::new("reference")).unwrap();
    let r = &report.tables[0].rows[0];
    assert_eq!(r.prompt_counts, vec![30, 25]);
    assert!(r.uneven_prompts());
    let md = render::markdown(&report);
    assert!(md.contains("| 55 † |"), "{md}");
    assert!(
        md.contains("t-test weighs seeds equally): lpo (30, 25)"),
        "{md}"
    );
    assert_eq!(report.unpaired.len(), 2, "{:?}", report.unpaired);
    assert!(
        md.contains("eval.csv has no rows although summary.json has a headline"),
        "{md}"
    );
    assert!(
        md.contains("summary.json has a headline but there is no eval.csv"),
        "{md}"
    );
    assert!(md.contains("not compared: run dpo-"), "{md}");
}

#[test]
fn a_non_finite_reward_is_an_error_naming_file_and_line() {
    let mut rows = eval_rows("lpo", 0, &["arith"], 0, 4, 0.0);
    rows[2].baseline_reward = f64::NAN;
    let (tmp, _) = family("ok", &[]);
    let dir = write_run(
        &tmp.path().join("nan"),
        &Spec {
            label: "lpo",
            seed: 0,
            config: vec![],
            eval: Some(rows),
            heldout: None,
            headline: true,
        },
    );
    let err = format!(
        "{:#}",
        collect::collect(&tmp.path().join("nan"), None)
            .err()
            .unwrap()
    );
    // Prompts hold a newline, so record 3 starts on CSV line 6 (header 1,
    // two lines per record).
    let path = dir.join(EVAL);
    assert!(
        err.contains(&format!(
            "{} line 6: baseline_reward is NaN",
            path.display()
        )),
        "{err}"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines().nth(5).unwrap().starts_with("arith-s0-2,"),
        "{text}"
    );
}

#[test]
fn p_values_below_the_float_range_print_as_a_bound() {
    // One seed, every one of 1100 prompts a win: 2 * 2^-1100 underflows.
    let rows: Vec<EvalRecord> = (0..1100)
        .map(|i| EvalRecord {
            prompt_id: format!("arith-s0-{i}"),
            split: Split::Test,
            task: "arith".into(),
            prompt: "p".into(),
            samples: 1,
            policy_response: "a".into(),
            policy_reward: 10.0,
            policy_pass: Some(1.0),
            policy_kl: 0.1,
            baseline: "reference".into(),
            baseline_response: "b".into(),
            baseline_reward: 0.0,
            baseline_pass: Some(0.0),
            outcome: Outcome::Win,
        })
        .collect();
    let (tmp, c) = family(
        "tiny",
        &[Spec {
            label: "lpo",
            seed: 0,
            config: vec![],
            eval: Some(rows),
            heldout: None,
            headline: true,
        }],
    );
    let mut options = Options::new("reference");
    let written = write_report(&c, &options, tmp.path()).unwrap();
    assert_eq!(written.report.tables[0].rows[0].test.p, 0.0);
    assert!(written.text.contains("< 1e-300 ***"), "{}", written.text);
    options.format = Format::Csv;
    let csv = write_report(&c, &options, tmp.path()).unwrap().text;
    assert!(csv.contains(",< 1e-300,< 1e-300,"), "{csv}");
    options.format = Format::Latex;
    let tex = write_report(&c, &options, tmp.path()).unwrap().text;
    assert!(tex.contains("\\textless{} 1e-300"), "{tex}");
}

#[test]
fn plots_parse_and_show_a_frontier_point_per_run() {
    let (tmp, c) = two_by_two();
    let written = write_report(&c, &Options::new("reference"), tmp.path()).unwrap();
    let plots = c.dir.join("plots");
    for name in [
        "frontier",
        "likelihood",
        "margin",
        "ranking_accuracy",
        "loss",
        "batch_likelihood",
        "batch_ranking_accuracy",
        "win_rate",
    ] {
        let path = plots.join(format!("{name}.svg"));
        assert!(written.files.contains(&path), "{name}");
        let text = std::fs::read_to_string(&path).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let w: f64 = doc
            .root_element()
            .attribute("width")
            .unwrap()
            .parse()
            .unwrap();
        // The title fits: centred, estimated width inside the canvas.
        let title = doc.descendants().find(|n| n.has_tag_name("text")).unwrap();
        let tw = crate::svg::text_width(title.text().unwrap(), 15.0);
        let x: f64 = title.attribute("x").unwrap().parse().unwrap();
        assert!(
            x - tw / 2.0 >= 0.0 && x + tw / 2.0 <= w,
            "{name}: title cut"
        );
    }
    let text = std::fs::read_to_string(plots.join("frontier.svg")).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let dots: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle") && n.children().any(|c| c.has_tag_name("title")))
        .collect();
    assert_eq!(dots.len(), 5, "4 runs and the reference");
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    assert!(texts.iter().any(|t| t.starts_with("KL(")), "{texts:?}");
    assert!(texts.contains(&"mean reward (test prompts)"));
    for label in ["lpo", "dpo", "reference"] {
        assert!(texts.contains(&label), "{label}");
    }
    // Per-batch curves: a faint raw series under each smoothed one.
    let loss = std::fs::read_to_string(plots.join("loss.svg")).unwrap();
    let doc = roxmltree::Document::parse(&loss).unwrap();
    let lines: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.attribute("stroke-opacity") == Some("0.25"))
            .count(),
        2
    );
}

#[test]
fn latex_rows_have_as_many_cells_as_columns() {
    let (_tmp, c) = two_by_two();
    let mut options = Options::new("reference");
    options.compare = vec![("lpo".into(), "dpo".into())];
    let (report, _) = build(&c, &options).unwrap();
    let tex = render::latex(&report);
    assert_eq!(tex.matches("\\begin{table}").count(), 2 + 1 + 1);
    for table in tex.split("\\begin{tabular}{").skip(1) {
        let spec: String = table.chars().take_while(|&c| c != '}').collect();
        let body = table
            .split("\\toprule")
            .nth(1)
            .unwrap()
            .split("\\bottomrule")
            .next()
            .unwrap();
        for line in body.lines().filter(|l| l.ends_with("\\\\")) {
            let cells = line.replace("\\&", "").matches('&').count() + 1;
            assert_eq!(cells, spec.len(), "{line}");
        }
    }
    let braces = tex.matches('{').count() as i64 - tex.matches('}').count() as i64;
    assert_eq!(braces, 0);
    let csv = render::csv(&report).unwrap();
    assert_eq!(csv.lines().count(), 5);
}

#[test]
fn a_pipe_in_a_label_does_not_break_markdown_rows() {
    let (_tmp, c) = family("pipes", &[gen_spec("lpo|v2", 0, 1.0, 10)]);
    let (report, _) = build(&c, &Options::new("reference")).unwrap();
    let md = render::markdown(&report);
    let row = md
        .lines()
        .find(|l| l.starts_with("| lpo"))
        .expect("a row for the label");
    assert!(row.starts_with("| lpo\\|v2 |"), "{row}");
    // Every row of the first table has the header's number of cells.
    let header = md.lines().find(|l| l.starts_with("| method")).unwrap();
    let cells = |l: &str| l.replace("\\|", "").matches('|').count();
    assert_eq!(cells(row), cells(header), "{row}");
}

#[test]
fn a_swept_single_task_mix_is_not_a_configuration_but_a_multi_source_mix_is() {
    let mut one = gen_spec("lpo", 0, 1.0, 10);
    one.config
        .push(("data.mix", serde_json::json!([{ "task": "arith" }])));
    let mut two = gen_spec("dpo", 0, 1.0, 10);
    two.config.push((
        "data.mix",
        serde_json::json!([{ "task": "arith" }, { "task": "rating" }]),
    ));
    let (_tmp, c) = family("mixes", &[one, two]);
    let config = |label: &str| c.runs.iter().find(|r| r.label() == label).unwrap().config();
    assert!(!config("lpo").contains_key("data.mix"));
    assert!(config("dpo").contains_key("data.mix"));
}

#[test]
fn configurations_on_disjoint_tasks_are_one_arm() {
    let spec = |task: &'static str, rate: f64| Spec {
        label: "lpo",
        seed: 0,
        config: vec![
            (
                "data.mix",
                serde_json::json!([{ "task": task }, { "task": "x" }]),
            ),
            ("reference.error_rate", rate.into()),
        ],
        eval: Some(eval_rows("lpo", 0, &[task], 5, 10, 1.0)),
        heldout: Some(heldout_rows("lpo", 0, &[task], 4, 1)),
        headline: true,
    };
    let (_tmp, c) = family("disjoint", &[spec("arith", 0.2), spec("rating", 0.5)]);
    let (report, _) = build(&c, &Options::new("reference")).unwrap();
    // One row named `lpo` in each task's table, and no configuration note.
    for t in &report.tables {
        let names: Vec<&str> = t.rows.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(names, ["lpo"], "{}", t.task);
    }
    assert_eq!(report.tables.len(), 2);
    // Two configurations evaluated on the same task stay separate rows.
    let (_tmp, c) = family("overlap", &[spec("arith", 0.2), spec("arith", 0.5)]);
    let (report, _) = build(&c, &Options::new("reference")).unwrap();
    assert_eq!(report.tables[0].rows.len(), 2);
}

/// report.html parsed as XML (the page is written well-formed on purpose).
fn parse_html(html: &str) -> roxmltree::Document<'_> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(html, opts)
        .unwrap_or_else(|e| panic!("report.html is not well-formed: {e}"))
}

/// The text of every table cell of the page.
fn html_cells(doc: &roxmltree::Document<'_>) -> std::collections::BTreeSet<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("td") || n.has_tag_name("th"))
        .map(|n| {
            n.descendants()
                .filter(roxmltree::Node::is_text)
                .filter_map(|d| d.text())
                .collect::<String>()
        })
        .collect()
}

/// The cells of report.md's main tables (one section per task), `\|`
/// unescaped.
fn md_main_cells(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_task = false;
    for line in md.lines() {
        if line.starts_with("## ") {
            in_task = line.contains("(baseline: ");
        } else if in_task && line.starts_with("| ") && !line.starts_with("| method |") {
            let line = line.replace("\\|", "\u{1}");
            out.extend(
                line.trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().replace('\u{1}', "|")),
            );
        }
    }
    out
}

fn html_options() -> Options {
    let mut options = Options::new("reference");
    options.compare = vec![("lpo".into(), "dpo".into())];
    options.specs = vec![lpo_recipe::TableSpec {
        name: "main".into(),
        metric: lpo_recipe::TableMetric::WinRate,
        baseline: None,
        caption: None,
    }];
    options
}

#[test]
fn report_html_shows_every_number_of_report_md() {
    let (tmp, c) = two_by_two();
    let written = write_report(&c, &html_options(), tmp.path()).unwrap();
    let path = c.dir.join("report.html");
    assert!(written.files.contains(&path));
    let md = std::fs::read_to_string(c.dir.join("report.md")).unwrap();
    let html = std::fs::read_to_string(&path).unwrap();
    let cells = html_cells(&parse_html(&html));
    let numbers: Vec<String> = md_main_cells(&md)
        .into_iter()
        .filter(|c| c.chars().any(|ch| ch.is_ascii_digit()))
        .collect();
    assert!(numbers.len() >= 2 * 2 * 9, "{numbers:?}");
    for n in &numbers {
        assert!(
            cells.contains(n),
            "{n:?} of report.md is not a cell of report.html"
        );
    }
    // The other tables and the plots are there too.
    for text in [
        "Held-out lists",
        "Head-to-head: lpo − dpo",
        "tables/main.md",
        "How to read",
    ] {
        assert!(html.contains(text), "{text}");
    }
    assert_eq!(html.matches("<svg ").count(), 8);
    assert!(html.contains("class=\"sig\"") || !md.contains('*'), "{md}");
}

#[test]
fn report_html_links_every_run_and_task_to_its_row() {
    let mut specs = vec![gen_spec("lpo", 0, 1.0, 20), gen_spec("dpo", 0, -0.5, 20)];
    specs[0].eval.as_mut().unwrap().iter_mut().for_each(|r| {
        if r.task == "rating" {
            r.task = "rat ing<&>".into();
        }
    });
    let (tmp, c) = family("links", &specs);
    let planned: Vec<(String, String)> = c
        .runs
        .iter()
        .map(|r| (r.summary.run_id.clone(), r.label().to_string()))
        .chain([("gone-1234".to_string(), "sft".to_string())])
        .collect();
    let c = collect::collect(&c.dir, Some(&planned)).unwrap();
    write_report(&c, &html_options(), tmp.path()).unwrap();
    let html = std::fs::read_to_string(c.dir.join("report.html")).unwrap();
    let doc = parse_html(&html);
    let ids: Vec<&str> = doc
        .descendants()
        .filter_map(|n| n.attribute("id"))
        .collect();
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate ids");
    for (id, _) in &planned {
        let want = crate::html::anchor("run", &[id]);
        assert!(unique.contains(want.as_str()), "{want}");
    }
    let (report, _) = build(&c, &html_options()).unwrap();
    for t in &report.tables {
        assert!(unique.contains(crate::html::anchor("task", &[&t.task]).as_str()));
        for r in &t.rows {
            assert!(unique.contains(crate::html::anchor("row", &[&t.task, &r.method]).as_str()));
        }
    }
    let hrefs: Vec<&str> = doc
        .descendants()
        .filter_map(|n| n.attribute("href"))
        .filter_map(|h| h.strip_prefix('#'))
        .collect();
    assert!(hrefs.len() > 10, "{hrefs:?}");
    for h in &hrefs {
        assert!(unique.contains(h), "href=#{h} has no element");
    }
    // The absent run's note links to its row.
    assert!(hrefs.contains(&crate::html::anchor("run", &["gone-1234"]).as_str()));
    assert!(html.contains("rat ing&lt;&amp;&gt;"));
}

#[test]
fn report_html_escapes_names_and_fetches_nothing() {
    let label = "<script>alert('x')</script>&\"q\"";
    let (tmp, c) = family("esc", &[gen_spec("dpo", 0, 1.0, 10)]);
    // A label with markup, set in the summary (the synthetic run's
    // directory name is made from the label).
    let dir = c.dir.clone();
    let run = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    summary["label"] = label.into();
    std::fs::write(run.join("summary.json"), summary.to_string()).unwrap();
    let c = collect::collect(&dir, None).unwrap();
    write_report(&c, &Options::new("reference"), tmp.path()).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    parse_html(&html);
    assert!(
        !html.contains("<script"),
        "markup of a label reached the page"
    );
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;q&quot;"));
    for external in [
        "http://", "https://", "src=", "url(", "@import", "<link", "<img",
    ] {
        assert!(!html.contains(external), "{external}");
    }
}

/// Every row of the report with its per-seed differences, p shown and
/// interval: main tables, head-to-heads, paper tables.
fn every_row(report: &crate::Report) -> Vec<&crate::compare::Row> {
    let mut rows: Vec<&crate::compare::Row> =
        report.tables.iter().flat_map(|t| t.rows.iter()).collect();
    rows.extend(
        report
            .head_to_head
            .iter()
            .flat_map(|h| h.rows.iter().map(|(_, r)| r)),
    );
    rows.extend(report.papers.iter().flatten().flat_map(|t| t.rows.iter()));
    rows
}

#[test]
fn intervals_agree_with_the_p_shown_in_every_table() {
    let specs: Vec<Spec> = (0..4)
        .flat_map(|seed| {
            [
                gen_spec("lpo", seed, 1.0, 30),
                gen_spec("dpo", seed, -0.5, 30),
            ]
        })
        .collect();
    let (_tmp, c) = family("four", &specs);
    for adjustment in [Adjustment::Holm, Adjustment::BenjaminiHochberg] {
        let mut options = html_options();
        options.adjustment = adjustment;
        let (report, _) = build(&c, &options).unwrap();
        let rows = every_row(&report);
        assert!(rows.len() >= 10, "{}", rows.len());
        let mut excluded = 0;
        for r in rows {
            let t = paired_t(&r.seed_diffs).unwrap();
            let ci = r.inference.ci.unwrap();
            assert_eq!(ci, t.interval_at(r.inference.ci_alpha));
            assert_eq!(ci.contains(0.0), r.p_adjusted >= 0.05, "{r:?}");
            excluded += usize::from(!ci.contains(0.0));
        }
        assert!(excluded > 0, "the synthetic effects are detected");
        for h in &report.head_to_head {
            for d in &h.heldout {
                let ci = d.inference.ci.unwrap();
                assert_eq!(ci.contains(0.0), d.p_adjusted >= 0.05);
            }
        }
    }
}

#[test]
fn a_comparison_shown_twice_is_one_test_with_one_p() {
    // The paper table repeats the main tables' comparisons: the family
    // counts them once (4 main + 2 tasks and 2 sources head-to-head) and
    // both show the same p.
    let (_tmp, c) = two_by_two();
    let (report, _) = build(&c, &html_options()).unwrap();
    assert_eq!(report.family, 8);
    for (t, paper) in report.tables.iter().zip(&report.papers[0]) {
        for (a, b) in t.rows.iter().zip(&paper.rows) {
            assert_eq!(a.p_adjusted, b.p_adjusted);
            assert_eq!(a.inference, b.inference);
        }
    }
}

fn declared(a: &str, b: &str, task: Option<&str>) -> lpo_recipe::Hypothesis {
    lpo_recipe::Hypothesis {
        a: a.into(),
        b: b.into(),
        task: task.map(Into::into),
    }
}

#[test]
fn a_declared_family_is_adjusted_alone_and_the_rest_is_exploratory() {
    let (tmp, c) = two_by_two();
    let mut options = Options::new("reference");
    options.family = vec![declared("lpo", "dpo", None)];
    options.specs = html_options().specs;
    let (report, _) = build(&c, &options).unwrap();
    // The declared comparison becomes a head-to-head without --compare.
    let h = &report.head_to_head[0];
    assert_eq!((h.a.as_str(), h.b.as_str()), ("lpo", "dpo"));
    assert_eq!(report.family, 2);
    let raw: Vec<f64> = h.rows.iter().map(|(_, r)| r.test.p).collect();
    let shown: Vec<f64> = h.rows.iter().map(|(_, r)| r.p_adjusted).collect();
    assert_eq!(shown, holm(&raw));
    assert!(h.rows.iter().all(|(_, r)| !r.inference.exploratory));
    // Everything else: the raw p, a 95% interval, marked exploratory.
    for r in report.tables.iter().flat_map(|t| &t.rows) {
        assert!(r.inference.exploratory);
        assert_eq!(r.p_adjusted, r.test.p);
        assert_eq!(r.inference.ci_alpha, 0.05);
    }
    assert!(h.heldout.iter().all(|d| d.inference.exploratory));
    let md = render::markdown(&report);
    assert!(md.contains("(expl.)"), "{md}");
    assert!(md.contains("declared family of 2 tests"), "{md}");
    assert!(md.contains("report.family: lpo − dpo"), "{md}");
    // report.csv: p_adjusted empty for exploratory rows, p_shown the raw p.
    let csv = render::csv(&report).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for rec in reader.records() {
        let rec = rec.unwrap();
        assert_eq!(&rec[col("p_adjusted")], "");
        assert_eq!(&rec[col("exploratory")], "true");
        assert_eq!(&rec[col("p_shown")], &rec[col("p_value")]);
    }
    // The paper table shows the main tables' p, without stars (exploratory).
    let written = write_report(&c, &options, tmp.path()).unwrap();
    assert!(written.files.iter().any(|f| f.ends_with("tables/main.md")));
    let paper = std::fs::read_to_string(tmp.path().join("tables/main.md")).unwrap();
    assert!(!paper.contains('*'), "{paper}");
    assert!(
        paper.contains("Stars: the paired test of Δ reward"),
        "{paper}"
    );
}

#[test]
fn an_untested_declared_hypothesis_counts_with_p_one() {
    let (_tmp, c) = two_by_two();
    let mut options = Options::new("reference");
    options.family = vec![
        declared("lpo", "reference", Some("arith")),
        declared("lpo", "reference", Some("code")),
        declared("orpo", "dpo", None),
    ];
    let (report, _) = build(&c, &options).unwrap();
    assert_eq!(report.family, 3);
    assert_eq!(report.family_outcome.untested.len(), 2);
    let arith = &report
        .tables
        .iter()
        .find(|t| t.task == "arith")
        .unwrap()
        .rows;
    let lpo = arith.iter().find(|r| r.method == "lpo").unwrap();
    assert_eq!(lpo.p_adjusted, holm(&[lpo.test.p, 1.0, 1.0])[0]);
    assert!(report
        .notes
        .iter()
        .any(|n| n.contains("untested") && n.contains("orpo")));
    // A label with several configurations is an error naming the key.
    let (_tmp2, c2) = family("cfg3", &configs());
    let mut options = Options::new("reference");
    options.family = vec![declared("lpo", "reference", None)];
    let err = build(&c2, &options)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("report.family[0].a"), "{err}");
}

#[test]
fn equivalence_and_power_are_computed_on_the_per_seed_differences() {
    let (_tmp, c) = two_by_two();
    let mut options = Options::new("reference");
    options.compare = vec![("lpo".into(), "dpo".into())];
    options.equivalence_margin = Some(0.15);
    options.power = true;
    options.effect = Some(0.1);
    let (report, _) = build(&c, &options).unwrap();
    for r in every_row(&report) {
        let tost = lpo_stats::tost_paired(&r.seed_diffs, -0.15, 0.15).unwrap();
        assert_eq!(r.inference.tost, Some(tost));
        let alpha = if r.inference.exploratory {
            0.05
        } else {
            0.05 / report.family as f64
        };
        let power = lpo_stats::power::summarize(&r.seed_diffs, alpha, Some(0.1));
        assert_eq!(r.inference.power, power);
    }
    let md = render::markdown(&report);
    assert!(md.contains("| equivalence (±0.15) |"), "{md}");
    assert!(
        md.contains("not shown (p = ") || md.contains("equivalent within ±0.15"),
        "{md}"
    );
    assert!(md.contains("## Power (80%"), "{md}");
    assert!(md.contains("| seeds for Δ = ±0.1 |"), "{md}");
    let csv = render::csv(&report).unwrap();
    assert!(
        csv.lines().next().unwrap().ends_with("effect,seeds_needed"),
        "{csv}"
    );
}
