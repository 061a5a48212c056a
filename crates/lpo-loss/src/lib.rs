//! The alignment losses of docs/losses.md on libtorch tensors.
//!
//! Inputs are `[B, K]` tensors: policy and reference sequence
//! log-probabilities, explicit rewards, and a validity mask (lists shorter
//! than K are padded and masked). Everything is batched: no per-prompt loop.
//! Half-precision inputs are upcast to f32; f64 stays f64 (the tests use it).
//! Masked entries are filled with a large finite negative number rather than
//! -inf, so no gradient ever sees inf - inf.
//!
//! This implements revision 2 of the contract: the LPO anchor only pushes up
//! (`A = - sum_i p_i log sigma(s_i)`), and every loss may add the supervised
//! term `sft_weight * NLL_best`.

use lpo_recipe::{CoefficientMode, LossConfig, LossKind, Pairing, Part};
use tch::{Kind, Tensor};

mod listwise;
mod trl;

/// Fill value for masked logits: exp(FILL - x) is 0 in f32 and f64, and finite.
const FILL: f64 = -1.0e9;

/// A loss's parameters at one optimizer step (schedules evaluated).
#[derive(Debug, Clone, PartialEq)]
pub struct LossParams {
    /// The objective's parts: one kind of weight 1, or the weighted kinds of
    /// a `loss.kind` list (each reads the parameters below).
    pub parts: Vec<Part>,
    /// Implicit-reward scale.
    pub beta: f64,
    /// Reward temperature of p = softmax(r / alpha).
    pub alpha: f64,
    /// LPO anchor weight (anchor `A = - sum_i p_i log sigma(s_i)`).
    pub gamma: f64,
    /// LPO coefficient.
    pub coefficient: CoefficientMode,
    /// LPO prompt weighting by reward spread.
    pub margin_weight: bool,
    /// Reward scale for `margin_weight`.
    pub reward_scale: f64,
    /// DPO pair construction.
    pub pairing: Pairing,
    /// Weight of the supervised term (length-normalised NLL of the best response).
    pub sft_weight: f64,
    /// Label flip probability (robust).
    pub label_smoothing: f64,
    /// EXO's epsilon (exo_pair).
    pub exo_epsilon: f64,
    /// DiscoPOP's temperature.
    pub discopop_tau: f64,
    /// SimPO's target margin.
    pub simpo_gamma: f64,
}

impl LossParams {
    /// The first part's kind: its implicit reward is the one logged.
    pub fn kind(&self) -> LossKind {
        self.parts.first().map_or(LossKind::Lpo, |p| p.kind)
    }

    /// Evaluates the configured schedules at optimizer step `step` of `total`.
    pub fn at_step(config: &LossConfig, step: u64, total: u64) -> Self {
        LossParams {
            parts: config.kind.parts(),
            beta: config.beta.at(step, total),
            alpha: config.alpha.at(step, total),
            gamma: config.gamma.at(step, total),
            coefficient: config.coefficient,
            margin_weight: config.margin_weight,
            reward_scale: config.reward_scale,
            pairing: config.pairing,
            sft_weight: config.sft_weight.at(step, total),
            label_smoothing: config.label_smoothing,
            exo_epsilon: config.exo_epsilon,
            discopop_tau: config.discopop_tau,
            simpo_gamma: config.simpo_gamma,
        }
    }
}

/// One batch of lists.
pub struct LossInput<'a> {
    /// log pi_theta(y_i | x), `[B, K]`.
    pub policy_logps: &'a Tensor,
    /// log pi_ref(y_i | x), `[B, K]`.
    pub reference_logps: &'a Tensor,
    /// Explicit rewards, `[B, K]`.
    pub rewards: &'a Tensor,
    /// Valid responses, `[B, K]` bool.
    pub mask: &'a Tensor,
    /// Tokens each policy log-probability sums over, `[B, K]`, for the
    /// supervised term's length normalisation (`None`: the log-probabilities
    /// are already per token, as with `normalize = "mean"`).
    pub token_counts: Option<&'a Tensor>,
}

