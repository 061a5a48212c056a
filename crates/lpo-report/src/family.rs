//! Which tests are adjusted together, and the one p-value, interval,
//! equivalence and power reading each test gets wherever it is shown
//! (report.md, report.csv, report.html, every paper table).
//!
//! A test is identified by its two arms (in either order: A − B and B − A
//! are one two-sided hypothesis) and what they are compared on (a task's
//! rewards, or a held-out source's ranking accuracy), so a comparison that
//! appears in a task table, a head-to-head and a paper table is one test.
//! With a declared family (`[report] family`) the adjustment runs over its
//! hypotheses only (one that no test matches counts as untested, p = 1, so
//! the family never shrinks), and every other test is exploratory: its raw
//! p, no stars, a 95% interval. Without one, the family is every distinct
//! test the report and its paper tables show.

use std::collections::BTreeMap;

use lpo_stats::{Adjustment, ALPHA};

use crate::compare::{HeadToHead, HeldoutDiff, Row, TaskTable};
use crate::inference::{Inference, Questions, Verdict};

/// A test's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    /// The two arms, in name order.
    pair: (String, String),
    /// A task, or a held-out source (`ranking = true`).
    target: String,
    /// Ranking accuracy on held-out lists rather than reward.
    ranking: bool,
}

impl Key {
    fn new(a: &str, b: &str, target: &str, ranking: bool) -> Key {
        let pair = if a <= b { (a, b) } else { (b, a) };
        Key {
            pair: (pair.0.to_string(), pair.1.to_string()),
            target: target.to_string(),
            ranking,
        }
    }
}

/// A declared hypothesis with its labels resolved to arm names.
#[derive(Debug, Clone)]
pub struct Declared {
    /// Arm tested.
    pub a: String,
    /// `reference` or an arm.
    pub b: String,
    /// One task, or every task.
    pub task: Option<String>,
}

impl Declared {
    fn matches(&self, key: &Key) -> bool {
        !key.ranking
            && Key::new(&self.a, &self.b, "", false).pair == key.pair
            && self.task.as_ref().is_none_or(|t| *t == key.target)
    }

    fn describe(&self) -> String {
        let task = self
            .task
            .as_deref()
            .map_or(String::new(), |t| format!(" on {t}"));
        format!("{} − {}{task}", self.a, self.b)
    }
}

/// A row of any table, with its key.
enum Slot<'a> {
    Row(&'a mut Row),
    Heldout(&'a mut HeldoutDiff),
}

impl Slot<'_> {
    fn p(&self) -> f64 {
        match self {
            Slot::Row(r) => r.test.p,
            Slot::Heldout(d) => d.test.p,
        }
    }

    fn apply(&mut self, verdict: Verdict, questions: Questions) {
        match self {
            Slot::Row(r) => {
                r.p_adjusted = verdict.p_shown;
                r.inference = Inference::of(&r.seed_diffs, verdict, questions);
                if r.seeds == 1 && r.tally.wins + r.tally.losses > 0 {
                    // The sign test's interval, at the level of its p.
                    r.win_rate_ci = Some(lpo_stats::wilson(
                        r.tally.wins as f64,
                        (r.tally.wins + r.tally.losses) as f64,
                        1.0 - verdict.ci_alpha,
                    ));
                }
            }
            Slot::Heldout(d) => {
                d.p_adjusted = verdict.p_shown;
                d.inference = Inference::of(&d.seed_diffs, verdict, questions);
            }
        }
    }
}

/// What [`assign`] decided.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Tests in the family (declared hypotheses without a test included).
    pub size: usize,
    /// Of those, shown in the main tables.
    pub in_main: usize,
    /// Tests shown outside the family (exploratory).
    pub exploratory: usize,
    /// Declared hypotheses no test matched.
    pub untested: Vec<String>,
    /// The declared family, described (`None`: every test).
    pub declared: Option<Vec<String>>,
}

fn slots<'a>(
    tables: &'a mut [TaskTable],
    h2h: &'a mut [HeadToHead],
    papers: &'a mut [Vec<TaskTable>],
) -> (Vec<(Key, Slot<'a>)>, usize) {
    let mut out = Vec::new();
    for t in tables.iter_mut() {
        for r in &mut t.rows {
            out.push((
                Key::new(&r.method, &t.baseline, &t.task, false),
                Slot::Row(r),
            ));
        }
    }
    let main = out.len();
    for h in h2h.iter_mut() {
        for (task, r) in &mut h.rows {
            out.push((Key::new(&h.a, &h.b, task, false), Slot::Row(r)));
        }
        for d in &mut h.heldout {
            out.push((Key::new(&h.a, &h.b, &d.source, true), Slot::Heldout(d)));
        }
    }
    for t in papers.iter_mut().flatten() {
        for r in &mut t.rows {
            out.push((
                Key::new(&r.method, &t.baseline, &t.task, false),
                Slot::Row(r),
            ));
        }
    }
    (out, main)
}

/// Adjusts the family's tests and gives every row of `tables`, `h2h` and
/// `papers` its [`Inference`] and the p it shows.
pub fn assign(
    tables: &mut [TaskTable],
    h2h: &mut [HeadToHead],
    papers: &mut [Vec<TaskTable>],
    adjustment: Adjustment,
    declared: Option<&[Declared]>,
    questions: Questions,
) -> Outcome {
    let (mut slots, main) = slots(tables, h2h, papers);
    // One raw p per distinct test (the same data give the same p).
    let mut raw: BTreeMap<Key, f64> = BTreeMap::new();
    for (key, slot) in &slots {
        raw.entry(key.clone()).or_insert_with(|| slot.p());
    }
    let in_family = |key: &Key| declared.is_none_or(|d| d.iter().any(|h| h.matches(key)));
    let members: Vec<&Key> = raw.keys().filter(|k| in_family(k)).collect();
    let untested: Vec<String> = declared
        .unwrap_or_default()
        .iter()
        .filter(|h| !raw.keys().any(|k| h.matches(k)))
        .map(Declared::describe)
        .collect();
    let mut p: Vec<f64> = members.iter().map(|k| raw[*k]).collect();
    p.extend(std::iter::repeat_n(1.0, untested.len()));
    let adjusted = adjustment.adjust(&p);
    let levels = adjustment.interval_alphas(&p, ALPHA);
    let power_alpha = ALPHA / p.len().max(1) as f64;
    let verdicts: BTreeMap<Key, Verdict> = members
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let v = Verdict {
                exploratory: false,
                p_shown: adjusted[i],
                ci_alpha: levels[i],
                power_alpha,
            };
            ((*k).clone(), v)
        })
        .collect();
    let mut outcome = Outcome {
        size: p.len(),
        exploratory: raw.len() - members.len(),
        in_main: 0,
        untested,
        declared: declared.map(|d| d.iter().map(Declared::describe).collect()),
    };
    let mut counted = std::collections::BTreeSet::new();
    for (i, (key, slot)) in slots.iter_mut().enumerate() {
        let verdict = verdicts.get(key).copied().unwrap_or(Verdict {
            exploratory: true,
            p_shown: raw[key],
            ci_alpha: ALPHA,
            power_alpha: ALPHA,
        });
        if i < main && !verdict.exploratory && counted.insert(key.clone()) {
            outcome.in_main += 1;
        }
        slot.apply(verdict, questions);
    }
    outcome
}
