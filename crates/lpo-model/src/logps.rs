//! Sequence log-probabilities of K responses per prompt, computing each
//! prompt once: the prompt's keys and values are cached and shared by its K
//! continuations (gradients flow through the shared prefix).
//!
//! [`checkpointed_response_logps`] computes the same numbers keeping only
//! each block's input; its [`Recompute`] then runs the backward pass block by
//! block (activation checkpointing).
//!
//! Either runs in a [`Layout`]: padded rows, or packed, where only real
//! tokens pass through norms, linear layers and the head (attention scatters
//! them back into padded rows).

use tch::{Device, Kind, Tensor};

use crate::generate::{left_pad, pad_rows};
use crate::model::{
    positions_of, KvCache, LayerCache, Mistral, PackedPass, PackedPasses, Packing, RopeAt,
};

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

/// How a pass lays out the token states of a batch's prompts and responses.
/// Both compute the same log-probabilities and gradients up to float
/// rounding (not byte-equal: products over other row counts sum in another
/// order); docs/performance.md, "Packed lists".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Rows padded to the batch's longest prompt and response.
    #[default]
    Padded,
    /// Only real tokens: every norm, linear layer and the head skip padding;
    /// attention alone works on the padded rows ([`Packing`]).
    Packed,
}

/// The packed layout's indices ([`Layout::Packed`]): the B prompts' real
/// tokens, then the B*K responses', as one sequence `[1, Np + N]`.
struct Packed {
    prompts: Packing,
    responses: Packing,
    /// `[1, Np + N]` the tokens.
    tokens: Tensor,
    /// `[N]` the response tokens, the targets scored.
    targets: Tensor,
    /// `[B]` each prompt's last token in the sequence.
    prompt_last: Tensor,
    /// `[N]` where each response token's predicting state lies in
    /// `cat(responses' states [N], prompts' last states repeated K times
    /// [B*K])`: the token before it, or (for a response's first) its row's
    /// copy of its prompt's last state. The indices are distinct, so the
    /// gather's backward adds no two terms into one slot.
    predictors: Tensor,
    /// `[Np + N]` the real tokens' slots among the prompts' `B*Tp` padded
    /// slots followed by the responses' `B*K*Tr` ([`PackedPasses::real`]).
    real: Tensor,
}

impl Packed {
    fn new(prompts: &[Vec<i64>], responses: &[Vec<i64>], x: &Inputs) -> Packed {
        let device = x.tokens.device();
        let (tp, tr) = (x.prompt_tokens.size()[1], x.tokens.size()[1]);
        let prompt_lengths: Vec<usize> = prompts.iter().map(Vec::len).collect();
        let lengths: Vec<usize> = responses.iter().map(Vec::len).collect();
        let np: usize = prompt_lengths.iter().sum();
        let prompt_last: Vec<i64> = prompt_lengths
            .iter()
            .scan(0i64, |end, &len| {
                *end += len as i64;
                Some(*end - 1)
            })
            .collect();
        if let Some(row) = prompt_lengths.iter().position(|&len| len == 0) {
            panic!("packed lists need non-empty prompts; prompt {row} is empty");
        }
        let n: usize = lengths.iter().sum();
        let mut predictors = Vec::with_capacity(n);
        for (row, &len) in lengths.iter().enumerate() {
            for t in 0..len {
                let at = predictors.len() as i64; // this token among the responses'
                predictors.push(if t == 0 { (n + row) as i64 } else { at - 1 });
            }
        }
        let prompts = Packing::new(&prompt_lengths, tp, true, 0, device);
        let responses = Packing::new(&lengths, tr, false, np as i64, device);
        let targets = responses.pack(&x.tokens);
        let to_device = |v: &[i64]| Tensor::from_slice(v).to_device(device);
        Packed {
            tokens: Tensor::cat(
                &[prompts.pack(&x.prompt_tokens), targets.shallow_clone()],
                0,
            )
            .unsqueeze(0),
            real: Tensor::cat(
                &[
                    prompts.slots().shallow_clone(),
                    responses.slots() + x.prompt_tokens.numel() as i64,
                ],
                0,
            ),
            targets,
            prompt_last: to_device(&prompt_last),
            predictors: to_device(&predictors),
            prompts,
            responses,
        }
    }
}