/// The loss and what the trainer logs about it.
pub struct LossOutput {
    /// Mean over contributing prompts (0 when none contributes), scalar.
    pub loss: Tensor,
    /// Each prompt's loss including its supervised term, `[B]` (0 for
    /// prompts that contribute nothing).
    pub per_prompt: Tensor,
    /// Whether each prompt contributes a term (the loss's own term, or a
    /// supervised term when `sft_weight > 0`), `[B]` bool.
    pub contributes: Tensor,
    /// The diagnostics' raw values, detached, on the loss's device
    /// ([`LossStats::from_values`] reads them): kept there so a training step
    /// reads them with its loss, after the update, not before `backward()`.
    pub stats_values: Tensor,
    /// Each part's loss before its weight, `[P]` (P = the objective's
    /// parts), detached: the sum of the part's per-prompt terms over the
    /// batch's contributing prompts, so `loss = sum_p weight_p parts[p]` plus
    /// the supervised term's share.
    pub parts: Tensor,
}

impl LossOutput {
    /// The diagnostics (a copy to the host: one synchronisation on a GPU).
    pub fn stats(&self) -> LossStats {
        let values = Vec::<f64>::try_from(
            self.stats_values
                .to_kind(Kind::Double)
                .to_device(tch::Device::Cpu),
        )
        .expect("a 1-d tensor of numbers");
        LossStats::from_values(&values)
    }
}

/// Detached diagnostics of a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossStats {
    /// Mean implicit reward s of the highest-reward response.
    pub chosen_reward: f64,
    /// Mean implicit reward s of the lowest-reward response.
    pub rejected_reward: f64,
    /// Mean policy log-likelihood of the highest-reward response.
    pub chosen_logp: f64,
    /// Mean policy log-likelihood of the lowest-reward response.
    pub rejected_logp: f64,
    /// Share of strictly ordered pairs (r_i > r_j) with s_i > s_j.
    pub ranking_accuracy: f64,
    /// Mean length-normalised NLL of the best response over prompts whose
    /// rewards do not all tie (before `sft_weight`).
    pub sft_loss: f64,
}

/// Computes the configured loss on a batch: each part's per-prompt terms,
/// weighted and summed, plus the supervised term, averaged over the prompts
/// where any of them contributes.
pub fn compute(params: &LossParams, input: &LossInput<'_>) -> LossOutput {
    let kind = working_kind(input.policy_logps.kind());
    let lp = input.policy_logps.to_kind(kind);
    let lr = input.reference_logps.to_kind(kind);
    let r = input.rewards.to_kind(kind);
    let mask = input.mask.to_kind(Kind::Bool);
    // Token counts in the loss's precision and place, once for every kind.
    let counts = input
        .token_counts
        .map(|n| n.to_kind(kind).to_device(lp.device()));
    let a = per_token(&lp, counts.as_ref()); // [B, K]
                                             // better[b, i, j] = both valid and r_i > r_j.
    let pair_mask = mask.unsqueeze(2).logical_and(&mask.unsqueeze(1));
    let better = r
        .unsqueeze(2)
        .gt_tensor(&r.unsqueeze(1))
        .logical_and(&pair_mask); // [B, K, K]
    let batch = Batch {
        lp: &lp,
        lr: &lr,
        r: &r,
        mask: &mask,
        counts: counts.as_ref(),
        a: &a,
        better: &better,
    };
    let mut terms = Vec::with_capacity(params.parts.len());
    let prompts = [r.size()[0]];
    let mut per_prompt = Tensor::zeros(prompts, (kind, r.device())); // [B]
    let mut contributes = Tensor::zeros(prompts, (Kind::Bool, r.device())); // [B]
    for part in &params.parts {
        let (term, c) = part_loss(part.kind, params, &batch);
        let term = term.masked_fill(&c.logical_not(), 0.0);
        per_prompt += &term * part.weight;
        contributes = contributes.logical_or(&c);
        terms.push(term);
    }
    // Supervised term: lambda * NLL_best on prompts whose rewards do not all tie.
    let (nll_best, ordered) = best_nll(&lp, &r, &mask, &better, input.token_counts);
    if params.sft_weight > 0.0 {
        per_prompt += nll_best.masked_fill(&ordered.logical_not(), 0.0) * params.sft_weight;
        contributes = contributes.logical_or(&ordered);
    }
    let count = contributes.to_kind(kind).sum(kind).clamp_min(1.0);
    let loss = per_prompt.sum(kind) / &count;
    let parts = tch::no_grad(|| {
        let sums: Vec<Tensor> = terms.iter().map(|t| t.detach().sum(kind)).collect();
        Tensor::stack(&sums, 0) / &count
    });
    // The diagnostics use the first part's implicit reward.
    let s = implicit_reward(params.kind(), params.beta, &batch);
    let stats_values = stats(&lp, &s, &r, &mask, &better, &nll_best, &ordered);
    LossOutput {
        loss,
        per_prompt,
        contributes,
        stats_values,
        parts,
    }
}

