//! Tests against an independent float64 reference written per prompt with
//! plain loops over `Vec<f64>` (not the batched tensor code) for revision 2 of
//! docs/losses.md, its gradient by central finite differences of that plain
//! reference, the spec's identities, and finite differences of the library.

use super::*;
use rand::{Rng, SeedableRng};

/// One prompt: policy logps, reference logps, rewards, token counts (valid entries only).
#[derive(Clone, Debug)]
struct List {
    lp: Vec<f64>,
    lr: Vec<f64>,
    r: Vec<f64>,
    n: Vec<f64>,
}

fn params(kind: LossKind) -> LossParams {
    LossParams {
        parts: vec![Part { kind, weight: 1.0 }],
        beta: 0.5,
        alpha: 0.7,
        gamma: 0.0,
        coefficient: CoefficientMode::Adaptive,
        margin_weight: false,
        reward_scale: 10.0,
        pairing: Pairing::BestWorst,
        sft_weight: 0.0,
        label_smoothing: 0.2,
        exo_epsilon: 0.01,
        discopop_tau: 0.05,
        simpo_gamma: 0.3,
    }
}

/// TRL's pairwise kinds (trl.rs).
const TRL_KINDS: [LossKind; 13] = [
    LossKind::Hinge,
    LossKind::Ipo,
    LossKind::ExoPair,
    LossKind::NcaPair,
    LossKind::Robust,
    LossKind::BcoPair,
    LossKind::SppoHard,
    LossKind::ApoZero,
    LossKind::ApoDown,
    LossKind::Discopop,
    LossKind::SigmoidNorm,
    LossKind::Simpo,
    LossKind::Orpo,
];

