//! Tests against an independent float64 reference written per prompt with
//! plain loops (not the batched tensor code), the spec's identities, and
//! central finite differences.

use super::*;
use rand::{Rng, SeedableRng};

/// One prompt: policy logps, reference logps, rewards (valid entries only).
#[derive(Clone, Debug)]
struct List {
    lp: Vec<f64>,
    lr: Vec<f64>,
    r: Vec<f64>,
}

fn params(kind: LossKind) -> LossParams {
    LossParams {
        kind,
        beta: 0.5,
        alpha: 0.7,
        gamma: 0.0,
        coefficient: CoefficientMode::Adaptive,
        margin_weight: false,
        reward_scale: 10.0,
        pairing: Pairing::BestWorst,
    }
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

fn softmax(xs: &[f64]) -> Vec<f64> {
    let z = logsumexp(xs);
    xs.iter().map(|x| (x - z).exp()).collect()
}

/// The reference: (loss, contributes) for one prompt, straight from docs/losses.md.
fn reference(p: &LossParams, list: &List) -> (f64, bool) {
    let k = list.r.len();
    let s: Vec<f64> = (0..k).map(|i| p.beta * (list.lp[i] - list.lr[i])).collect();
    let target = softmax(&list.r.iter().map(|r| r / p.alpha).collect::<Vec<_>>());
    match p.kind {
        LossKind::Dpo => {
            let first_max = (0..k).fold(0, |b, i| if list.r[i] > list.r[b] { i } else { b });
            let first_min = (0..k).fold(0, |w, i| if list.r[i] < list.r[w] { i } else { w });
            let mut pairs = Vec::new();
            for i in 0..k {
                for j in 0..k {
                    let keep = list.r[i] > list.r[j]
                        && match p.pairing {
                            Pairing::All => true,
                            Pairing::BestRest => i == first_max,
                            Pairing::BestWorst => i == first_max && j == first_min,
                        };
                    if keep {
                        pairs.push(softplus(-(s[i] - s[j])));
                    }
                }
            }
            if pairs.is_empty() {
                (0.0, false)
            } else {
                (pairs.iter().sum::<f64>() / pairs.len() as f64, true)
            }
        }
        LossKind::Lpo => {
            let w: Vec<usize> = (0..k)
                .filter(|&i| (0..k).any(|j| list.r[j] < list.r[i]))
                .collect();
            let mut loss = 0.0;
            if !w.is_empty() {
                let p_w: f64 = w.iter().map(|&i| target[i]).sum();
                for &i in &w {
                    let c = match p.coefficient {
                        CoefficientMode::Adaptive => target[i] / p_w,
                        CoefficientMode::Uniform => 1.0 / w.len() as f64,
                    };
                    let mut terms = vec![0.0];
                    terms.extend(
                        (0..k)
                            .filter(|&j| list.r[j] < list.r[i])
                            .map(|j| s[j] - s[i]),
                    );
                    loss += c * logsumexp(&terms);
                }
                if p.margin_weight {
                    let hi = list.r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let lo = list.r.iter().cloned().fold(f64::INFINITY, f64::min);
                    loss *= (hi - lo) / p.reward_scale;
                }
            }
            let anchor = -(0..k)
                .map(|i| target[i] * log_sigmoid(s[i]) + (1.0 - target[i]) * log_sigmoid(-s[i]))
                .sum::<f64>()
                / k as f64;
            (loss + p.gamma * anchor, !w.is_empty() || p.gamma > 0.0)
        }
        LossKind::Listmle => {
            let mut order: Vec<usize> = (0..k).collect();
            order.sort_by(|&a, &b| list.r[b].partial_cmp(&list.r[a]).unwrap()); // stable: ties keep position
            let sorted: Vec<f64> = order.iter().map(|&i| s[i]).collect();
            let loss = (0..k.saturating_sub(1))
                .map(|m| logsumexp(&sorted[m..]) - sorted[m])
                .sum();
            (loss, k >= 2)
        }
        LossKind::Infonca => {
            let z = logsumexp(&s);
            (-(0..k).map(|i| target[i] * (s[i] - z)).sum::<f64>(), k >= 2)
        }
        LossKind::Nca => {
            let attract: f64 = (0..k).map(|i| target[i] * log_sigmoid(s[i])).sum();
            let repel: f64 = (0..k).map(|i| log_sigmoid(-s[i])).sum::<f64>() / k as f64;
            (-attract - repel, k >= 2)
        }
    }
}

/// Pads lists into [B, Kmax] f64 tensors with a mask; padding gets junk values.
fn batch(lists: &[List]) -> (Tensor, Tensor, Tensor, Tensor) {
    let k = lists.iter().map(|l| l.r.len()).max().unwrap();
    let pad = |f: &dyn Fn(&List) -> &Vec<f64>, junk: f64| {
        let flat: Vec<f64> = lists
            .iter()
            .flat_map(|l| {
                (0..k)
                    .map(|i| f(l).get(i).copied().unwrap_or(junk))
                    .collect::<Vec<_>>()
            })
            .collect();
        Tensor::from_slice(&flat).view([lists.len() as i64, k as i64])
    };
    let mask: Vec<bool> = lists
        .iter()
        .flat_map(|l| (0..k).map(|i| i < l.r.len()).collect::<Vec<_>>())
        .collect();
    (
        pad(&|l| &l.lp, 123.0),
        pad(&|l| &l.lr, -77.0),
        pad(&|l| &l.r, 99.0),
        Tensor::from_slice(&mask).view([lists.len() as i64, k as i64]),
    )
}

fn run(p: &LossParams, lists: &[List]) -> LossOutput {
    let (lp, lr, r, mask) = batch(lists);
    compute(
        p,
        &LossInput {
            policy_logps: &lp,
            reference_logps: &lr,
            rewards: &r,
            mask: &mask,
        },
    )
}

fn random_lists(seed: u64, n: usize, scale: f64, ties: bool) -> Vec<List> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let k = rng.random_range(2..=7);
            let r = (0..k)
                .map(|_| {
                    if ties {
                        rng.random_range(0..4) as f64
                    } else {
                        rng.random_range(0.0..10.0)
                    }
                })
                .collect();
            List {
                lp: (0..k).map(|_| rng.random_range(-scale..0.0)).collect(),
                lr: (0..k).map(|_| rng.random_range(-scale..0.0)).collect(),
                r,
            }
        })
        .collect()
}