/// The padded tensors of B prompts and their B*K responses, and what every
/// block's passes attend with.
struct Inputs {
    b: i64,
    k: i64,
    /// `[B, Tp]` left-padded prompts and their validity.
    prompt_tokens: Tensor,
    prompt_valid: Tensor,
    /// `[B*K, Tr]` right-padded responses and their validity.
    tokens: Tensor,
    valid: Tensor,
    /// `[B, 1, Tp, Tp]` and `[B*K, 1, Tr, Tp + Tr]` attention masks.
    masks: (Tensor, Tensor),
    /// Rotary cos and sin at the prompts' and the responses' positions.
    ropes: (RopeAt, RopeAt),
    /// `Some` in the packed layout.
    packed: Option<Packed>,
}

impl Inputs {
    fn new(
        model: &Mistral,
        prompts: &[Vec<i64>],
        responses: &[Vec<i64>],
        k: usize,
        pad: i64,
        layout: Layout,
    ) -> Inputs {
        let b = prompts.len() as i64;
        assert_eq!(responses.len(), prompts.len() * k, "B*K responses");
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
        let start =
            (prompt_positions.select(1, tp - 1) + 1).repeat_interleave_self_int(k as i64, 0, None); // [B*K]
        let last_position = model.config().max_position_embeddings - 1;
        let positions = (start.unsqueeze(1)
            + Tensor::arange(tr, (Kind::Int64, device)).unsqueeze(0))
        .clamp_max(last_position);
        let prompt_valid = prompt_valid.to_kind(Kind::Bool);
        let key_valid = Tensor::cat(
            &[
                prompt_valid.repeat_interleave_self_int(k as i64, 0, None),
                valid.to_kind(Kind::Bool),
            ],
            1,
        );
        let mut x = Inputs {
            b,
            k: k as i64,
            masks: (
                model.attention_mask(0, tp, &prompt_valid),
                model.attention_mask(tp, tr, &key_valid),
            ),
            ropes: (
                model.rotary.at(&prompt_positions),
                model.rotary.at(&positions),
            ),
            prompt_tokens,
            prompt_valid,
            tokens,
            valid,
            packed: None,
        };
        // A batch without padding has nothing to skip: packing it would
        // only add copies (the padded passes compute the same numbers).
        let pads = |rows: &[Vec<i64>], width: i64| rows.iter().any(|r| r.len() as i64 != width);
        if layout == Layout::Packed && (pads(prompts, tp) || pads(responses, tr)) {
            x.packed = Some(Packed::new(prompts, responses, &x));
        }
        x
    }

    /// Log-probabilities from the final hidden states ([`States`]).
    fn score(&self, model: &Mistral, hidden: &[Tensor]) -> ResponseLogps {
        if let Some(packed) = &self.packed {
            return self.score_packed(model, packed, &hidden[0]);
        }
        let (prompt_hidden, hidden) = (&hidden[0], &hidden[1]);
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
            tokens: self.token_counts(),
            router_aux: None,
        }
    }

    /// [`Inputs::score`] in the packed layout (`hidden: [1, Np + N, D]`):
    /// the head sees the response tokens' predictors only.
    fn score_packed(&self, model: &Mistral, packed: &Packed, hidden: &Tensor) -> ResponseLogps {
        let hidden = hidden.squeeze_dim(0); // [Np + N, D]
        let np = packed.prompts.len();
        let firsts = hidden
            .index_select(0, &packed.prompt_last)
            .repeat_interleave_self_int(self.k, 0, None); // [B*K, D]
        let responses = hidden.narrow(0, np, packed.responses.len()); // [N, D]
        let predictors = Tensor::cat(&[responses, firsts], 0).index_select(0, &packed.predictors); // [N, D]
        let logp = model
            .logits(&predictors)
            .to_kind(Kind::Float)
            .log_softmax(-1, Kind::Float)
            .gather(1, &packed.targets.unsqueeze(1), false)
            .squeeze_dim(1); // [N]

        // Each row's sum over its padded slots, in the padded layout's order
        // (distinct indices: no order-dependent adds).
        let tr = self.tokens.size()[1];
        let sum = Tensor::zeros([self.b * self.k * tr], (Kind::Float, logp.device()))
            .index_copy(0, packed.responses.slots(), &logp)
            .view([self.b * self.k, tr])
            .sum_dim_intlist(1, false, Kind::Float)
            .view([self.b, self.k]); // [B, K]
        ResponseLogps {
            sum,
            tokens: self.token_counts(),
            router_aux: None,
        }
    }

    /// Response tokens, `[B, K]`.
    fn token_counts(&self) -> Tensor {
        self.valid
            .to_kind(Kind::Float)
            .sum_dim_intlist(1, false, Kind::Float)
            .view([self.b, self.k])
    }

    /// The router load-balancing loss from each block's passes (padded:
    /// prompts, then responses; packed: one): prompt tokens weigh K,
    /// response tokens 1, padding 0.
    fn router_aux(&self, model: &Mistral, router: Vec<Vec<Tensor>>) -> Option<Tensor> {
        let weights = match &self.packed {
            Some(p) => {
                let device = self.tokens.device();
                let prompts = Tensor::full([p.prompts.len()], self.k as f64, (Kind::Float, device));
                let responses = Tensor::ones([p.responses.len()], (Kind::Float, device));
                vec![Tensor::cat(&[prompts, responses], 0)]
            }
            None => vec![
                (self.prompt_valid.to_kind(Kind::Float) * self.k as f64).flatten(0, -1),
                self.valid.to_kind(Kind::Float).flatten(0, -1),
            ],
        };
        let routed: Vec<(Tensor, Tensor)> = router
            .into_iter()
            .flat_map(|passes| {
                passes
                    .into_iter()
                    .zip(&weights)
                    .map(|(logits, w)| (logits, w.shallow_clone()))
            })
            .collect();
        model.router_loss(&routed)
    }
}

