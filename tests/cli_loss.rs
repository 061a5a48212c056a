//! End-to-end: `lpo loss` reproduces hand-computed values, matches an
//! independent plain-f64 implementation of docs/losses.md (revision 2: the
//! push-up LPO anchor and the supervised term) on loss, per-prompt losses,
//! gradient and sft_loss, and rejects bad input.
#![allow(clippy::too_many_lines)]

use std::process::{Command, Output};

fn lpo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn dpo_pair_matches_hand_computation() {
    // s = 0.1 * ([-10, -12] - [-11, -11]) = [0.1, -0.1]; loss = softplus(-0.2) = ln(1 + e^-0.2).
    let report = json(&lpo(&[
        "loss",
        "--loss",
        "dpo",
        "--input",
        "tests/fixtures/loss_dpo_pair.json",
    ]));
    let expected = (1.0f64 + (-0.2f64).exp()).ln();
    assert!((report["loss"].as_f64().unwrap() - 0.598_138_869_381_591_8).abs() < 1e-12);
    assert!((report["loss"].as_f64().unwrap() - expected).abs() < 1e-12);
    // d/d lp_w = -beta * sigma(-0.2), d/d lp_l = +beta * sigma(-0.2).
    let g = 0.1 / (1.0 + 0.2f64.exp());
    let grad = &report["grad_policy_logps"][0];
    assert!(
        (grad[0].as_f64().unwrap() + g).abs() < 1e-12
            && (grad[1].as_f64().unwrap() - g).abs() < 1e-12,
        "{grad}"
    );
}