/// A batch's tensors as every kind reads them.
struct Batch<'t> {
    /// Policy log-probabilities, `[B, K]`, in the loss's precision.
    lp: &'t Tensor,
    /// Reference log-probabilities, `[B, K]`.
    lr: &'t Tensor,
    /// Explicit rewards, `[B, K]`.
    r: &'t Tensor,
    /// Valid responses, `[B, K]` bool.
    mask: &'t Tensor,
    /// Token counts (`None`: log-probabilities already per token).
    counts: Option<&'t Tensor>,
    /// Per-token log-probabilities, `[B, K]`.
    a: &'t Tensor,
    /// Both valid and `r_i > r_j`, `[B, K, K]` bool.
    better: &'t Tensor,
}

/// A kind's implicit reward, `[B, K]`: `beta (lp - lr)`, or, for a
/// reference-free kind, its scale times the per-token log-probability (`lr`
/// is not read).
fn implicit_reward(kind: LossKind, beta: f64, b: &Batch<'_>) -> Tensor {
    if kind.spec().reference {
        (b.lp - b.lr) * beta
    } else {
        b.a * kind.implicit_reward_scale(beta)
    }
}

/// One kind's per-prompt loss, `[B]`, and whether each prompt contributes,
/// `[B]` bool.
fn part_loss(loss_kind: LossKind, params: &LossParams, b: &Batch<'_>) -> (Tensor, Tensor) {
    let kind = b.lp.kind();
    let (r, mask, better) = (b.r, b.mask, b.better);
    let s = implicit_reward(loss_kind, params.beta, b); // [B, K]
    let n_valid = mask.to_kind(kind).sum_dim_intlist(-1, false, kind); // [B]
    let pairs = || pair_weights(r, mask, better, params.pairing);
    match loss_kind {
        LossKind::Dpo => pairwise(&s, &pairs()),
        // Learning-to-rank losses (listwise.rs).
        LossKind::LipoLambda | LossKind::Pro | LossKind::Rrhf => {
            listwise::loss(loss_kind, &s, b.a, b.lp, r, mask, better)
        }
        // TRL's kinds that couple the pairs of a batch (trl.rs).
        LossKind::Aot | LossKind::AotUnpaired | LossKind::Sft => {
            trl::batch_terms(loss_kind, params, b.lp, b.lr, b.counts, &pairs())
        }
        // TRL's pairwise kinds (trl.rs).
        LossKind::Hinge
        | LossKind::Ipo
        | LossKind::ExoPair
        | LossKind::NcaPair
        | LossKind::Robust
        | LossKind::BcoPair
        | LossKind::SppoHard
        | LossKind::ApoZero
        | LossKind::ApoDown
        | LossKind::Discopop
        | LossKind::SigmoidNorm
        | LossKind::Simpo
        | LossKind::Orpo => {
            let weights = pairs();
            let terms = trl::pair_terms(loss_kind, params, b.lp, b.lr, b.counts, &weights);
            mean_over_pairs(&terms, &weights)
        }
        LossKind::Lpo => lpo(params, &s, r, mask, better, &n_valid),
        LossKind::Listmle => listmle(&s, r, mask),
        LossKind::Infonca => {
            let p = target_distribution(r, mask, params.alpha);
            let log_q = s
                .masked_fill(&mask.logical_not(), FILL)
                .log_softmax(-1, kind);
            let loss = -(p * log_q)
                .masked_fill(&mask.logical_not(), 0.0)
                .sum_dim_intlist(-1, false, kind);
            (loss, n_valid.ge(2.0))
        }
        LossKind::Nca => {
            let p = target_distribution(r, mask, params.alpha);
            let attract = (&p * s.log_sigmoid())
                .masked_fill(&mask.logical_not(), 0.0)
                .sum_dim_intlist(-1, false, kind);
            let repel = (-&s)
                .log_sigmoid()
                .masked_fill(&mask.logical_not(), 0.0)
                .sum_dim_intlist(-1, false, kind);
            (-attract - repel / n_valid.clamp_min(1.0), n_valid.ge(2.0))
        }
    }
}