/// A block's input or output states: padded, `[prompts [B, Tp, D],
/// responses [B*K, Tr, D]]`; packed, `[both [1, Np + N, D]]`.
type States = Vec<Tensor>;

/// Log-probabilities of `responses` (B*K rows, prompt-major: rows b*K..(b+1)*K
/// continue `prompts[b]`). Prompts must be non-empty; responses may be empty.
pub fn response_logps(
    model: &Mistral,
    prompts: &[Vec<i64>],
    responses: &[Vec<i64>],
    k: usize,
    pad: i64,
) -> ResponseLogps {
    response_logps_in(model, prompts, responses, k, pad, Layout::Padded)
}

/// [`response_logps`] in a chosen [`Layout`].
pub fn response_logps_in(
    model: &Mistral,
    prompts: &[Vec<i64>],
    responses: &[Vec<i64>],
    k: usize,
    pad: i64,
    layout: Layout,
) -> ResponseLogps {
    let x = Inputs::new(model, prompts, responses, k, pad, layout);
    let record = model.config().is_moe();
    let (states, router) = match x.packed {
        Some(_) => {
            let mut states = embed(model, &x);
            let mut router = Vec::with_capacity(model.blocks.len());
            for i in 0..model.blocks.len() {
                let (next, logits) = block_step(model, i, &x, &states, record);
                router.push(logits);
                states = next;
            }
            (states, router)
        }
        None => padded_passes(model, &x, record),
    };
    let mut out = x.score(model, &final_norm(model, &states));
    out.router_aux = x.router_aux(model, router);
    out
}

/// The padded layout's passes: the prompts through every block, then the
/// responses through every block after their prompts' keys and values (the
/// order LoRA dropout draws its masks in), with each block's router logits
/// (prompts', responses') when `record_router`.
fn padded_passes(model: &Mistral, x: &Inputs, record_router: bool) -> (States, Vec<Vec<Tensor>>) {
    let mut cache = KvCache::new(model);
    if record_router {
        cache.record_router_logits();
    }
    let [prompts, responses]: [Tensor; 2] = embed(model, x).try_into().expect("two passes");
    let prompts = model.run_blocks(prompts, &x.ropes.0, &x.masks.0, &mut cache); // [B, Tp, D]
    cache.repeat_rows(x.k);
    let responses = model.run_blocks(responses, &x.ropes.1, &x.masks.1, &mut cache); // [B*K, Tr, D]
    (vec![prompts, responses], cache.take_router_logits())
}

/// The backward pass of [`checkpointed_response_logps`], block by block:
/// call [`Recompute::backward`] after the loss's `backward()`.
pub struct Recompute<'a> {
    model: &'a Mistral,
    inputs: Inputs,
    /// Each block's input states, detached.
    block_inputs: Vec<States>,
    /// The last block's output as leaves the loss's graph starts from.
    top: States,
}