/// A weighted sum of kinds (`--set loss.kind=[...]`): each part's loss, and
/// the loss as their weighted sum; the loss is given once, and given.
#[test]
fn a_weighted_sum_of_kinds_matches_hand_computation() {
    // The pair above: z = beta (d_c - d_r) = 0.1 (1 - -1) = 0.2;
    // dpo = ln(1 + e^-0.2), hinge = relu(1 - z) = 0.8.
    let report = json(&lpo(&[
        "loss",
        "--set",
        r#"loss.kind=[{ kind = "dpo", weight = 0.25 }, { kind = "hinge", weight = 2 }]"#,
        "--input",
        "tests/fixtures/loss_dpo_pair.json",
    ]));
    let dpo = (1.0f64 + (-0.2f64).exp()).ln();
    let parts = report["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{report}");
    assert_eq!(parts[0]["kind"], "dpo");
    assert!(
        (parts[0]["loss"].as_f64().unwrap() - dpo).abs() < 1e-12,
        "{report}"
    );
    assert_eq!(parts[1]["weight"], 2.0);
    assert!(
        (parts[1]["loss"].as_f64().unwrap() - 0.8).abs() < 1e-12,
        "{report}"
    );
    let want = 0.25 * dpo + 2.0 * 0.8;
    assert!(
        (report["loss"].as_f64().unwrap() - want).abs() < 1e-12,
        "{report}"
    );
    assert_eq!(report["params"]["kind"], "0.25*dpo+2*hinge");
    let input = ["--input", "tests/fixtures/loss_dpo_pair.json"];
    for (args, message) in [
        (vec!["loss"], "give the loss: --loss KIND"),
        (
            vec![
                "loss",
                "--loss",
                "dpo",
                "--set",
                r#"loss.kind=[{ kind = "ipo" }]"#,
            ],
            "not both",
        ),
        (
            vec![
                "loss",
                "--set",
                r#"loss.kind=[{ kind = "ipo", weight = 0 }]"#,
            ],
            "weights must be finite, > 0",
        ),
    ] {
        let out = lpo(&[&args[..], &input[..]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn lpo_k4_list_matches_hand_computation() {
    // beta = 1: s = [1, 0, -1, -2], r = [4, 1, 3, 2] (a fifth, masked entry is padding).
    // p = softmax(r); W = {0, 2, 3}; c_i = p_i / (p_0 + p_2 + p_3);
    // L = c_0 ln(1 + e^-1 + e^-2 + e^-3) + c_2 ln(1 + e^1 + e^-1) + c_3 ln(1 + e^2) = 0.82880201924550...
    let report = json(&lpo(&[
        "loss",
        "--loss",
        "lpo",
        "--set",
        "loss.beta=1",
        "--input",
        "tests/fixtures/loss_lpo_k4.json",
    ]));
    assert!(
        (report["loss"].as_f64().unwrap() - 0.828_802_019_245_503_7).abs() < 1e-12,
        "{report}"
    );
    assert_eq!(
        report["grad_policy_logps"][0][4].as_f64(),
        Some(0.0),
        "padding gets no gradient"
    );
    let linear = json(&lpo(&[
        "loss",
        "--loss",
        "lpo",
        "--set",
        "loss.alpha={ kind = \"linear\", from = 2.0, to = 0.5 }",
        "--step",
        "5",
        "--steps",
        "10",
        "--input",
        "tests/fixtures/loss_lpo_k4.json",
    ]));
    assert_eq!(linear["params"]["alpha"].as_f64(), Some(1.25));
    // Revision 2 anchor and the supervised term by hand on the same list:
    // gamma * A = -gamma * sum_i p_i ln sigma(s_i); best = response 0 with
    // lp = -1 and no token_counts, so NLL_best = 1 and the term is lambda * 1.
    let with_terms = json(&lpo(&[
        "loss",
        "--loss",
        "lpo",
        "--set",
        "loss.beta=1",
        "--set",
        "loss.gamma=0.5",
        "--set",
        "loss.sft_weight={ kind = \"linear\", from = 0.0, to = 0.8 }",
        "--step",
        "5",
        "--steps",
        "10",
        "--input",
        "tests/fixtures/loss_lpo_k4.json",
    ]));
    let (s, r) = ([1.0f64, 0.0, -1.0, -2.0], [4.0f64, 1.0, 3.0, 2.0]);
    let z: f64 = r.iter().map(|x| x.exp()).sum();
    let anchor: f64 = (0..4)
        .map(|i| -(r[i].exp() / z) * -(1.0 + (-s[i]).exp()).ln())
        .sum();
    assert_eq!(with_terms["params"]["sft_weight"].as_f64(), Some(0.4));
    assert_eq!(with_terms["sft_loss"].as_f64(), Some(1.0));
    assert!(
        (with_terms["loss"].as_f64().unwrap() - (0.828_802_019_245_503_7 + 0.5 * anchor + 0.4))
            .abs()
            < 1e-12,
        "{with_terms}"
    );
}

#[test]
fn malformed_input_is_rejected_clearly() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("loss-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "ragged.json",
            r#"{"policy_logps": [[1, 2], [1]], "reference_logps": [[1, 2], [1, 2]], "rewards": [[1, 0], [1, 0]]}"#,
            "ragged: row 1 has 1 entries",
        ),
        (
            "nan.json",
            r#"{"policy_logps": [[1, NaN]], "reference_logps": [[1, 2]], "rewards": [[1, 0]]}"#,
            "not valid JSON",
        ),
        (
            "nonnumber.json",
            r#"{"policy_logps": [[1, "x"]], "reference_logps": [[1, 2]], "rewards": [[1, 0]]}"#,
            "`policy_logps`[0][1] is \"x\", not a number",
        ),
        (
            "short.json",
            r#"{"policy_logps": [[1, 2]], "reference_logps": [[1, 2]], "rewards": [[1, 0]], "mask": [[true, false]]}"#,
            "row 0 has 1 valid response(s)",
        ),
        (
            "counts_shape.json",
            r#"{"policy_logps": [[1, 2]], "reference_logps": [[1, 2]], "rewards": [[1, 0]], "token_counts": [[1, 2, 3]]}"#,
            "`token_counts` is 1x3, but policy_logps is 1x2",
        ),
        (
            "counts_zero.json",
            r#"{"policy_logps": [[1, 2]], "reference_logps": [[1, 2]], "rewards": [[1, 0]], "token_counts": [[3, 0]]}"#,
            "`token_counts`[0][1] is 0, not a positive number",
        ),
    ];
    for (name, body, message) in cases {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        let out = lpo(&["loss", "--loss", "lpo", "--input", path.to_str().unwrap()]);
        // Bad input, as `lpo_exec::exit` defines it.
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message) && err.contains(name), "{name}: {err}");
    }
    let out = lpo(&[
        "loss",
        "--loss",
        "lpo",
        "--set",
        "loss.alpha=-1",
        "--input",
        "tests/fixtures/loss_lpo_k4.json",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("`loss.alpha` is -1, but must be > 0"));
    let out = lpo(&[
        "loss",
        "--loss",
        "dpo",
        "--set",
        "loss.sft_weight=-0.5",
        "--input",
        "tests/fixtures/loss_lpo_k4.json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "negative sft_weight was accepted"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loss.sft_weight"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// An independent implementation of docs/losses.md (revision 2): plain f64
// loops over Vec<f64>, one prompt at a time, with its gradient by central
// finite differences of the same plain code.

/// A loss configuration, passed to `lpo loss` as `--set` keys.
#[derive(Clone, Copy, Debug)]
struct Cfg {
    kind: &'static str,
    beta: f64,
    alpha: f64,
    gamma: f64,
    uniform: bool,
    margin: bool,
    pairing: &'static str,
    sft: f64,
}

const REWARD_SCALE: f64 = 10.0; // the recipe default

impl Cfg {
    fn new(kind: &'static str) -> Cfg {
        Cfg {
            kind,
            beta: 0.5,
            alpha: 0.7,
            gamma: 0.0,
            uniform: false,
            margin: false,
            pairing: "best-worst",
            sft: 0.0,
        }
    }

    fn args(&self) -> Vec<String> {
        let coefficient = if self.uniform { "uniform" } else { "adaptive" };
        let mut out = vec!["--loss".to_string(), self.kind.to_string()];
        for set in [
            format!("loss.beta={}", self.beta),
            format!("loss.alpha={}", self.alpha),
            format!("loss.gamma={}", self.gamma),
            format!("loss.coefficient=\"{coefficient}\""),
            format!("loss.margin_weight={}", self.margin),
            format!("loss.pairing=\"{}\"", self.pairing),
            format!("loss.sft_weight={}", self.sft),
        ] {
            out.push("--set".to_string());
            out.push(set);
        }
        out
    }
}

/// One prompt's valid responses: policy and reference log-probs, rewards, token counts.
#[derive(Clone, Debug)]
struct List {
    lp: Vec<f64>,
    lr: Vec<f64>,
    r: Vec<f64>,
    n: Vec<f64>,
}

fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

fn log_sigmoid(z: f64) -> f64 {
    -softplus(-z)
}

fn logsumexp(xs: &[f64]) -> f64 {
    let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// The method's own term of one prompt: (loss, contributes).
fn method_term(c: &Cfg, l: &List) -> (f64, bool) {
    let k = l.r.len();
    let s: Vec<f64> = (0..k).map(|i| c.beta * (l.lp[i] - l.lr[i])).collect();
    let scaled: Vec<f64> = l.r.iter().map(|r| r / c.alpha).collect();
    let z = logsumexp(&scaled);
    let p: Vec<f64> = scaled.iter().map(|x| (x - z).exp()).collect();
    match c.kind {
        "dpo" => {
            let mut best = 0;
            let mut worst = 0;
            for i in 0..k {
                if l.r[i] > l.r[best] {
                    best = i;
                }
                if l.r[i] < l.r[worst] {
                    worst = i;
                }
            }
            let mut sum = 0.0;
            let mut pairs = 0;
            for i in 0..k {
                for j in 0..k {
                    let keep = l.r[i] > l.r[j]
                        && match c.pairing {
                            "all" => true,
                            "best-rest" => i == best,
                            _ => i == best && j == worst,
                        };
                    if keep {
                        sum += softplus(s[j] - s[i]);
                        pairs += 1;
                    }
                }
            }
            if pairs == 0 {
                (0.0, false)
            } else {
                (sum / pairs as f64, true)
            }
        }
        "lpo" => {
            let w: Vec<usize> = (0..k)
                .filter(|&i| l.r.iter().any(|rj| *rj < l.r[i]))
                .collect();
            let mut loss = 0.0;
            if !w.is_empty() {
                let p_w: f64 = w.iter().map(|&i| p[i]).sum();
                for &i in &w {
                    let coef = if c.uniform {
                        1.0 / w.len() as f64
                    } else {
                        p[i] / p_w
                    };
                    let mut terms = vec![0.0];
                    for j in 0..k {
                        if l.r[j] < l.r[i] {
                            terms.push(s[j] - s[i]);
                        }
                    }
                    loss += coef * logsumexp(&terms);
                }
                if c.margin {
                    let hi = l.r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let lo = l.r.iter().cloned().fold(f64::INFINITY, f64::min);
                    loss *= (hi - lo) / REWARD_SCALE;
                }
            }
            let mut anchor = 0.0;
            for i in 0..k {
                anchor -= p[i] * log_sigmoid(s[i]);
            }
            (loss + c.gamma * anchor, !w.is_empty() || c.gamma > 0.0)
        }
        "listmle" => {
            let mut order: Vec<usize> = (0..k).collect();
            order.sort_by(|&a, &b| l.r[b].partial_cmp(&l.r[a]).unwrap()); // stable
            let sorted: Vec<f64> = order.iter().map(|&i| s[i]).collect();
            let mut loss = 0.0;
            for m in 0..k - 1 {
                loss += logsumexp(&sorted[m..]) - sorted[m];
            }
            (loss, true)
        }
        "infonca" => {
            let zs = logsumexp(&s);
            let mut loss = 0.0;
            for i in 0..k {
                loss -= p[i] * (s[i] - zs);
            }
            (loss, true)
        }
        "nca" => {
            let mut loss = 0.0;
            for i in 0..k {
                loss -= p[i] * log_sigmoid(s[i]) + log_sigmoid(-s[i]) / k as f64;
            }
            (loss, true)
        }
        other => panic!("unknown loss {other}"),
    }
}

/// NLL of the first highest-reward response, None when all rewards tie.
fn nll_best(l: &List, with_counts: bool) -> Option<f64> {
    if l.r.iter().all(|r| *r == l.r[0]) {
        return None;
    }
    let mut best = 0;
    for i in 1..l.r.len() {
        if l.r[i] > l.r[best] {
            best = i;
        }
    }
    Some(if with_counts {
        -l.lp[best] / l.n[best]
    } else {
        -l.lp[best]
    })
}

/// (per-prompt loss, contributes) with the supervised term.
fn prompt_loss(c: &Cfg, l: &List, with_counts: bool) -> (f64, bool) {
    let (term, mut contributes) = method_term(c, l);
    let mut loss = if contributes { term } else { 0.0 };
    if c.sft > 0.0 {
        if let Some(nll) = nll_best(l, with_counts) {
            loss += c.sft * nll;
            contributes = true;
        }
    }
    (loss, contributes)
}

fn batch_loss(c: &Cfg, lists: &[List], with_counts: bool) -> f64 {
    let (mut total, mut count) = (0.0, 0);
    for l in lists {
        let (loss, contributes) = prompt_loss(c, l, with_counts);
        if contributes {
            total += loss;
            count += 1;
        }
    }
    if count == 0 {
        0.0
    } else {
        total / count as f64
    }
}

fn batch_grad(c: &Cfg, lists: &[List], with_counts: bool) -> Vec<Vec<f64>> {
    let h = 1e-5;
    let mut work = lists.to_vec();
    let mut out = Vec::new();
    for b in 0..lists.len() {
        let mut row = Vec::new();
        for i in 0..lists[b].lp.len() {
            let x = lists[b].lp[i];
            work[b].lp[i] = x + h;
            let up = batch_loss(c, &work, with_counts);
            work[b].lp[i] = x - h;
            let down = batch_loss(c, &work, with_counts);
            work[b].lp[i] = x;
            row.push((up - down) / (2.0 * h));
        }
        out.push(row);
    }
    out
}

/// splitmix64, so the test needs no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn random_lists(seed: u64, n: usize, ties: bool) -> Vec<List> {
    let mut rng = Rng(seed);
    let mut lists: Vec<List> = (0..n)
        .map(|_| {
            let k = rng.int(2, 6) as usize;
            List {
                lp: (0..k).map(|_| rng.uniform(-20.0, -1.0)).collect(),
                lr: (0..k).map(|_| rng.uniform(-20.0, -1.0)).collect(),
                r: (0..k)
                    .map(|_| {
                        if ties {
                            rng.int(0, 3) as f64
                        } else {
                            rng.uniform(0.0, 10.0)
                        }
                    })
                    .collect(),
                n: (0..k).map(|_| rng.int(1, 30) as f64).collect(),
            }
        })
        .collect();
    // Always one all-tied prompt and one with a tie for the best.
    lists[0].r = vec![2.0; lists[0].r.len()];
    let last = lists[1].r.len() - 1;
    lists[1].r[last] = 20.0;
    lists[1].r[0] = 20.0;
    lists
}

/// Writes the lists padded to a common K, with a mask and junk in the padding.
fn write_input(path: &std::path::Path, lists: &[List], with_counts: bool) {
    let k = lists.iter().map(|l| l.r.len()).max().unwrap();
    let pad = |f: &dyn Fn(&List) -> &Vec<f64>, junk: f64| -> Vec<Vec<f64>> {
        lists
            .iter()
            .map(|l| {
                (0..k)
                    .map(|i| f(l).get(i).copied().unwrap_or(junk))
                    .collect()
            })
            .collect()
    };
    let mask: Vec<Vec<bool>> = lists
        .iter()
        .map(|l| (0..k).map(|i| i < l.r.len()).collect())
        .collect();
    let mut value = serde_json::json!({
        "policy_logps": pad(&|l| &l.lp, 55.0),
        "reference_logps": pad(&|l| &l.lr, -33.0),
        "rewards": pad(&|l| &l.r, 99.0),
        "mask": mask,
    });
    if with_counts {
        value["token_counts"] = serde_json::json!(pad(&|l| &l.n, 0.0));
    }
    std::fs::write(path, value.to_string()).unwrap();
}

fn configs() -> Vec<Cfg> {
    let mut out = Vec::new();
    for kind in ["lpo", "dpo", "listmle", "infonca", "nca"] {
        out.push(Cfg::new(kind));
        out.push(Cfg {
            sft: 0.7,
            ..Cfg::new(kind)
        });
    }
    out.push(Cfg {
        gamma: 0.4,
        ..Cfg::new("lpo")
    });
    out.push(Cfg {
        gamma: 0.3,
        sft: 0.25,
        uniform: true,
        margin: true,
        ..Cfg::new("lpo")
    });
    out.push(Cfg {
        pairing: "all",
        sft: 1.5,
        ..Cfg::new("dpo")
    });
    out.push(Cfg {
        pairing: "best-rest",
        ..Cfg::new("dpo")
    });
    out
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[test]
fn every_loss_matches_an_independent_float64_implementation() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("loss-reference");
    std::fs::create_dir_all(&dir).unwrap();
    for (seed, ties, with_counts) in [(1, true, true), (2, false, true), (3, true, false)] {
        let lists = random_lists(seed, 10, ties);
        let path = dir.join(format!("batch{seed}.json"));
        write_input(&path, &lists, with_counts);
        let sft_values: Vec<f64> = lists
            .iter()
            .filter_map(|l| nll_best(l, with_counts))
            .collect();
        let sft_loss = sft_values.iter().sum::<f64>() / sft_values.len() as f64;
        for cfg in configs() {
            let what = format!("{cfg:?} seed {seed} counts {with_counts}");
            let mut args = vec!["loss".to_string()];
            args.extend(cfg.args());
            args.extend(["--input".to_string(), path.to_str().unwrap().to_string()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let report = json(&lpo(&args));
            assert_eq!(
                report["params"]["sft_weight"].as_f64(),
                Some(cfg.sft),
                "{what}"
            );
            let loss = report["loss"].as_f64().unwrap();
            let expected = batch_loss(&cfg, &lists, with_counts);
            assert!(
                close(loss, expected, 1e-9),
                "{what}: loss {loss} vs {expected}"
            );
            let sft = report["sft_loss"].as_f64().unwrap();
            assert!(
                close(sft, sft_loss, 1e-12),
                "{what}: sft_loss {sft} vs {sft_loss}"
            );
            let grad = batch_grad(&cfg, &lists, with_counts);
            for (b, l) in lists.iter().enumerate() {
                let (pp, contributes) = prompt_loss(&cfg, l, with_counts);
                assert_eq!(
                    report["contributes"][b].as_bool(),
                    Some(contributes),
                    "{what} [{b}]"
                );
                let got = report["per_prompt"][b].as_f64().unwrap();
                assert!(
                    close(got, pp, 1e-9),
                    "{what} per_prompt[{b}]: {got} vs {pp}"
                );
                let row = report["grad_policy_logps"][b].as_array().unwrap();
                for (i, g) in row.iter().enumerate() {
                    let g = g.as_f64().unwrap();
                    let want = grad[b].get(i).copied().unwrap_or(0.0);
                    assert!(
                        (g - want).abs() < 1e-7,
                        "{what} grad[{b}][{i}]: {g} vs {want}"
                    );
                }
            }
        }
    }
}
