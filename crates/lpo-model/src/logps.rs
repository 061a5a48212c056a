//! Sequence log-probabilities of K responses per prompt, computing each
//! prompt once: the prompt's keys and values are cached and shared by its K
//! continuations (gradients flow through the shared prefix).
//!
//! [`checkpointed_response_logps`] computes the same numbers keeping only
//! each block's input; its [`Recompute`] then runs the backward pass block by
//! block (activation checkpointing).

use tch::{Device, Kind, Tensor};

use crate::generate::{left_pad, pad_rows};
use crate::model::{positions_of, KvCache, LayerCache, Mistral, RopeAt};

/// Summed log-probabilities and token counts of responses, both `[B, K]`.
pub struct ResponseLogps {
    /// Sum over response tokens of log p(token | prompt, earlier tokens).
    pub sum: Tensor,
    /// Number of response tokens (0 for an empty slot).
    pub tokens: Tensor,
    /// A sparse (mixture-of-experts) model's router load-balancing loss over
    /// every real token of the B*K sequences, each prompt counted K times
    /// as in their full forward passes; `None` for a dense model and under
    /// activation checkpointing.
    pub router_aux: Option<Tensor>,
}

/// Right-pads token rows (see [`pad_rows`]).
pub fn right_pad(rows: &[Vec<i64>], pad: i64, device: Device) -> (Tensor, Tensor) {
    pad_rows(rows, pad, device, false)
}

/// The padded tensors of B prompts and their B*K responses.
struct Inputs {
    b: i64,
    k: i64,
    /// `[B, Tp]` left-padded prompts, their validity and positions.
    prompt_tokens: Tensor,
    prompt_valid: Tensor,
    prompt_positions: Tensor,
    /// `[B*K, Tr]` right-padded responses, their validity and positions.
    tokens: Tensor,
    valid: Tensor,
    positions: Tensor,
}

impl Inputs {
    fn new(
        model: &Mistral,
        prompts: &[Vec<i64>],
        responses: &[Vec<i64>],
        k: usize,
        pad: i64,
    ) -> Inputs {
        let b = prompts.len() as i64;
        let k = k as i64;
        assert_eq!(responses.len() as i64, b * k, "B*K responses");
        let device = model.device();
        // The prompt once per row: [B, Tp], its last column a real token.
        let (prompt_tokens, prompt_valid) = left_pad(prompts, pad, device);
        let tp = prompt_tokens.size()[1];
        let prompt_positions = positions_of(&prompt_valid);
        // The K continuations: [B*K, Tr].
        let (tokens, valid) = right_pad(responses, pad, device);
        let tr = tokens.size()[1];
        // Rows are padded to the batch's longest response, so a padding slot
        // of a row with a long prompt can lie past the last position the
        // rotary table holds; real tokens never do (prompt + response <=
        // max_len), and padding is neither attended to nor scored, so its
        // position is clamped.
        let start = (prompt_positions.select(1, tp - 1) + 1).repeat_interleave_self_int(k, 0, None); // [B*K]
        let last_position = model.config().max_position_embeddings - 1;
        let positions = (start.unsqueeze(1)
            + Tensor::arange(tr, (Kind::Int64, device)).unsqueeze(0))
        .clamp_max(last_position);
        Inputs {
            b,
            k,
            prompt_tokens,
            prompt_valid,
            prompt_positions,
            tokens,
            valid,
            positions,
        }
    }

    /// Log-probabilities from the prompts' and responses' final hidden states
    /// (`[B, Tp, D]`, `[B*K, Tr, D]`).
    fn score(&self, model: &Mistral, prompt_hidden: &Tensor, hidden: &Tensor) -> ResponseLogps {
        let tp = prompt_hidden.size()[1];
        let tr = hidden.size()[1];
        let last = prompt_hidden
            .select(1, tp - 1)
            .repeat_interleave_self_int(self.k, 0, None)
            .unsqueeze(1); // [B*K, 1, D]
                           // Token t is predicted from the state before it: the prompt's last for t = 0.
        let predictors = Tensor::cat(&[last, hidden.narrow(1, 0, tr - 1)], 1); // [B*K, Tr, D]
        let logp = model
            .logits(&predictors)
            .to_kind(Kind::Float)
            .log_softmax(-1, Kind::Float)
            .gather(2, &self.tokens.unsqueeze(2), false)
            .squeeze_dim(2); // [B*K, Tr]
        let valid_f = self.valid.to_kind(Kind::Float);
        ResponseLogps {
            sum: (logp * &valid_f)
                .sum_dim_intlist(1, false, Kind::Float)
                .view([self.b, self.k]),
            tokens: valid_f
                .sum_dim_intlist(1, false, Kind::Float)
                .view([self.b, self.k]),
            router_aux: None,
        }
    }

