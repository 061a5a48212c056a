//! Listwise losses from the learning-to-rank literature that no framework
//! ships (docs/listwise-losses.md, from the papers and their official code):
//!
//! - `lipo_lambda` (LiPO-λ, Liu et al. 2024): DPO's term on every ordered
//!   pair, weighted by how much swapping the two would change the list's DCG
//!   under the model's own ranking; labels are the rewards scaled to [0, 1]
//!   per list.
//! - `pro` (PRO, Song et al. 2024): nested Plackett–Luce stages on
//!   per-token log-probabilities, each stage's scores multiplied by reward
//!   differences, plus `0.05 (K - 1)^2` times the best response's NLL.
//! - `rrhf` (RRHF, Yuan et al. 2023): a zero-margin hinge on per-token
//!   log-probabilities over every ordered pair, plus the best response's
//!   per-token NLL.
//!
//! All three are per prompt over its valid responses; a prompt whose rewards
//! all tie contributes nothing. `pro` and `rrhf` use no reference.

use lpo_recipe::LossKind;
use tch::{Kind, Tensor};

use crate::{best_and_worst, FILL};

/// The kind's per-prompt loss, `[B]`, and whether each prompt contributes.
///
/// `s`: the implicit rewards `beta (lp - lr)` (`lipo_lambda`); `a`: the
/// per-token log-probabilities; `lp`: the log-probabilities as the loss sees
/// them; `better[b, i, j]`: both valid and `r_i > r_j`.
pub(crate) fn loss(
    loss_kind: LossKind,
    s: &Tensor,
    a: &Tensor,
    lp: &Tensor,
    r: &Tensor,
    mask: &Tensor,
    better: &Tensor,
) -> (Tensor, Tensor) {
    let kind = s.kind();
    let ordered = better.any_dim(2, false).any_dim(1, false); // [B]
    let sum_pairs = |t: Tensor| {
        t.masked_fill(&better.logical_not(), 0.0)
            .sum_dim_intlist([1i64, 2].as_slice(), false, kind)
    };
    let loss = match loss_kind {
        LossKind::LipoLambda => {
            let w = lambda_weights(s, r, mask).masked_fill(&better.logical_not(), 0.0);
            let gap = s.unsqueeze(2) - s.unsqueeze(1); // s_i - s_j
            sum_pairs(w * (-gap).softplus())
        }
        LossKind::Rrhf => {
            // relu(a_j - a_i) for every pair with r_i > r_j, plus -a_best.
            let hinge = (a.unsqueeze(1) - a.unsqueeze(2)).relu();
            sum_pairs(hinge) - at_best(a, r, mask)
        }
        LossKind::Pro => pro(a, r, mask) - sft_scale(mask, kind) * at_best(lp, r, mask),
        other => unreachable!("{} is not a listwise kind here", other.as_str()),
    };
    (loss.masked_fill(&ordered.logical_not(), 0.0), ordered)
}

/// `t[b, best]`: the value at each list's first highest reward, `[B]`.
fn at_best(t: &Tensor, r: &Tensor, mask: &Tensor) -> Tensor {
    let (best, _) = best_and_worst(r, mask);
    t.gather(-1, &best.unsqueeze(1), false).squeeze_dim(-1)
}

/// PRO's SFT weight `0.05 (K_b - 1)^2`, `[B]`, in `kind`.
fn sft_scale(mask: &Tensor, kind: Kind) -> Tensor {
    let k = mask.to_kind(kind).sum_dim_intlist(-1, false, kind);
    (k - 1.0).square() * 0.05
}

/// LiPO-λ's weights `|G_i - G_j| |1/ln(1 + tau_i) - 1/ln(1 + tau_j)|`,
/// `[B, K, K]`, constants for the gradient: gains `G = 2^psi - 1` of the
/// rewards scaled to [0, 1] per list, ranks `tau` (1 = highest) of the
/// detached implicit rewards among the valid responses, ties by position.
fn lambda_weights(s: &Tensor, r: &Tensor, mask: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let kind = s.kind();
        let k = s.size()[1];
        let valid = mask.to_kind(kind);
        let high = r
            .masked_fill(&mask.logical_not(), f64::NEG_INFINITY)
            .amax(-1, true);
        let low = r
            .masked_fill(&mask.logical_not(), f64::INFINITY)
            .amin(-1, true);
        let psi = ((r - &low) / (&high - &low).clamp_min(f64::MIN_POSITIVE))
            .masked_fill(&mask.logical_not(), 0.0);
        let gain = (psi * std::f64::consts::LN_2).exp() - 1.0;
        // ahead[b, i, j]: response j ranks before i (higher s, or equal and earlier).
        let (si, sj) = (s.unsqueeze(2), s.unsqueeze(1));
        let position = Tensor::arange(k, (Kind::Int64, s.device()));
        let earlier = position.unsqueeze(1).gt_tensor(&position.unsqueeze(0)); // j < i
        let ahead = sj
            .gt_tensor(&si)
            .logical_or(&sj.eq_tensor(&si).logical_and(&earlier));
        let tau = (ahead.to_kind(kind) * valid.unsqueeze(1)).sum_dim_intlist(-1, false, kind) + 1.0;
        let discount = (tau + 1.0).log().reciprocal(); // 1 / ln(1 + tau)
        let dg = (gain.unsqueeze(2) - gain.unsqueeze(1)).abs();
        let dd = (discount.unsqueeze(2) - discount.unsqueeze(1)).abs();
        dg * dd
    })
}

/// PRO's stages on the reward-sorted list: stage k is
/// `logsumexp_{i >= k}(t_k^i a_(i)) - t_k^k a_(k)` with `t_k^i = r_(k) -
/// r_(i)` and `t_k^k = max_{i > k} t_k^i`; stages without a strictly worse
/// later response (only ties left, or none) are constants and left out.
fn pro(a: &Tensor, r: &Tensor, mask: &Tensor) -> Tensor {
    let kind = a.kind();
    let key = r.masked_fill(&mask.logical_not(), f64::NEG_INFINITY);
    let (_, order) = key.sort_stable(true, -1, true);
    let a = a.gather(-1, &order, false); // [B, K], best first
    let r = r.gather(-1, &order, false);
    let valid = mask.gather(-1, &order, false);
    let k = a.size()[1];
    let position = Tensor::arange(k, (Kind::Int64, a.device()));
    // later[b, k, i]: i comes after stage k's positive and is valid.
    let later = position
        .unsqueeze(0)
        .gt_tensor(&position.unsqueeze(1))
        .unsqueeze(0)
        .logical_and(&valid.unsqueeze(1));
    let t = (r.unsqueeze(2) - r.unsqueeze(1)).masked_fill(&later.logical_not(), 0.0); // [B, k, i]
    let t_top = t.amax(-1, false); // t_k^k, [B, K]
    let stage = valid.logical_and(&t_top.gt(0.0));
    let scores = (&t * a.unsqueeze(1)).masked_fill(&later.logical_not(), FILL);
    let positive = (&t_top * &a).unsqueeze(-1);
    let lse =
        Tensor::cat(&[positive.shallow_clone(), scores], -1).logsumexp([-1i64].as_slice(), false);
    (lse - positive.squeeze_dim(-1))
        .masked_fill(&stage.logical_not(), 0.0)
        .sum_dim_intlist(-1, false, kind)
}
