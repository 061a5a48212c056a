//! TRL's pairwise preference losses (docs/trl-losses.md), as TRL 1.16.0's
//! `DPOTrainer._compute_loss` computes each `loss_type`, on every pair a
//! list's `pairing` makes. For a pair (chosen i, rejected j) with log-ratios
//! `d_c = lp_i - lr_i`, `d_r = lp_j - lr_j` and `z = beta (d_c - d_r)`:
//!
//! | kind | term |
//! | --- | --- |
//! | hinge | `relu(1 - z)` |
//! | ipo | `(d_c / n_c - d_r / n_r - 1 / (2 beta))^2` |
//! | exo_pair | `sig(z) (logsig(z) - log(1 - eps)) + sig(-z) (logsig(-z) - log eps)` |
//! | nca_pair | `-logsig(beta d_c) - logsig(-beta d_c) / 2 - logsig(-beta d_r) / 2` |
//! | robust | `(-(1 - ls) logsig(z) + ls logsig(-z)) / (1 - 2 ls)` |
//! | bco_pair | `-logsig(beta d_c) - logsig(-beta d_r)` |
//! | sppo_hard | `(d_c - 1 / (2 beta))^2 + (d_r + 1 / (2 beta))^2` |
//! | apo_zero | `1 - sig(beta d_c) + sig(beta d_r)` |
//! | apo_down | `sig(beta d_c) + 1 - sig(z)` |
//! | discopop | `m = sig(z / tau)`: `-logsig(z) (1 - m) + exp(-z) m` (as `exp(-z + log m)`) |
//! | sigmoid_norm | `-logsig(beta (d_c / n_c - d_r / n_r))` |
//! | simpo | `-logsig(beta (u_c - u_r) - gamma)`, `u = lp / n` (no reference) |
//! | orpo | `-u_c - beta logsig((u_c - u_r) - (log(1 - e^u_c) - log(1 - e^u_r)))` (no reference) |
//!
//! `aot`, `aot_unpaired` and `sft` couple the pairs of a batch
//! ([`batch_terms`]).
//!
//! `n` is a response's token count (clamped to >= 1), as TRL divides by its
//! completion mask's sum; with `normalize = "mean"` the log-probabilities are
//! already per token and are not divided again.

use lpo_recipe::LossKind;
use tch::Tensor;

use crate::LossParams;

/// Each pair's term, `[B, K, K]` (chosen i, rejected j); entries outside
/// `weights` are computed from zeros, so they are finite and get no gradient.
///
/// `lp`, `lr`: `[B, K]` policy and reference log-probabilities; `counts`:
/// the tokens each sums over (`None`: already per token).
pub(crate) fn pair_terms(
    loss_kind: LossKind,
    params: &LossParams,
    lp: &Tensor,
    lr: &Tensor,
    counts: Option<&Tensor>,
    weights: &Tensor,
) -> Tensor {
    let beta = params.beta;
    let d = lp - lr; // [B, K]
    let off = weights.logical_not();
    // A row's value as the chosen (i) and the rejected (j) side of each pair.
    let sides_filled = |t: &Tensor, fill: f64| {
        let shape = weights.size();
        let chosen = t.unsqueeze(2).expand(&shape, false).masked_fill(&off, fill);
        let rejected = t.unsqueeze(1).expand(&shape, false).masked_fill(&off, fill);
        (chosen, rejected)
    };
    let sides = |t: &Tensor| sides_filled(t, 0.0);
    let (dc, dr) = sides(&d);
    let z = (&dc - &dr) * beta;
    let per_token = || sides(&crate::per_token(&d, counts));
    let sig = |t: &Tensor| t.sigmoid();
    let logsig = |t: &Tensor| t.log_sigmoid();
    match loss_kind {
        LossKind::Hinge => (-&z + 1.0).relu(),
        LossKind::Ipo => {
            let (tc, tr) = per_token();
            (tc - tr - 1.0 / (2.0 * beta)).square()
        }
        LossKind::ExoPair => {
            let (log_pw, log_pl) = exo_constants(params.exo_epsilon);
            sig(&z) * (logsig(&z) - log_pw) + sig(&-&z) * (logsig(&-&z) - log_pl)
        }
        LossKind::NcaPair => {
            let (c, r) = (&dc * beta, &dr * beta);
            -logsig(&c) - logsig(&-&c) * 0.5 - logsig(&-&r) * 0.5
        }
        LossKind::Robust => {
            let ls = params.label_smoothing;
            (logsig(&z) * -(1.0 - ls) + logsig(&-&z) * ls) / (1.0 - 2.0 * ls)
        }
        LossKind::BcoPair => -logsig(&(&dc * beta)) - logsig(&(&dr * -beta)),
        LossKind::SppoHard => (&dc - 0.5 / beta).square() + (&dr + 0.5 / beta).square(),
        LossKind::ApoZero => -sig(&(&dc * beta)) + 1.0 + sig(&(&dr * beta)),
        LossKind::ApoDown => sig(&(&dc * beta)) - sig(&z) + 1.0,
        LossKind::Discopop => {
            // exp(-z) m as exp(-z + log m): the same number, without
            // inf * 0 = NaN where exp(-z) overflows and m underflows.
            let scaled = &z / params.discopop_tau;
            -logsig(&z) * (-sig(&scaled) + 1.0) + (-&z + logsig(&scaled)).exp()
        }
        LossKind::SigmoidNorm => {
            let (tc, tr) = per_token();
            -logsig(&((tc - tr) * beta))
        }
        LossKind::Simpo => {
            let (uc, ur) = sides(&crate::per_token(lp, counts));
            -logsig(&((uc - ur) * beta - params.simpo_gamma))
        }
        LossKind::Orpo => {
            // Unpaired slots hold -1 (a finite log-odds), never 0 (log 0).
            let (uc, ur) = sides_filled(&crate::per_token(lp, counts), -1.0);
            let log_odds = (&uc - &ur) - (log1mexp(&uc) - log1mexp(&ur));
            -&uc - logsig(&log_odds) * beta
        }
        LossKind::Lpo
        | LossKind::Dpo
        | LossKind::Listmle
        | LossKind::Infonca
        | LossKind::Nca
        | LossKind::Aot
        | LossKind::AotUnpaired
        | LossKind::Sft
        | LossKind::LipoLambda
        | LossKind::Pro
        | LossKind::Rrhf => {
            unreachable!("{} has no per-pair term here", loss_kind.as_str())
        }
    }
    .to_kind(d.kind())
}