    /// The router load-balancing loss from each block's two passes
    /// (prompts, then responses): prompt tokens weigh K, response tokens 1,
    /// padding 0.
    fn router_aux(&self, model: &Mistral, router: Vec<Vec<Tensor>>) -> Option<Tensor> {
        let prompt_weight = (self.prompt_valid.to_kind(Kind::Float) * self.k as f64).flatten(0, -1);
        let weight = self.valid.to_kind(Kind::Float).flatten(0, -1);
        let routed: Vec<(Tensor, Tensor)> = router
            .into_iter()
            .flat_map(|passes| {
                passes
                    .into_iter()
                    .zip([&prompt_weight, &weight])
                    .map(|(logits, w)| (logits, w.shallow_clone()))
            })
            .collect();
        model.router_loss(&routed)
    }
}

/// Log-probabilities of `responses` (B*K rows, prompt-major: rows b*K..(b+1)*K
/// continue `prompts[b]`). Prompts must be non-empty; responses may be empty.
pub fn response_logps(
    model: &Mistral,
    prompts: &[Vec<i64>],
    responses: &[Vec<i64>],
    k: usize,
    pad: i64,
) -> ResponseLogps {
    let x = Inputs::new(model, prompts, responses, k, pad);
    let mut cache = KvCache::new(model);
    if model.config().is_moe() {
        cache.record_router_logits();
    }
    let prompt_hidden = model.hidden(
        &x.prompt_tokens,
        &x.prompt_positions,
        &x.prompt_valid,
        &mut cache,
    );
    cache.repeat_rows(x.k);
    let hidden = model.hidden(&x.tokens, &x.positions, &x.valid, &mut cache); // [B*K, Tr, D]
    let mut out = x.score(model, &prompt_hidden, &hidden);
    out.router_aux = x.router_aux(model, cache.take_router_logits());
    out
}

/// The backward pass of [`checkpointed_response_logps`], block by block:
/// call [`Recompute::backward`] after the loss's `backward()`.
pub struct Recompute<'a> {
    model: &'a Mistral,
    inputs: Inputs,
    /// What every block's pass attends with.
    attend: Attend,
    /// Each block's input (prompt states, response states), detached.
    block_inputs: Vec<(Tensor, Tensor)>,
    /// The last block's output as leaves the loss's graph starts from.
    top: (Tensor, Tensor),
}

/// As [`response_logps`], with activation checkpointing: the blocks run
/// without recording a graph, keeping only each block's input (`D` values
/// a token); the final norm and the head record theirs from leaf copies of
/// the last block's output. Gradients equal those of [`response_logps`] once
/// [`Recompute::backward`] has run.
pub fn checkpointed_response_logps<'a>(
    model: &'a Mistral,
    prompts: &[Vec<i64>],
    responses: &[Vec<i64>],
    k: usize,
    pad: i64,
) -> (ResponseLogps, Recompute<'a>) {
    let inputs = Inputs::new(model, prompts, responses, k, pad);
    let tp = inputs.prompt_tokens.size()[1];
    let tr = inputs.tokens.size()[1];
    let prompt_valid = inputs.prompt_valid.to_kind(Kind::Bool);
    let key_valid = Tensor::cat(
        &[
            prompt_valid.repeat_interleave_self_int(inputs.k, 0, None),
            inputs.valid.to_kind(Kind::Bool),
        ],
        1,
    );
    let attend = Attend {
        masks: (
            model.attention_mask(0, tp, &prompt_valid),
            model.attention_mask(tp, tr, &key_valid),
        ),
        ropes: (
            model.rotary.at(&inputs.prompt_positions),
            model.rotary.at(&inputs.positions),
        ),
        k: inputs.k,
    };
    let mut block_inputs = Vec::with_capacity(model.blocks.len());
    let (mut xp, mut xr) = tch::no_grad(|| embed(model, &inputs));
    for i in 0..model.blocks.len() {
        let (yp, yr) = tch::no_grad(|| block_step(model, i, &attend, &xp, &xr));
        block_inputs.push((xp, xr));
        (xp, xr) = (yp, yr);
    }
    let top = (xp.set_requires_grad(true), xr.set_requires_grad(true));
    let out = inputs.score(
        model,
        &model.norm.forward(&top.0),
        &model.norm.forward(&top.1),
    );
    let recompute = Recompute {
        model,
        inputs,
        attend,
        block_inputs,
        top,
    };
    (out, recompute)
}