/// One pair's term of a TRL kind, from docs/trl-losses.md: `dc`, `dr` the
/// chosen and rejected log-ratios, `tc`, `tr` the same per token, `u` the
/// per-token log-probabilities (chosen, rejected) of the reference-free kinds.
fn trl_term(p: &LossParams, dc: f64, dr: f64, tc: f64, tr: f64, u: (f64, f64)) -> f64 {
    let b = p.beta;
    let z = b * (dc - dr);
    match p.kind() {
        LossKind::Hinge => (1.0 - z).max(0.0),
        LossKind::Ipo => (tc - tr - 1.0 / (2.0 * b)).powi(2),
        LossKind::ExoPair => {
            // TRL takes log(1 - eps) and log(eps) of eps as an f32 tensor.
            let e = f64::from(p.exo_epsilon as f32);
            let (log_pw, log_pl) = (f64::from((1.0 - e).ln() as f32), f64::from(e.ln() as f32));
            sigmoid(z) * (log_sigmoid(z) - log_pw) + sigmoid(-z) * (log_sigmoid(-z) - log_pl)
        }
        LossKind::NcaPair => {
            -log_sigmoid(b * dc) - 0.5 * log_sigmoid(-b * dc) - 0.5 * log_sigmoid(-b * dr)
        }
        LossKind::Robust => {
            let ls = p.label_smoothing;
            (-(1.0 - ls) * log_sigmoid(z) + ls * log_sigmoid(-z)) / (1.0 - 2.0 * ls)
        }
        LossKind::BcoPair => -log_sigmoid(b * dc) - log_sigmoid(-b * dr),
        LossKind::SppoHard => (dc - 0.5 / b).powi(2) + (dr + 0.5 / b).powi(2),
        LossKind::ApoZero => 1.0 - sigmoid(b * dc) + sigmoid(b * dr),
        LossKind::ApoDown => sigmoid(b * dc) + 1.0 - sigmoid(z),
        LossKind::Discopop => {
            let m = sigmoid(z / p.discopop_tau);
            -log_sigmoid(z) * (1.0 - m) + (-z).exp() * m
        }
        LossKind::SigmoidNorm => -log_sigmoid(b * (tc - tr)),
        LossKind::Simpo => -log_sigmoid(b * (u.0 - u.1) - p.simpo_gamma),
        LossKind::Orpo => {
            let log_odds = |u: f64| u - (1.0 - u.exp()).ln();
            -u.0 - b * log_sigmoid(log_odds(u.0) - log_odds(u.1))
        }
        other => unreachable!("{other:?} is not a TRL kind"),
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

fn sigmoid(z: f64) -> f64 {
    (log_sigmoid(z)).exp()
}

fn logsumexp(xs: &[f64]) -> f64 {
    let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

fn softmax(xs: &[f64]) -> Vec<f64> {
    let z = logsumexp(xs);
    xs.iter().map(|x| (x - z).exp()).collect()
}

/// The method's own term for one prompt: (loss, contributes), straight from
/// docs/losses.md revision 2 (no supervised term).
fn method_term(p: &LossParams, list: &List, per_token: bool) -> (f64, bool) {
    let k = list.r.len();
    let s: Vec<f64> = (0..k).map(|i| p.beta * (list.lp[i] - list.lr[i])).collect();
    let target = softmax(&list.r.iter().map(|r| r / p.alpha).collect::<Vec<_>>());
    match p.kind() {
        kind if kind == LossKind::Dpo || TRL_KINDS.contains(&kind) => {
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
                    if keep && kind == LossKind::Dpo {
                        pairs.push(softplus(-(s[i] - s[j])));
                    } else if keep {
                        let (dc, dr) = (list.lp[i] - list.lr[i], list.lp[j] - list.lr[j]);
                        let (nc, nr) = if per_token {
                            (1.0, 1.0)
                        } else {
                            (list.n[i], list.n[j])
                        };
                        let u = (list.lp[i] / nc.max(1.0), list.lp[j] / nr.max(1.0));
                        pairs.push(trl_term(p, dc, dr, dc / nc.max(1.0), dr / nr.max(1.0), u));
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
            // Revision 2 anchor: A = - sum_i p_i log sigma(s_i).
            let anchor = -(0..k).map(|i| target[i] * log_sigmoid(s[i])).sum::<f64>();
            (
                loss + p.gamma * anchor,
                !w.is_empty() || (p.gamma > 0.0 && k >= 2),
            )
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
        other => unreachable!("{other:?} has an arm above"),
    }
}

/// NLL_best of one prompt (first highest reward; `per_token`: lp is already
/// per token), or None when its rewards all tie.
fn reference_nll_best(list: &List, per_token: bool) -> Option<f64> {
    let mut best = 0;
    for i in 1..list.r.len() {
        if list.r[i] > list.r[best] {
            best = i;
        }
    }
    if list.r.iter().all(|r| *r == list.r[0]) {
        return None;
    }
    Some(if per_token {
        -list.lp[best]
    } else {
        -list.lp[best] / list.n[best]
    })
}

/// `p` with only `kind` (weight 1) as its objective.
fn only(p: &LossParams, kind: LossKind) -> LossParams {
    LossParams {
        parts: vec![Part { kind, weight: 1.0 }],
        ..p.clone()
    }
}

/// The reference: (loss, contributes) for one prompt: each part's method
/// term times its weight (where that part contributes) plus the supervised
/// term.
fn reference(p: &LossParams, list: &List, per_token: bool) -> (f64, bool) {
    let mut loss = 0.0;
    let mut any = false;
    for part in &p.parts {
        let (term, contributes) = method_term(&only(p, part.kind), list, per_token);
        if contributes {
            loss += part.weight * term;
            any = true;
        }
    }
    if p.sft_weight > 0.0 {
        if let Some(nll) = reference_nll_best(list, per_token) {
            loss += p.sft_weight * nll;
            any = true;
        }
    }
    (loss, any)
}

/// Batch loss of the reference: mean over contributing prompts (0 if none).
fn reference_batch(p: &LossParams, lists: &[List], per_token: bool) -> f64 {
    let mut total = 0.0;
    let mut count = 0usize;
    for list in lists {
        let (loss, contributes) = reference(p, list, per_token);
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

/// Reference sft_loss: mean NLL_best over prompts whose rewards do not all tie.
fn reference_sft_loss(lists: &[List], per_token: bool) -> f64 {
    let v: Vec<f64> = lists
        .iter()
        .filter_map(|l| reference_nll_best(l, per_token))
        .collect();
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// d(batch loss)/d lp by central finite differences of the plain reference.
fn reference_grad(p: &LossParams, lists: &[List], per_token: bool) -> Vec<Vec<f64>> {
    let h = 1e-5;
    let mut work = lists.to_vec();
    let mut grad = Vec::with_capacity(lists.len());
    for b in 0..lists.len() {
        let mut row = Vec::with_capacity(lists[b].lp.len());
        for i in 0..lists[b].lp.len() {
            let x = lists[b].lp[i];
            work[b].lp[i] = x + h;
            let up = reference_batch(p, &work, per_token);
            work[b].lp[i] = x - h;
            let down = reference_batch(p, &work, per_token);
            work[b].lp[i] = x;
            row.push((up - down) / (2.0 * h));
        }
        grad.push(row);
    }
    grad
}

/// Pads lists into [B, Kmax] f64 tensors with a mask; padding gets junk values.
/// Returns (lp, lr, r, mask, token_counts).
fn batch(lists: &[List]) -> (Tensor, Tensor, Tensor, Tensor, Tensor) {
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
        pad(&|l| &l.n, 0.0),
    )
}

fn input<'a>(
    lp: &'a Tensor,
    lr: &'a Tensor,
    r: &'a Tensor,
    mask: &'a Tensor,
    n: Option<&'a Tensor>,
) -> LossInput<'a> {
    LossInput {
        policy_logps: lp,
        reference_logps: lr,
        rewards: r,
        mask,
        token_counts: n,
    }
}

/// Runs the library; `per_token` passes no token counts.
fn run_with(p: &LossParams, lists: &[List], per_token: bool) -> LossOutput {
    let (lp, lr, r, mask, n) = batch(lists);
    compute(p, &input(&lp, &lr, &r, &mask, (!per_token).then_some(&n)))
}

fn run(p: &LossParams, lists: &[List]) -> LossOutput {
    run_with(p, lists, false)
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
                n: (0..k).map(|_| rng.random_range(1..=40) as f64).collect(),
            }
        })
        .collect()
}

fn all_params() -> Vec<LossParams> {
    let kinds = [
        LossKind::Lpo,
        LossKind::Dpo,
        LossKind::Listmle,
        LossKind::Infonca,
        LossKind::Nca,
    ];
    let mut out = Vec::new();
    for kind in kinds {
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
    out.push(LossParams {
        gamma: 0.8,
        coefficient: CoefficientMode::Uniform,
        ..params(LossKind::Lpo)
    });
    // The supervised term on every loss.
    for kind in kinds {
        out.push(LossParams {
            sft_weight: 0.7,
            ..params(kind)
        });
    }
    out.push(LossParams {
        gamma: 0.5,
        sft_weight: 0.25,
        ..params(LossKind::Lpo)
    });
    out.push(LossParams {
        sft_weight: 1.5,
        pairing: Pairing::All,
        ..params(LossKind::Dpo)
    });
    // TRL's pairwise kinds, with each pairing and the supervised term.
    for kind in TRL_KINDS {
        out.push(params(kind));
        out.push(LossParams {
            pairing: Pairing::All,
            ..params(kind)
        });
        out.push(LossParams {
            pairing: Pairing::BestRest,
            sft_weight: 0.4,
            ..params(kind)
        });
    }
    out
}

fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}: {a} vs {b}");
}

/// Library (f64 tensors, with padding masks and ties) vs the plain reference:
/// per-prompt losses, contributing set, batch loss, sft_loss and the gradient
/// w.r.t. every policy log-prob (padding must get exactly 0).
#[test]
fn every_loss_matches_the_float64_reference() {
    for (seed, scale, ties) in [(1, 5.0, false), (2, 100.0, false), (3, 5.0, true)] {
        let lists = random_lists(seed, 40, scale, ties);
        for p in all_params() {
            for per_token in [false, true] {
                let what = format!("{p:?} seed {seed} per_token {per_token}");
                let (lp, lr, r, mask, n) = batch(&lists);
                let lp = lp.set_requires_grad(true);
                let out = compute(&p, &input(&lp, &lr, &r, &mask, (!per_token).then_some(&n)));
                out.loss.backward();
                let per_prompt = Vec::<f64>::try_from(&out.per_prompt).unwrap();
                let contributes = Vec::<bool>::try_from(&out.contributes).unwrap();
                for (b, list) in lists.iter().enumerate() {
                    let (expected, contributes_expected) = reference(&p, list, per_token);
                    assert_eq!(contributes[b], contributes_expected, "{what} prompt {b}");
                    assert_close(per_prompt[b], expected, 1e-9, &format!("{what} prompt {b}"));
                }
                assert_close(
                    out.loss.double_value(&[]),
                    reference_batch(&p, &lists, per_token),
                    1e-9,
                    &format!("{what} batch"),
                );
                assert_close(
                    out.stats().sft_loss,
                    reference_sft_loss(&lists, per_token),
                    1e-12,
                    &format!("{what} sft_loss"),
                );
                let expected_grad = reference_grad(&p, &lists, per_token);
                let grad = lp.grad();
                for (b, list) in lists.iter().enumerate() {
                    let row = Vec::<f64>::try_from(grad.get(b as i64)).unwrap();
                    for (i, g) in row.iter().enumerate() {
                        if i < list.lp.len() {
                            assert!(
                                (g - expected_grad[b][i]).abs()
                                    < 1e-7 * (1.0 + expected_grad[b][i].abs()),
                                "{what} d/dlp[{b}][{i}]: {g} vs reference {}",
                                expected_grad[b][i]
                            );
                        } else {
                            assert_eq!(*g, 0.0, "{what} padding [{b}][{i}] gets gradient");
                        }
                    }
                }
            }
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
            let (lp, lr, r, mask, n) = batch(&lists);
            let lp = lp.to_kind(kind).set_requires_grad(true);
            let (lr, r, n) = (lr.to_kind(kind), r.to_kind(kind), n.to_kind(kind));
            let out = compute(&p, &input(&lp, &lr, &r, &mask, Some(&n)));
            out.loss.backward();
            assert!(out.loss.double_value(&[]).is_finite(), "{p:?} {kind:?}");
            assert!(
                bool::try_from(lp.grad().isfinite().all()).unwrap(),
                "{p:?} {kind:?} gradient"
            );
            if kind == Kind::Double {
                assert_close(
                    out.loss.double_value(&[]),
                    reference_batch(&p, &lists, false),
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
            n: l.n[..2].to_vec(),
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
    // The identities survive a common supervised term (same best response).
    let with_sft = |kind| {
        run(
            &LossParams {
                sft_weight: 0.4,
                ..params(kind)
            },
            &lists,
        )
        .loss
        .double_value(&[])
    };
    assert_close(
        with_sft(LossKind::Lpo),
        with_sft(LossKind::Dpo),
        1e-12,
        "LPO = DPO with sft",
    );
    assert_close(
        with_sft(LossKind::Listmle),
        with_sft(LossKind::Dpo),
        1e-12,
        "ListMLE = DPO with sft",
    );
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
                n: idx.iter().map(|&i| l.n[i]).collect(),
            }
        })
        .collect();
    // A prompt with K = 10 forces more padding on every other row.
    let mut padded = lists.clone();
    padded.push(List {
        lp: vec![-1.0; 10],
        lr: vec![-1.0; 10],
        r: (0..10).map(f64::from).collect(),
        n: vec![3.0; 10],
    });
    for p in all_params() {
        let a = Vec::<f64>::try_from(&run(&p, &lists).per_prompt).unwrap();
        let b = Vec::<f64>::try_from(&run(&p, &permuted).per_prompt).unwrap();
        let c = Vec::<f64>::try_from(&run(&p, &padded).per_prompt).unwrap();
        for i in 0..a.len() {
            assert_close(b[i], a[i], 1e-10, &format!("{p:?} permutation"));
            assert_close(c[i], a[i], 1e-10, &format!("{p:?} padding"));
        }
    }
}

/// Asserts that autograd's gradient of the batch loss w.r.t. every policy
/// log-probability of `lists` equals central finite differences (h = 1e-6)
/// to 1e-6.
fn assert_gradient_matches_finite_differences(p: &LossParams, lists: &[List]) {
    let (lp, lr, r, mask, n) = batch(lists);
    let lp = lp.set_requires_grad(true);
    let loss_of = |x: &Tensor| compute(p, &input(x, &lr, &r, &mask, Some(&n))).loss;
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

#[test]
fn gradients_match_central_finite_differences() {
    let lists = random_lists(8, 6, 5.0, false);
    for p in all_params() {
        assert_gradient_matches_finite_differences(&p, &lists);
    }
}

#[test]
fn all_equal_rewards_add_nothing_to_dpo_and_lpo() {
    let tied = List {
        lp: vec![-3.0, -5.0, -4.0],
        lr: vec![-4.0, -4.0, -4.0],
        r: vec![5.0, 5.0, 5.0],
        n: vec![2.0, 4.0, 3.0],
    };
    let other = List {
        lp: vec![-3.0, -5.0],
        lr: vec![-4.0, -4.0],
        r: vec![7.0, 1.0],
        n: vec![2.0, 5.0],
    };
    for p in [
        params(LossKind::Dpo),
        params(LossKind::Lpo),
        LossParams {
            coefficient: CoefficientMode::Uniform,
            ..params(LossKind::Lpo)
        },
        // The supervised term skips all-tied prompts too.
        LossParams {
            sft_weight: 0.9,
            ..params(LossKind::Dpo)
        },
        LossParams {
            sft_weight: 0.9,
            ..params(LossKind::Lpo)
        },
    ] {
        let (lp, lr, r, mask, n) = batch(&[tied.clone(), other.clone()]);
        let lp = lp.set_requires_grad(true);
        let out = compute(&p, &input(&lp, &lr, &r, &mask, Some(&n)));
        out.loss.backward();
        assert_eq!(
            Vec::<bool>::try_from(&out.contributes).unwrap(),
            vec![false, true]
        );
        let grad = Vec::<f64>::try_from(lp.grad().get(0)).unwrap();
        assert!(grad.iter().all(|g| *g == 0.0), "{p:?}: {grad:?}");
        assert_close(
            out.loss.double_value(&[]),
            reference(&p, &other, false).0,
            1e-12,
            "only the untied prompt counts",
        );
        // Alone, the tied prompt gives loss 0 with a finite (zero) gradient.
        let (lp, lr, r, mask, n) = batch(std::slice::from_ref(&tied));
        let lp = lp.set_requires_grad(true);
        let alone = compute(&p, &input(&lp, &lr, &r, &mask, Some(&n)));
        alone.loss.backward();
        assert_eq!(alone.loss.double_value(&[]), 0.0);
        assert_eq!(alone.stats().sft_loss, 0.0);
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
            reference(&params(kind), &tied, false).0,
            1e-12,
            "tied",
        );
    }
}

/// Revision 2's anchor only pushes up: d(gamma * A)/d lp_i = -gamma * beta *
/// p_i * sigma(-s_i) <= 0 for every response, so descent raises every
/// likelihood. Revision 1's anchor pushed responses with small p_i down.
#[test]
fn revision_two_anchor_only_pushes_up() {
    let grad_of = |p: &LossParams, lists: &[List]| {
        let (lp, lr, r, mask, n) = batch(lists);
        let lp = lp.set_requires_grad(true);
        compute(p, &input(&lp, &lr, &r, &mask, Some(&n)))
            .loss
            .backward();
        let masked = lp.grad().masked_fill(&mask.logical_not(), 0.0);
        let rows = lists.len() as i64;
        (0..rows)
            .map(|b| Vec::<f64>::try_from(masked.get(b)).unwrap())
            .collect::<Vec<_>>()
    };
    let mut rev1_pushes_down = 0;
    for (seed, ties) in [(11, false), (12, true)] {
        let lists = random_lists(seed, 30, 20.0, ties);
        for gamma in [0.1, 1.0, 5.0] {
            for base in [
                params(LossKind::Lpo),
                LossParams {
                    coefficient: CoefficientMode::Uniform,
                    margin_weight: true,
                    ..params(LossKind::Lpo)
                },
            ] {
                let with = grad_of(
                    &LossParams {
                        gamma,
                        ..base.clone()
                    },
                    &lists,
                );
                let without = grad_of(
                    &LossParams {
                        gamma: 0.0,
                        ..base.clone()
                    },
                    &lists,
                );
                // gamma > 0 makes every prompt (K >= 2) contribute; without it
                // all-tied prompts do not, so compare per prompt on the anchor
                // alone: the difference of the sums of per-prompt losses.
                let count = lists.len() as f64;
                let count0 = lists
                    .iter()
                    .filter(|l| {
                        method_term(
                            &LossParams {
                                gamma: 0.0,
                                ..base.clone()
                            },
                            l,
                            false,
                        )
                        .1
                    })
                    .count() as f64;
                for (b, list) in lists.iter().enumerate() {
                    let k = list.r.len();
                    let s: Vec<f64> = (0..k)
                        .map(|i| base.beta * (list.lp[i] - list.lr[i]))
                        .collect();
                    let target =
                        softmax(&list.r.iter().map(|r| r / base.alpha).collect::<Vec<_>>());
                    for i in 0..k {
                        let anchor = with[b][i] * count - without[b][i] * count0;
                        let expected = -gamma * base.beta * target[i] * sigmoid(-s[i]);
                        assert!(
                            anchor <= 0.0,
                            "seed {seed} gamma {gamma} [{b}][{i}]: {anchor}"
                        );
                        assert!(
                            (anchor - expected).abs() < 1e-9 * (1.0 + expected.abs()),
                            "[{b}][{i}]: {anchor} vs {expected}"
                        );
                        // Revision 1: -(gamma/K) * beta * [p_i sigma(-s_i) - (1 - p_i) sigma(s_i)].
                        let rev1 = -gamma / k as f64
                            * base.beta
                            * (target[i] * sigmoid(-s[i]) - (1.0 - target[i]) * sigmoid(s[i]));
                        if rev1 > 0.0 {
                            rev1_pushes_down += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(
        rev1_pushes_down > 0,
        "revision 1 would also only push up here"
    );
    // An all-tied prompt: the anchor is LPO's only term, and every entry of
    // the gradient is strictly negative.
    let tied = List {
        lp: vec![-3.0, -5.0, -4.0, -30.0],
        lr: vec![-4.0, -4.0, -4.0, -4.0],
        r: vec![5.0, 5.0, 5.0, 5.0],
        n: vec![1.0; 4],
    };
    let g = &grad_of(
        &LossParams {
            gamma: 1.0,
            ..params(LossKind::Lpo)
        },
        std::slice::from_ref(&tied),
    )[0];
    assert!(g.iter().all(|x| *x < 0.0), "{g:?}");
}

/// The supervised term: all-tied prompts add nothing, the best response is
/// the first highest reward, token counts normalise, None uses lp as is.
#[test]
fn supervised_term_picks_first_best_and_normalises_by_tokens() {
    let lambda = 0.6;
    let list = List {
        lp: vec![-8.0, -12.0, -20.0, -3.0],
        lr: vec![-9.0, -9.0, -9.0, -9.0],
        r: vec![3.0, 7.0, 7.0, 1.0],
        n: vec![4.0, 6.0, 10.0, 2.0],
    };
    let tied = List {
        lp: vec![-5.0, -6.0],
        lr: vec![-5.0, -5.0],
        r: vec![2.0, 2.0],
        n: vec![5.0, 6.0],
    };
    for kind in [
        LossKind::Lpo,
        LossKind::Dpo,
        LossKind::Listmle,
        LossKind::Infonca,
        LossKind::Nca,
    ] {
        for per_token in [false, true] {
            let lists = [list.clone(), tied.clone()];
            let grads = |p: &LossParams| {
                let (lp, lr, r, mask, n) = batch(&lists);
                let lp = lp.set_requires_grad(true);
                let out = compute(p, &input(&lp, &lr, &r, &mask, (!per_token).then_some(&n)));
                out.loss.backward();
                (out, Vec::<f64>::try_from(lp.grad().view([-1])).unwrap())
            };
            let (off, g_off) = grads(&params(kind));
            let (on, g_on) = grads(&LossParams {
                sft_weight: lambda,
                ..params(kind)
            });
            // Best = index 1 (first of the tied 7s), not index 2.
            let nll = if per_token { 12.0 } else { 12.0 / 6.0 };
            assert_eq!(on.stats().sft_loss, nll, "{kind:?}");
            assert_eq!(off.stats().sft_loss, nll, "reported even with weight 0");
            let pp_off = Vec::<f64>::try_from(&off.per_prompt).unwrap();
            let pp_on = Vec::<f64>::try_from(&on.per_prompt).unwrap();
            assert_close(pp_on[0] - pp_off[0], lambda * nll, 1e-12, "sft term");
            assert_eq!(
                pp_on[1], pp_off[1],
                "{kind:?}: tied prompt gets no sft term"
            );
            // Contributing prompts: DPO/LPO 1 (tied one skipped), others 2.
            let count = Vec::<bool>::try_from(&on.contributes)
                .unwrap()
                .iter()
                .filter(|c| **c)
                .count() as f64;
            let count_off = Vec::<bool>::try_from(&off.contributes)
                .unwrap()
                .iter()
                .filter(|c| **c)
                .count() as f64;
            assert_eq!(count, count_off);
            let dlp = |g: &[f64], i: usize| g[i] * count;
            let expected = -lambda / if per_token { 1.0 } else { 6.0 };
            assert_close(
                dlp(&g_on, 1) - dlp(&g_off, 1),
                expected,
                1e-12,
                "d/dlp_best",
            );
            for i in [0, 2, 3, 4, 5] {
                assert_close(dlp(&g_on, i), dlp(&g_off, i), 1e-12, "only the best moves");
            }
        }
    }
    // Integer token counts, as the trainer may pass them.
    let (lp, lr, r, mask, n) = batch(std::slice::from_ref(&list));
    let out = compute(
        &LossParams {
            sft_weight: lambda,
            ..params(LossKind::Dpo)
        },
        &input(&lp, &lr, &r, &mask, Some(&n.to_kind(Kind::Int64))),
    );
    assert_close(
        out.loss.double_value(&[]),
        reference(
            &LossParams {
                sft_weight: lambda,
                ..params(LossKind::Dpo)
            },
            &list,
            false,
        )
        .0,
        1e-12,
        "integer token counts",
    );
}

#[test]
fn half_precision_inputs_are_computed_in_f32() {
    let lists = random_lists(9, 8, 5.0, false);
    let (lp, lr, r, mask, n) = batch(&lists);
    let (lp, lr, r) = (
        lp.to_kind(Kind::BFloat16),
        lr.to_kind(Kind::BFloat16),
        r.to_kind(Kind::BFloat16),
    );
    let out = compute(
        &LossParams {
            sft_weight: 0.5,
            gamma: 0.5,
            ..params(LossKind::Lpo)
        },
        &input(&lp, &lr, &r, &mask, Some(&n)),
    );
    assert_eq!(out.loss.kind(), Kind::Float);
}

#[test]
fn stats_report_chosen_rejected_and_accuracy() {
    let list = List {
        lp: vec![-1.0, -9.0, -5.0],
        lr: vec![-3.0, -3.0, -3.0],
        r: vec![9.0, 1.0, 5.0],
        n: vec![4.0, 1.0, 1.0],
    };
    let out = run(
        &LossParams {
            beta: 1.0,
            ..params(LossKind::Dpo)
        },
        &[list],
    );
    assert_eq!(out.stats().chosen_logp, -1.0);
    assert_eq!(out.stats().rejected_logp, -9.0);
    assert_eq!(out.stats().chosen_reward, 2.0);
    assert_eq!(out.stats().rejected_reward, -6.0);
    assert_eq!(out.stats().ranking_accuracy, 1.0);
    assert_eq!(out.stats().sft_loss, 0.25);
}

#[test]
fn params_follow_schedules() {
    let config: LossConfig = toml::from_str(
        "alpha = { kind = \"linear\", from = 2.0, to = 0.0 }\nbeta = 0.3\n\
         sft_weight = { kind = \"warmup\", steps = 4, to = 0.8 }",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let p = LossParams::at_step(&config, 5, 10);
    assert_eq!((p.alpha, p.beta, p.sft_weight), (1.0, 0.3, 0.8));
    let p = LossParams::at_step(&config, 1, 10);
    assert_eq!(p.sft_weight, 0.2);
    assert_eq!(
        LossParams::at_step(&LossConfig::default(), 0, 1).sft_weight,
        0.0
    );
}

#[test]
fn contributing_prompts_depend_on_rewards_and_mask_only() {
    // Rewards with an all-tied prompt, a partly tied one, distinct ones and
    // one valid response (padded): every kind, with and without the anchor
    // and the supervised term.
    let rewards = Tensor::from_slice(&[
        3.0f64, 3.0, 3.0, 1.0, 1.0, 2.0, 0.0, 5.0, 2.0, 4.0, 0.0, 0.0,
    ])
    .view([4, 3]);
    let mask = Tensor::from_slice(&[
        true, true, true, true, true, true, true, true, true, true, false, false,
    ])
    .view([4, 3]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for kind in [
        LossKind::Dpo,
        LossKind::Lpo,
        LossKind::Listmle,
        LossKind::Infonca,
        LossKind::Nca,
    ] {
        for (gamma, sft_weight) in [(0.0, 0.0), (0.5, 0.0), (0.0, 1.0)] {
            let p = LossParams {
                gamma,
                sft_weight,
                ..params(kind)
            };
            let want = contributing(&p, &rewards, &mask);
            for _ in 0..3 {
                let random: Vec<f64> = (0..12).map(|_| rng.random_range(-20.0..0.0)).collect();
                let lp = Tensor::from_slice(&random).view([4, 3]);
                let lr = lp.shallow_clone() * 0.5;
                let counts = rewards.ones_like();
                let out = compute(
                    &p,
                    &LossInput {
                        policy_logps: &lp,
                        reference_logps: &lr,
                        rewards: &rewards,
                        mask: &mask,
                        token_counts: Some(&counts),
                    },
                );
                assert!(
                    out.contributes.equal(&want),
                    "{kind:?} gamma {gamma} sft {sft_weight}"
                );
            }
        }
    }
    // The all-tied prompt adds no DPO or LPO term; a prompt of one response none at all.
    let dpo = contributing(&params(LossKind::Dpo), &rewards, &mask);
    assert_eq!(
        Vec::<bool>::try_from(&dpo).unwrap(),
        [false, true, true, false]
    );
}

/// The loss-kind table says which `loss.*` keys each kind reads, and run
/// ids hash exactly those (lpo-plan's `tests/loss_keys.rs`). Here the other
/// half: moving a key a kind reads changes its loss or its logged statistics
/// on random lists, and moving a key it does not read changes neither. (`normalize` acts before
/// the loss, on how log-probabilities are summed, so it is not checked here.)
#[test]
fn a_kind_s_loss_moves_with_exactly_the_keys_it_declares() {
    let lists = random_lists(11, 12, 5.0, false);
    // The loss and the statistics a run logs (metrics.csv): both are what a
    // run computes, so a key that moves either must be in the run id.
    let loss_of = |text: &str| {
        let config: LossConfig = toml::from_str(text).unwrap();
        let p = LossParams::at_step(&config, 0, 1);
        let out = run(&p, &lists);
        let mut values = Vec::<f64>::try_from(&out.stats_values).unwrap();
        values.push(out.loss.double_value(&[]));
        values
    };
    let mut wrong = Vec::new();
    for spec in lpo_recipe::LOSSES {
        for margin_weight in [false, true] {
            let base_text = format!(
                "kind = \"{}\"\nmargin_weight = {margin_weight}\n",
                spec.name
            );
            let base = loss_of(&base_text);
            let reads = spec.kind.relevant_keys(margin_weight);
            for key in lpo_recipe::keys::KEYS {
                let Some(name) = key.path.strip_prefix("loss.") else {
                    continue;
                };
                if ["kind", "margin_weight", "normalize"].contains(&name) {
                    continue;
                }
                let value = key.ty.another_value(key.default).unwrap();
                let moved = loss_of(&format!("{base_text}{name} = {value}\n")) != base;
                if moved != reads.contains(&name) {
                    wrong.push(format!(
                        "{} (margin_weight = {margin_weight}): {name} = {value} {}",
                        spec.name,
                        if moved {
                            "changes the loss but is not declared"
                        } else {
                            "is declared but changes nothing"
                        }
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `aot`, `aot_unpaired` and `sft` from docs/trl-losses.md with plain loops
/// over the whole batch's pairs (the pairs `pairing` makes of each list).
fn reference_batch_kind(p: &LossParams, lists: &[List]) -> f64 {
    let mut pairs = Vec::new(); // (chosen, rejected) of each list
    for list in lists {
        let k = list.r.len();
        let best = (0..k).fold(0, |b, i| if list.r[i] > list.r[b] { i } else { b });
        let worst = (0..k).fold(0, |w, i| if list.r[i] < list.r[w] { i } else { w });
        for i in 0..k {
            for j in 0..k {
                let keep = list.r[i] > list.r[j]
                    && match p.pairing {
                        Pairing::All => true,
                        Pairing::BestRest => i == best,
                        Pairing::BestWorst => i == best && j == worst,
                    };
                if keep {
                    pairs.push((list, i, j));
                }
            }
        }
    }
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    };
    let smoothed = |dl: f64| {
        let ls = p.label_smoothing;
        -(1.0 - ls) * log_sigmoid(p.beta * dl) - ls * log_sigmoid(-p.beta * dl)
    };
    let ranks = |a: Vec<f64>, b: Vec<f64>| {
        let (a, b) = (sorted(a), sorted(b));
        a.iter().zip(&b).map(|(x, y)| smoothed(x - y)).sum::<f64>() / a.len() as f64
    };
    match p.kind() {
        LossKind::Aot => ranks(
            pairs.iter().map(|(l, i, j)| l.lp[*i] - l.lp[*j]).collect(),
            pairs.iter().map(|(l, i, j)| l.lr[*i] - l.lr[*j]).collect(),
        ),
        LossKind::AotUnpaired => ranks(
            pairs.iter().map(|(l, i, _)| l.lp[*i] - l.lr[*i]).collect(),
            pairs.iter().map(|(l, _, j)| l.lp[*j] - l.lr[*j]).collect(),
        ),
        LossKind::Sft => {
            let logp: f64 = pairs.iter().map(|(l, i, _)| l.lp[*i]).sum();
            let tokens: f64 = pairs.iter().map(|(l, i, _)| l.n[*i].max(1.0)).sum();
            -logp / tokens
        }
        other => unreachable!("{other:?} is not coupled across the batch"),
    }
}

#[test]
fn batch_coupled_kinds_match_the_float64_reference_and_finite_differences() {
    let lists = random_lists(12, 9, 5.0, false);
    for kind in [LossKind::Aot, LossKind::AotUnpaired, LossKind::Sft] {
        for pairing in [Pairing::BestWorst, Pairing::BestRest, Pairing::All] {
            let p = LossParams {
                pairing,
                ..params(kind)
            };
            let (lp, lr, r, mask, n) = batch(&lists);
            let loss = compute(&p, &input(&lp, &lr, &r, &mask, Some(&n))).loss;
            assert_close(
                loss.double_value(&[]),
                reference_batch_kind(&p, &lists),
                1e-12,
                &format!("{p:?}"),
            );
            assert_gradient_matches_finite_differences(&p, &lists);
        }
    }
}

/// docs/listwise-losses.md's worked example: one K = 3 list (plus a masked
/// fourth slot that must change nothing), with the values and exact
/// gradients its appendix script computed from the papers' formulas.
#[test]
fn learning_to_rank_kinds_give_the_worked_examples() {
    let (lp, lr, r, n) = (
        [-12.0, -15.0, -9.0],
        [-13.0, -14.0, -10.5],
        [7.0, 3.0, 5.0],
        [10.0, 12.0, 6.0],
    );
    let padded = |v: [f64; 3], pad: f64| Tensor::from_slice(&[v[0], v[1], v[2], pad]).view([1, 4]);
    let expectations: [(LossKind, f64, f64, [f64; 3]); 3] = [
        (
            LossKind::Rrhf,
            0.0,
            1.45,
            [-0.1, 0.0833333333333, -0.166666666667],
        ),
        (
            LossKind::LipoLambda,
            0.1,
            0.509160960224,
            [-0.024488332701, 0.0215850750928, 0.00290325760824],
        ),
        (
            LossKind::Pro,
            0.0,
            5.4369289539,
            [-0.549163602849, 0.138427656636, 0.0487987905373],
        ),
    ];
    for (kind, beta, value, grad) in expectations {
        let p = LossParams {
            beta: if beta > 0.0 { beta } else { 0.5 },
            ..params(kind)
        };
        let policy = padded(lp, -3.0).set_requires_grad(true);
        let out = compute(
            &p,
            &input(
                &policy,
                &padded(lr, -1.0),
                &padded(r, 9.0),
                &Tensor::from_slice(&[true, true, true, false]).view([1, 4]),
                Some(&padded(n, 2.0)),
            ),
        );
        assert_close(
            out.loss.double_value(&[]),
            value,
            1e-10,
            &format!("{kind:?} loss"),
        );
        out.loss.backward();
        let g = Vec::<f64>::try_from(policy.grad().view([-1])).unwrap();
        for i in 0..3 {
            assert_close(g[i], grad[i], 1e-10, &format!("{kind:?} d/dlp[{i}]"));
        }
        assert_eq!(g[3], 0.0, "{kind:?}: the masked slot gets no gradient");
    }
}

/// The learning-to-rank kinds' gradients by central finite differences, on
/// random lists with padding and ties (LiPO-λ's weights are constants, so
/// its loss is smooth wherever no two implicit rewards cross).
#[test]
fn learning_to_rank_kinds_match_finite_differences_and_ignore_ties_only_lists() {
    let lists = random_lists(13, 8, 5.0, true);
    for kind in [LossKind::LipoLambda, LossKind::Pro, LossKind::Rrhf] {
        let p = params(kind);
        let (lp, lr, r, mask, n) = batch(&lists);
        let out = compute(&p, &input(&lp, &lr, &r, &mask, Some(&n)));
        let contributes = Vec::<bool>::try_from(&out.contributes).unwrap();
        for (b, list) in lists.iter().enumerate() {
            let untied = list.r.iter().any(|x| *x != list.r[0]);
            assert_eq!(contributes[b], untied, "{kind:?} prompt {b}");
        }
        assert_gradient_matches_finite_differences(&p, &lists);
    }
}

/// docs/listwise-losses.md's K = 2 identities, on random pairs: LiPO-λ is
/// `(1/ln 2 - 1/ln 3)` times DPO (labels 1 and 0 after per-list scaling);
/// PRO is `softplus(-(r_w - r_l)(u_w - u_l)) + 0.05 (-lp_w)`; RRHF is
/// `relu(u_l - u_w) - u_w`; ORPO with beta = 0 is the chosen response's
/// per-token NLL; SimPO with gamma = 0 is sigmoid_norm without a reference.
#[test]
fn learning_to_rank_and_reference_free_kinds_keep_their_k2_identities() {
    let pairs: Vec<List> = random_lists(14, 16, 8.0, false)
        .into_iter()
        .map(|l| List {
            lp: l.lp[..2].to_vec(),
            lr: l.lr[..2].to_vec(),
            r: l.r[..2].to_vec(),
            n: l.n[..2].to_vec(),
        })
        .collect();
    let per_prompt = |p: &LossParams, lists: &[List]| {
        Vec::<f64>::try_from(&run_with(p, lists, false).per_prompt).unwrap()
    };
    let c = 1.0 / std::f64::consts::LN_2 - 1.0 / 3f64.ln();
    let dpo = per_prompt(&params(LossKind::Dpo), &pairs);
    let lipo = per_prompt(&params(LossKind::LipoLambda), &pairs);
    let pro = per_prompt(&params(LossKind::Pro), &pairs);
    let rrhf = per_prompt(&params(LossKind::Rrhf), &pairs);
    let orpo = per_prompt(
        &LossParams {
            beta: 0.0,
            ..params(LossKind::Orpo)
        },
        &pairs,
    );
    let simpo = per_prompt(
        &LossParams {
            simpo_gamma: 0.0,
            ..params(LossKind::Simpo)
        },
        &pairs,
    );
    for (b, l) in pairs.iter().enumerate() {
        let (w, lo) = if l.r[0] > l.r[1] { (0, 1) } else { (1, 0) };
        let u = |i: usize| l.lp[i] / l.n[i].max(1.0);
        let what = |name: &str| format!("{name} pair {b}");
        assert_close(lipo[b], c * dpo[b], 1e-12, &what("lipo_lambda"));
        let pro_expected = softplus(-(l.r[w] - l.r[lo]) * (u(w) - u(lo))) + 0.05 * -l.lp[w];
        assert_close(pro[b], pro_expected, 1e-12, &what("pro"));
        assert_close(
            rrhf[b],
            (u(lo) - u(w)).max(0.0) - u(w),
            1e-12,
            &what("rrhf"),
        );
        assert_close(orpo[b], -u(w), 1e-12, &what("orpo"));
        assert_close(
            simpo[b],
            softplus(-0.5 * (u(w) - u(lo))),
            1e-12,
            &what("simpo"),
        );
    }
}

/// A weighted `loss.kind`: the loss is the weighted sum of the parts'
/// per-prompt terms plus the supervised term, averaged over the prompts
/// where any of them contributes (parts whose contributing prompts differ
/// included: infonca counts all-tied lists, dpo does not), each part's
/// logged loss is its terms' sum over those prompts, the diagnostics are the
/// first part's, and the gradient matches finite differences.
#[test]
fn weighted_parts_match_the_float64_reference_and_finite_differences() {
    let mut lists = random_lists(21, 8, 4.0, true);
    // All tied: infonca and nca count it, the pairwise kinds do not.
    lists.push(List {
        lp: vec![-3.0, -5.0, -4.0],
        lr: vec![-4.0, -4.5, -3.0],
        r: vec![2.0, 2.0, 2.0],
        n: vec![2.0, 4.0, 3.0],
    });
    let part = |kind, weight| Part { kind, weight };
    let objectives = [
        vec![part(LossKind::Dpo, 0.8), part(LossKind::BcoPair, 0.2)],
        vec![part(LossKind::Infonca, 0.5), part(LossKind::Dpo, 1.5)],
        vec![
            part(LossKind::Simpo, 0.3),
            part(LossKind::Lpo, 0.7),
            part(LossKind::Orpo, 0.1),
        ],
        vec![part(LossKind::Nca, 2.0)],
    ];
    for (objective, sft_weight) in objectives.into_iter().zip([0.0, 0.4, 0.0, 0.25]) {
        let p = LossParams {
            parts: objective.clone(),
            sft_weight,
            ..params(LossKind::Lpo)
        };
        let out = run(&p, &lists);
        let what = format!("{objective:?}");
        assert_close(
            out.loss.double_value(&[]),
            reference_batch(&p, &lists, false),
            1e-10,
            &what,
        );
        // Each part: the sum of its terms over the prompts any part (or the
        // supervised term) makes contribute.
        let any = lists.iter().filter(|l| reference(&p, l, false).1).count() as f64;
        let parts = Vec::<f64>::try_from(&out.parts).unwrap();
        assert_eq!(parts.len(), objective.len(), "{what}");
        for (got, part) in parts.iter().zip(&objective) {
            let sum: f64 = lists
                .iter()
                .map(|l| method_term(&only(&p, part.kind), l, false))
                .filter(|(_, contributes)| *contributes)
                .map(|(term, _)| term)
                .sum();
            assert_close(*got, sum / any, 1e-10, &format!("{what}: {:?}", part.kind));
        }
        let first = run(&only(&p, objective[0].kind), &lists).stats();
        assert_eq!(out.stats(), first, "{what}: the first part's diagnostics");
        let grad = Vec::<f64>::try_from(Tensor::cat(
            &reference_grad(&p, &lists, false)
                .iter()
                .map(|row| Tensor::from_slice(row))
                .collect::<Vec<_>>(),
            0,
        ))
        .unwrap();
        let (lp, lr, r, mask, n) = batch(&lists);
        let lp = lp.set_requires_grad(true);
        compute(&p, &input(&lp, &lr, &r, &mask, Some(&n)))
            .loss
            .backward();
        let got = Vec::<f64>::try_from(lp.grad().masked_select(&mask)).unwrap();
        for (i, (g, want)) in got.iter().zip(&grad).enumerate() {
            assert_close(*g, *want, 1e-6, &format!("{what} d/dlp[{i}]"));
        }
        assert_gradient_matches_finite_differences(&p, &lists);
    }
}