fn all_params() -> Vec<LossParams> {
    let mut out = Vec::new();
    for kind in [
        LossKind::Lpo,
        LossKind::Dpo,
        LossKind::Listmle,
        LossKind::Infonca,
        LossKind::Nca,
    ] {
        out.push(params(kind));
    }
    for pairing in [Pairing::BestRest, Pairing::All] {
        out.push(LossParams {
            pairing,
            ..params(LossKind::Dpo)
        });
    }
    out.push(LossParams {
        coefficient: CoefficientMode::Uniform,
        ..params(LossKind::Lpo)
    });
    out.push(LossParams {
        gamma: 0.3,
        margin_weight: true,
        ..params(LossKind::Lpo)
    });
    out
}

fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}: {a} vs {b}");
}

#[test]
fn every_loss_matches_the_float64_reference() {
    for (seed, scale, ties) in [(1, 5.0, false), (2, 100.0, false), (3, 5.0, true)] {
        let lists = random_lists(seed, 40, scale, ties);
        for p in all_params() {
            let out = run(&p, &lists);
            let per_prompt = Vec::<f64>::try_from(&out.per_prompt).unwrap();
            let contributes = Vec::<bool>::try_from(&out.contributes).unwrap();
            let mut total = 0.0;
            let mut count = 0;
            for (b, list) in lists.iter().enumerate() {
                let (expected, contributes_expected) = reference(&p, list);
                assert_eq!(contributes[b], contributes_expected, "{p:?} prompt {b}");
                if contributes_expected {
                    assert_close(
                        per_prompt[b],
                        expected,
                        1e-9,
                        &format!("{:?} prompt {b} (seed {seed})", p.kind),
                    );
                    total += expected;
                    count += 1;
                }
            }
            assert_close(
                out.loss.double_value(&[]),
                total / count.max(1) as f64,
                1e-9,
                &format!("{p:?} batch"),
            );
        }
    }
}