/// Token embeddings of the prompts and the responses.
fn embed(model: &Mistral, x: &Inputs) -> (Tensor, Tensor) {
    (
        model.embed_tokens.forward(&x.prompt_tokens),
        model.embed_tokens.forward(&x.tokens),
    )
}

/// What a block's passes over the prompts and the responses attend with,
/// the same for every block.
struct Attend {
    /// `[B, 1, Tp, Tp]` and `[B*K, 1, Tr, Tp + Tr]` attention masks.
    masks: (Tensor, Tensor),
    /// Rotary cos and sin at the prompts' and the responses' positions.
    ropes: (RopeAt, RopeAt),
    /// Responses per prompt.
    k: i64,
}

/// Block `i` on the prompts' states, then on the responses' states attending
/// to the prompts' keys and values (shared by each prompt's K responses).
fn block_step(
    model: &Mistral,
    i: usize,
    a: &Attend,
    prompt: &Tensor,
    responses: &Tensor,
) -> (Tensor, Tensor) {
    let block = &model.blocks[i];
    let mut cache = LayerCache::default();
    let p = block.forward(prompt, &a.ropes.0, &a.masks.0, &mut cache);
    cache.repeat_rows(a.k);
    let r = block.forward(responses, &a.ropes.1, &a.masks.1, &mut cache);
    (p, r)
}

impl Recompute<'_> {
    /// Backpropagates from the last block's output (whose gradient the
    /// loss's `backward()` left on the leaves) down to the embeddings,
    /// recomputing one block at a time; parameter gradients accumulate as
    /// in an ordinary backward pass.
    pub fn backward(self) {
        let mut grads = (grad_or_zeros(&self.top.0), grad_or_zeros(&self.top.1));
        for (i, (xp, xr)) in self.block_inputs.iter().enumerate().rev() {
            let xp = xp.detach().set_requires_grad(true);
            let xr = xr.detach().set_requires_grad(true);
            let (yp, yr) = block_step(self.model, i, &self.attend, &xp, &xr);
            pull_back(&yp, &yr, &grads);
            grads = (grad_or_zeros(&xp), grad_or_zeros(&xr));
        }
        let (ep, er) = embed(self.model, &self.inputs);
        pull_back(&ep, &er, &grads);
    }
}

/// Backpropagates the gradients `grads` of two outputs: the gradient of
/// `sum(yp * gp) + sum(yr * gr)` is exactly that.
fn pull_back(yp: &Tensor, yr: &Tensor, grads: &(Tensor, Tensor)) {
    let surrogate = (yp.to_kind(Kind::Float) * &grads.0).sum(Kind::Float)
        + (yr.to_kind(Kind::Float) * &grads.1).sum(Kind::Float);
    if surrogate.requires_grad() {
        surrogate.backward();
    }
}

/// The gradient a leaf received, in f32 (zeros when none reached it).
fn grad_or_zeros(leaf: &Tensor) -> Tensor {
    let g = leaf.grad();
    if g.defined() {
        g.to_kind(Kind::Float)
    } else {
        leaf.zeros_like().to_kind(Kind::Float)
    }
}