/// The kinds whose pairs are coupled across the batch (`aot`,
/// `aot_unpaired`, `sft`): one number for the whole batch, given to every
/// prompt that has a pair, so the mean over those prompts is that number.
/// Returns (`[B]` per prompt, `[B]` bool whether it has a pair).
///
/// - `aot`: the policy margins `lp_c - lp_r` and the reference margins
///   `lr_c - lr_r` of the batch's pairs are each sorted ascending and
///   subtracted rank by rank (`dl`); the loss is the mean over ranks of
///   `-(1 - ls) logsig(beta dl) - ls logsig(-beta dl)`.
/// - `aot_unpaired`: the same with the chosen and the rejected log-ratios
///   sorted.
/// - `sft`: `-(sum of the chosen log-probabilities) / (sum of their token
///   counts)` over the batch's pairs.
pub(crate) fn batch_terms(
    loss_kind: LossKind,
    params: &LossParams,
    lp: &Tensor,
    lr: &Tensor,
    counts: Option<&Tensor>,
    weights: &Tensor,
) -> (Tensor, Tensor) {
    let shape = weights.size();
    let chosen = |t: &Tensor| t.unsqueeze(2).expand(&shape, false).masked_select(weights);
    let rejected = |t: &Tensor| t.unsqueeze(1).expand(&shape, false).masked_select(weights);
    let contributes = weights.any_dim(2, false).any_dim(1, false); // [B]
    let smoothed = |dl: &Tensor| {
        let (ls, z) = (params.label_smoothing, dl * params.beta);
        -(z.log_sigmoid() * (1.0 - ls)) - (-z).log_sigmoid() * ls
    };
    let sorted = |t: Tensor| t.sort(0, false).0;
    let value = if chosen(lp).numel() == 0 {
        lp.sum(lp.kind()) * 0.0 // no pair: nothing to learn, still a graph
    } else {
        match loss_kind {
            LossKind::Aot => {
                let policy = chosen(lp) - rejected(lp);
                let reference = chosen(lr) - rejected(lr);
                smoothed(&(sorted(policy) - sorted(reference))).mean(lp.kind())
            }
            LossKind::AotUnpaired => {
                let d = lp - lr;
                smoothed(&(sorted(chosen(&d)) - sorted(rejected(&d)))).mean(lp.kind())
            }
            LossKind::Sft => {
                let tokens = match counts {
                    Some(n) => chosen(&n.clamp_min(1.0)).sum(lp.kind()),
                    None => chosen(&lp.ones_like()).sum(lp.kind()),
                };
                -chosen(lp).sum(lp.kind()) / tokens
            }
            other => unreachable!("{} is not coupled across the batch", other.as_str()),
        }
    };
    let per_prompt = value
        .expand([shape[0]], false)
        .masked_fill(&contributes.logical_not(), 0.0);
    (per_prompt, contributes)
}

/// `log(1 - exp(x))` for `x < 0`, accurate on both sides of `-ln 2`
/// (Mächler's log1mexp, as TRL's ORPO computes it).
fn log1mexp(x: &Tensor) -> Tensor {
    let near_zero = x.gt(-std::f64::consts::LN_2);
    let far = (-x.exp()).log1p();
    let near = (-x.expm1()).log();
    near.where_self(&near_zero, &far)
}

/// EXO's `(log(1 - eps), log eps)` as TRL computes them: from eps as an f32
/// tensor, in f32 (correctly rounded), whatever the inputs' precision.
fn exo_constants(eps: f64) -> (f64, f64) {
    let eps = f64::from(eps as f32);
    (f64::from((-eps).ln_1p() as f32), f64::from(eps.ln() as f32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exo_constants_are_trls_float32_values() {
        // TRL 1.16.0 with label_smoothing = 1e-3 (the fixture's
        // outputs.exo_pair_constants).
        assert_eq!(
            exo_constants(1e-3),
            (-0.0010005004005506635, -6.907755374908447)
        );
    }
}