#[test]
fn extreme_implicit_rewards_stay_finite_and_match() {
    // |s| ~ 50 with beta = 1: exp(50) would overflow f32 if computed naively.
    let lists = random_lists(4, 30, 100.0, false);
    for p in all_params() {
        let p = LossParams { beta: 1.0, ..p };
        for kind in [Kind::Double, Kind::Float] {
            let (lp, lr, r, mask) = batch(&lists);
            let lp = lp.to_kind(kind).set_requires_grad(true);
            let out = compute(
                &p,
                &LossInput {
                    policy_logps: &lp,
                    reference_logps: &lr.to_kind(kind),
                    rewards: &r.to_kind(kind),
                    mask: &mask,
                },
            );
            out.loss.backward();
            assert!(out.loss.double_value(&[]).is_finite(), "{p:?} {kind:?}");
            assert!(
                bool::try_from(lp.grad().isfinite().all()).unwrap(),
                "{p:?} {kind:?} gradient"
            );
            if kind == Kind::Double {
                let expected: Vec<f64> = lists
                    .iter()
                    .map(|l| reference(&p, l))
                    .filter(|(_, c)| *c)
                    .map(|(v, _)| v)
                    .collect();
                assert_close(
                    out.loss.double_value(&[]),
                    expected.iter().sum::<f64>() / expected.len() as f64,
                    1e-9,
                    "extreme",
                );
            }
        }
    }
}

#[test]
fn lpo_and_listmle_equal_dpo_on_pairs_and_infonca_in_the_limit() {
    let lists: Vec<List> = random_lists(5, 20, 10.0, false)
        .into_iter()
        .map(|l| List {
            lp: l.lp[..2].to_vec(),
            lr: l.lr[..2].to_vec(),
            r: l.r[..2].to_vec(),
        })
        .collect();
    let dpo = run(&params(LossKind::Dpo), &lists).loss.double_value(&[]);
    for alpha in [0.01, 1.0, 100.0] {
        let lpo = run(
            &LossParams {
                alpha,
                ..params(LossKind::Lpo)
            },
            &lists,
        )
        .loss
        .double_value(&[]);
        assert_close(lpo, dpo, 1e-12, &format!("LPO = DPO at alpha {alpha}"));
    }
    assert_close(
        run(&params(LossKind::Listmle), &lists)
            .loss
            .double_value(&[]),
        dpo,
        1e-12,
        "ListMLE = DPO",
    );
    let infonca = run(
        &LossParams {
            alpha: 1e-4,
            ..params(LossKind::Infonca)
        },
        &lists,
    )
    .loss
    .double_value(&[]);
    assert_close(infonca, dpo, 1e-9, "InfoNCA -> DPO as alpha -> 0");
}

#[test]
fn permutation_and_padding_do_not_change_any_loss() {
    let lists = random_lists(6, 25, 10.0, false);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let permuted: Vec<List> = lists
        .iter()
        .map(|l| {
            let mut idx: Vec<usize> = (0..l.r.len()).collect();
            for i in (1..idx.len()).rev() {
                idx.swap(i, rng.random_range(0..=i));
            }
            List {
                lp: idx.iter().map(|&i| l.lp[i]).collect(),
                lr: idx.iter().map(|&i| l.lr[i]).collect(),
                r: idx.iter().map(|&i| l.r[i]).collect(),
            }
        })
        .collect();
    // A prompt with K = 10 forces more padding on every other row.
    let mut padded = lists.clone();
    padded.push(List {
        lp: vec![-1.0; 10],
        lr: vec![-1.0; 10],
        r: (0..10).map(f64::from).collect(),
    });
    for p in all_params() {
        let a = Vec::<f64>::try_from(&run(&p, &lists).per_prompt).unwrap();
        let b = Vec::<f64>::try_from(&run(&p, &permuted).per_prompt).unwrap();
        let c = Vec::<f64>::try_from(&run(&p, &padded).per_prompt).unwrap();
        for i in 0..a.len() {
            assert_close(b[i], a[i], 1e-10, &format!("{:?} permutation", p.kind));
            assert_close(c[i], a[i], 1e-10, &format!("{:?} padding", p.kind));
        }
    }
}

#[test]
fn gradients_match_central_finite_differences() {
    let lists = random_lists(8, 6, 5.0, false);
    for p in all_params() {
        let (lp, lr, r, mask) = batch(&lists);
        let lp = lp.set_requires_grad(true);
        let loss_of = |x: &Tensor| {
            compute(
                &p,
                &LossInput {
                    policy_logps: x,
                    reference_logps: &lr,
                    rewards: &r,
                    mask: &mask,
                },
            )
            .loss
        };
        loss_of(&lp).backward();
        let analytic = Vec::<f64>::try_from(lp.grad().view([-1])).unwrap();
        let base = Vec::<f64>::try_from(lp.detach().view([-1])).unwrap();
        let h = 1e-6;
        for i in 0..base.len() {
            let shifted = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                loss_of(&Tensor::from_slice(&v).view(lp.size().as_slice())).double_value(&[])
            };
            let numeric = (shifted(h) - shifted(-h)) / (2.0 * h);
            assert!(
                (numeric - analytic[i]).abs() < 1e-6,
                "{p:?} d/dlp[{i}]: numeric {numeric} vs autograd {}",
                analytic[i]
            );
        }
    }
}