/// Which prompts of a batch contribute a term (`compute`'s `contributes`,
/// `[B]` bool). It depends on the rewards and the mask alone, never on the
/// log-probabilities, so a trainer that splits a batch into micro-batches
/// can weight each by its share of the batch's contributing prompts before
/// any forward pass: then the micro-batches' weighted losses sum to the
/// whole batch's loss.
pub fn contributing(params: &LossParams, rewards: &Tensor, mask: &Tensor) -> Tensor {
    let zeros = rewards.zeros_like();
    let ones = rewards.ones_like();
    compute(
        params,
        &LossInput {
            policy_logps: &zeros,
            reference_logps: &zeros,
            rewards,
            mask,
            token_counts: Some(&ones),
        },
    )
    .contributes
}

/// `lp` per token: divided by its token count (at least 1; `counts` in
/// `lp`'s kind and device), or as it is when the log-probabilities are
/// already per token (`counts` is `None`).
fn per_token(lp: &Tensor, counts: Option<&Tensor>) -> Tensor {
    match counts {
        Some(n) => lp / n.clamp_min(1.0),
        None => lp.shallow_clone(),
    }
}

/// f32 for half precision (accumulate in f32), f64 stays f64.
fn working_kind(kind: Kind) -> Kind {
    match kind {
        Kind::Double => Kind::Double,
        _ => Kind::Float,
    }
}

/// p = softmax(r / alpha) over the valid responses; 0 on padding.
pub fn target_distribution(r: &Tensor, mask: &Tensor, alpha: f64) -> Tensor {
    (r / alpha)
        .masked_fill(&mask.logical_not(), FILL)
        .softmax(-1, r.kind())
        .masked_fill(&mask.logical_not(), 0.0)
}

/// softplus(-(s_i - s_j)) averaged over the pairs `weights` selects.
fn pairwise(s: &Tensor, weights: &Tensor) -> (Tensor, Tensor) {
    let gap = s.unsqueeze(2) - s.unsqueeze(1); // s_i - s_j, [B, K, K]
    mean_over_pairs(&(-gap).softplus(), weights)
}

/// Each prompt's mean of `terms` over the pairs `weights` selects, `[B]`, and
/// whether it has any, `[B]` bool.
fn mean_over_pairs(terms: &Tensor, weights: &Tensor) -> (Tensor, Tensor) {
    let kind = terms.kind();
    let terms = terms.masked_fill(&weights.logical_not(), 0.0);
    let pairs = weights
        .to_kind(kind)
        .sum_dim_intlist([1i64, 2].as_slice(), false, kind);
    let loss = terms.sum_dim_intlist([1i64, 2].as_slice(), false, kind) / pairs.clamp_min(1.0);
    (loss, pairs.gt(0.0))
}