/// As [`response_logps_in`], with activation checkpointing: the blocks run
/// without recording a graph, keeping only each block's input (`D` values
/// a token); the final norm and the head record theirs from leaf copies of
/// the last block's output. Gradients equal those of [`response_logps_in`]
/// once [`Recompute::backward`] has run.
pub fn checkpointed_response_logps<'a>(
    model: &'a Mistral,
    prompts: &[Vec<i64>],
    responses: &[Vec<i64>],
    k: usize,
    pad: i64,
    layout: Layout,
) -> (ResponseLogps, Recompute<'a>) {
    let inputs = Inputs::new(model, prompts, responses, k, pad, layout);
    let mut block_inputs = Vec::with_capacity(model.blocks.len());
    let mut states = tch::no_grad(|| embed(model, &inputs));
    for i in 0..model.blocks.len() {
        let (next, _) = tch::no_grad(|| block_step(model, i, &inputs, &states, false));
        block_inputs.push(states);
        states = next;
    }
    let top: States = states
        .into_iter()
        .map(|t| t.set_requires_grad(true))
        .collect();
    let out = inputs.score(model, &final_norm(model, &top));
    let recompute = Recompute {
        model,
        inputs,
        block_inputs,
        top,
    };
    (out, recompute)
}

/// Token embeddings of the prompts and the responses ([`States`]).
fn embed(model: &Mistral, x: &Inputs) -> States {
    match &x.packed {
        Some(p) => vec![model.embed_tokens.forward(&p.tokens)],
        None => vec![
            model.embed_tokens.forward(&x.prompt_tokens),
            model.embed_tokens.forward(&x.tokens),
        ],
    }
}

/// The final norm of every state.
fn final_norm(model: &Mistral, states: &[Tensor]) -> States {
    states.iter().map(|s| model.norm.forward(s)).collect()
}

/// Block `i`: padded, on the prompts' states, then on the responses'
/// attending to the prompts' keys and values (shared by each prompt's K
/// responses); packed, once on both. With `record_router`, a sparse block's
/// router logits of each pass.
fn block_step(
    model: &Mistral,
    i: usize,
    x: &Inputs,
    states: &[Tensor],
    record_router: bool,
) -> (States, Vec<Tensor>) {
    let block = &model.blocks[i];
    let mut cache = LayerCache::default();
    if record_router {
        cache.router = Some(Vec::new());
    }
    let next = match &x.packed {
        Some(p) => {
            let pass = |packing, rope, mask| PackedPass {
                packing,
                rope,
                mask,
            };
            let passes = PackedPasses {
                prompts: pass(&p.prompts, &x.ropes.0, &x.masks.0),
                responses: pass(&p.responses, &x.ropes.1, &x.masks.1),
                k: x.k,
                real: &p.real,
            };
            vec![block.forward_packed(&states[0], &passes, &mut cache)]
        }
        None => {
            let p = block.forward(&states[0], &x.ropes.0, &x.masks.0, &mut cache);
            cache.repeat_rows(x.k);
            let r = block.forward(&states[1], &x.ropes.1, &x.masks.1, &mut cache);
            vec![p, r]
        }
    };
    (next, cache.router.unwrap_or_default())
}

impl Recompute<'_> {
    /// Backpropagates from the last block's output (whose gradient the
    /// loss's `backward()` left on the leaves) down to the embeddings,
    /// recomputing one block at a time; parameter gradients accumulate as
    /// in an ordinary backward pass.
    pub fn backward(self) {
        let mut grads: Vec<Tensor> = self.top.iter().map(grad_or_zeros).collect();
        for (i, inputs) in self.block_inputs.iter().enumerate().rev() {
            let leaves: States = inputs
                .iter()
                .map(|x| x.detach().set_requires_grad(true))
                .collect();
            let (outputs, _) = block_step(self.model, i, &self.inputs, &leaves, false);
            pull_back(&outputs, &grads);
            grads = leaves.iter().map(grad_or_zeros).collect();
        }
        pull_back(&embed(self.model, &self.inputs), &grads);
    }
}

/// Backpropagates the gradients `grads` of outputs `ys`: the gradient of
/// `sum_i sum(ys[i] * grads[i])` is exactly that.
fn pull_back(ys: &[Tensor], grads: &[Tensor]) {
    let surrogate = ys
        .iter()
        .zip(grads)
        .map(|(y, g)| (y.to_kind(Kind::Float) * g).sum(Kind::Float))
        .reduce(|a, b| a + b)
        .expect("at least one state");
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