#[test]
fn all_equal_rewards_add_nothing_to_dpo_and_lpo() {
    let tied = List {
        lp: vec![-3.0, -5.0, -4.0],
        lr: vec![-4.0, -4.0, -4.0],
        r: vec![5.0, 5.0, 5.0],
    };
    let other = List {
        lp: vec![-3.0, -5.0],
        lr: vec![-4.0, -4.0],
        r: vec![7.0, 1.0],
    };
    for p in [
        params(LossKind::Dpo),
        params(LossKind::Lpo),
        LossParams {
            coefficient: CoefficientMode::Uniform,
            ..params(LossKind::Lpo)
        },
    ] {
        let (lp, lr, r, mask) = batch(&[tied.clone(), other.clone()]);
        let lp = lp.set_requires_grad(true);
        let out = compute(
            &p,
            &LossInput {
                policy_logps: &lp,
                reference_logps: &lr,
                rewards: &r,
                mask: &mask,
            },
        );
        out.loss.backward();
        assert_eq!(
            Vec::<bool>::try_from(&out.contributes).unwrap(),
            vec![false, true]
        );
        let grad = Vec::<f64>::try_from(lp.grad().get(0)).unwrap();
        assert!(grad.iter().all(|g| *g == 0.0), "{:?}: {grad:?}", p.kind);
        assert_close(
            out.loss.double_value(&[]),
            reference(&p, &other).0,
            1e-12,
            "only the untied prompt counts",
        );
        // Alone, the tied prompt gives loss 0 with a finite (zero) gradient.
        let (lp, lr, r, mask) = batch(std::slice::from_ref(&tied));
        let lp = lp.set_requires_grad(true);
        let alone = compute(
            &p,
            &LossInput {
                policy_logps: &lp,
                reference_logps: &lr,
                rewards: &r,
                mask: &mask,
            },
        );
        alone.loss.backward();
        assert_eq!(alone.loss.double_value(&[]), 0.0);
        assert!(Vec::<f64>::try_from(lp.grad().view([-1]))
            .unwrap()
            .iter()
            .all(|g| *g == 0.0));
    }
    // InfoNCA and NCA still act on it (uniform p).
    for kind in [LossKind::Infonca, LossKind::Nca] {
        let out = run(&params(kind), std::slice::from_ref(&tied));
        assert!(bool::try_from(out.contributes.get(0)).unwrap());
        assert_close(
            out.loss.double_value(&[]),
            reference(&params(kind), &tied).0,
            1e-12,
            "tied",
        );
    }
}

#[test]
fn half_precision_inputs_are_computed_in_f32() {
    let lists = random_lists(9, 8, 5.0, false);
    let (lp, lr, r, mask) = batch(&lists);
    let out = compute(
        &params(LossKind::Lpo),
        &LossInput {
            policy_logps: &lp.to_kind(Kind::BFloat16),
            reference_logps: &lr.to_kind(Kind::BFloat16),
            rewards: &r.to_kind(Kind::BFloat16),
            mask: &mask,
        },
    );
    assert_eq!(out.loss.kind(), Kind::Float);
}

#[test]
fn stats_report_chosen_rejected_and_accuracy() {
    let list = List {
        lp: vec![-1.0, -9.0, -5.0],
        lr: vec![-3.0, -3.0, -3.0],
        r: vec![9.0, 1.0, 5.0],
    };
    let out = run(
        &LossParams {
            beta: 1.0,
            ..params(LossKind::Dpo)
        },
        &[list],
    );
    assert_eq!(out.stats.chosen_logp, -1.0);
    assert_eq!(out.stats.rejected_logp, -9.0);
    assert_eq!(out.stats.chosen_reward, 2.0);
    assert_eq!(out.stats.rejected_reward, -6.0);
    assert_eq!(out.stats.ranking_accuracy, 1.0);
}

#[test]
fn params_follow_schedules() {
    let config: LossConfig =
        toml::from_str("alpha = { kind = \"linear\", from = 2.0, to = 0.0 }\nbeta = 0.3")
            .unwrap_or_else(|e| panic!("{e}"));
    let p = LossParams::at_step(&config, 5, 10);
    assert_eq!((p.alpha, p.beta), (1.0, 0.3));
}