/// The (chosen i, rejected j) pairs `pairing` makes of each list, `[B, K, K]`
/// bool: of the strictly ordered valid pairs `better`, the best against the
/// worst, the best against each other, or all.
fn pair_weights(r: &Tensor, mask: &Tensor, better: &Tensor, pairing: Pairing) -> Tensor {
    let k = r.size()[1];
    let (best, worst) = best_and_worst(r, mask);
    let positions = Tensor::arange(k, (Kind::Int64, r.device())).unsqueeze(0);
    let is_best = best.unsqueeze(1).eq_tensor(&positions); // [B, K]
    let is_worst = worst.unsqueeze(1).eq_tensor(&positions);
    match pairing {
        Pairing::All => better.shallow_clone(),
        Pairing::BestRest => better.logical_and(&is_best.unsqueeze(2)),
        Pairing::BestWorst => better
            .logical_and(&is_best.unsqueeze(2))
            .logical_and(&is_worst.unsqueeze(1)),
    }
}

/// Index of each list's highest and lowest reward among valid responses
/// (the first on ties), `[B]` each.
fn best_and_worst(r: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
    let best = r
        .masked_fill(&mask.logical_not(), f64::NEG_INFINITY)
        .argmax(-1, false);
    let worst = r
        .masked_fill(&mask.logical_not(), f64::INFINITY)
        .argmin(-1, false);
    (best, worst)
}

/// The supervised term's `NLL_best = -lp_best / token_count_best`, `[B]`,
/// and whether the prompt's valid rewards are not all tied, `[B]` bool (only
/// those prompts get a supervised term). `best` is the first highest reward.
/// Token counts are clamped to >= 1 so an empty response cannot divide by 0.
fn best_nll(
    lp: &Tensor,
    r: &Tensor,
    mask: &Tensor,
    better: &Tensor,
    token_counts: Option<&Tensor>,
) -> (Tensor, Tensor) {
    let kind = lp.kind();
    let (best, _) = best_and_worst(r, mask);
    let best = best.unsqueeze(1); // [B, 1]
    let lp_best = lp.gather(-1, &best, false).squeeze_dim(-1);
    let nll = match token_counts {
        Some(counts) => {
            let n = counts
                .to_kind(kind)
                .to_device(lp.device())
                .gather(-1, &best, false)
                .squeeze_dim(-1)
                .clamp_min(1.0);
            -lp_best / n
        }
        None => -lp_best,
    };
    // Not all tied <=> some valid pair is strictly ordered.
    let ordered = better.any_dim(2, false).any_dim(1, false);
    (nll, ordered)
}

fn lpo(
    params: &LossParams,
    s: &Tensor,
    r: &Tensor,
    mask: &Tensor,
    better: &Tensor,
    n_valid: &Tensor,
) -> (Tensor, Tensor) {
    let kind = s.kind();
    // log(1 + sum_{j: r_j < r_i} exp(s_j - s_i)) as a logsumexp over {0} and the gaps.
    let gaps = (s.unsqueeze(1) - s.unsqueeze(2)).masked_fill(&better.logical_not(), FILL); // [b,i,j] = s_j - s_i
    let zeros = Tensor::zeros_like(&gaps.narrow(2, 0, 1));
    let term = Tensor::cat(&[zeros, gaps], 2).logsumexp([2i64].as_slice(), false); // [B, K]
    let in_w = better.any_dim(2, false); // i has a worse response
    let in_w_f = in_w.to_kind(kind);
    let c = match params.coefficient {
        CoefficientMode::Adaptive => {
            let p = target_distribution(r, mask, params.alpha) * &in_w_f;
            let total = p.sum_dim_intlist(-1, true, kind);
            p / total.clamp_min(f64::MIN_POSITIVE)
        }
        CoefficientMode::Uniform => &in_w_f / in_w_f.sum_dim_intlist(-1, true, kind).clamp_min(1.0),
    };
    let mut loss = (c * term)
        .masked_fill(&in_w.logical_not(), 0.0)
        .sum_dim_intlist(-1, false, kind);
    if params.margin_weight {
        let high = r
            .masked_fill(&mask.logical_not(), f64::NEG_INFINITY)
            .amax(-1, false);
        let low = r
            .masked_fill(&mask.logical_not(), f64::INFINITY)
            .amin(-1, false);
        let spread = (high - low).masked_fill(&in_w.any_dim(1, false).logical_not(), 0.0);
        loss *= spread / params.reward_scale;
    }
    let mut contributes = in_w.any_dim(1, false);
    if params.gamma > 0.0 {
        // Revision 2: A = - sum_i p_i log sigma(s_i). Only pushes up
        // (dA/ds_i = -p_i sigma(-s_i) <= 0); no 1/K, no negative part.
        let p = target_distribution(r, mask, params.alpha);
        let anchor = -(p * s.log_sigmoid())
            .masked_fill(&mask.logical_not(), 0.0)
            .sum_dim_intlist(-1, false, kind);
        loss += anchor * params.gamma;
        contributes = n_valid.ge(2.0);
    }
    (loss, contributes)
}

fn listmle(s: &Tensor, r: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
    let kind = s.kind();
    // Sort by reward, descending, ties by position (stable); padding last.
    let key = r.masked_fill(&mask.logical_not(), f64::NEG_INFINITY);
    let (_, order) = key.sort_stable(true, -1, true);
    let s_sorted = s.gather(-1, &order, false);
    let valid_sorted = mask.gather(-1, &order, false);
    let filled = s_sorted.masked_fill(&valid_sorted.logical_not(), FILL);
    let suffix = filled
        .flip([-1i64].as_slice())
        .logcumsumexp(-1)
        .flip([-1i64].as_slice()); // logsumexp(s_pi(k..K))
    let terms = (suffix - &s_sorted).masked_fill(&valid_sorted.logical_not(), 0.0);
    let n_valid = mask.to_kind(kind).sum_dim_intlist(-1, false, kind);
    (terms.sum_dim_intlist(-1, false, kind), n_valid.ge(2.0))
}

/// The eight raw values [`LossStats::from_values`] reads, `[8]`, detached.
fn stats(
    lp: &Tensor,
    s: &Tensor,
    r: &Tensor,
    mask: &Tensor,
    better: &Tensor,
    nll_best: &Tensor,
    untied: &Tensor,
) -> Tensor {
    tch::no_grad(|| {
        let kind = s.kind();
        let (best, worst) = best_and_worst(r, mask);
        let (best, worst) = (best.unsqueeze(1), worst.unsqueeze(1));
        let mean_at = |t: &Tensor, idx: &Tensor| t.gather(-1, idx, false).mean(kind);
        let ordered = better.to_kind(kind).sum(kind);
        let correct = (s.unsqueeze(2) - s.unsqueeze(1))
            .gt(0.0)
            .logical_and(better)
            .to_kind(kind)
            .sum(kind);
        let untied = untied.to_kind(kind);
        let sft_sum = (nll_best.detach() * &untied).sum(kind);
        let sft_count = untied.sum(kind);
        // Eight numbers in one tensor: one transfer to the host, when read.
        Tensor::stack(
            &[
                mean_at(s, &best),
                mean_at(s, &worst),
                mean_at(lp, &best),
                mean_at(lp, &worst),
                ordered,
                correct,
                sft_sum,
                sft_count,
            ],
            0,
        )
    })
}

impl LossStats {
    /// The diagnostics from [`LossOutput::stats_values`] read to the host.
    pub fn from_values(v: &[f64]) -> LossStats {
        LossStats {
            chosen_reward: v[0],
            rejected_reward: v[1],
            chosen_logp: v[2],
            rejected_logp: v[3],
            ranking_accuracy: if v[4] > 0.0 { v[5] / v[4] } else { 0.0 },
            sft_loss: if v[7] > 0.0 { v[6] / v[7] } else { 0.0 },
        }
    }
}

#[cfg(test)]
mod tests;
