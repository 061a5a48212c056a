//! Mixtral's sparse mixture-of-experts feed-forward, as transformers
//! computes it: a router (`gate`, `[E, D]`) scores every token against the E
//! experts; the softmax's top k are renormalised to sum to 1; each chosen
//! expert (a SwiGLU MLP: `w2(silu(w1 x) * w3 x)`) runs on the tokens routed
//! to it, and its output is added with the token's weight.
//!
//! Tokens are grouped by expert (one sort, one gather, one scatter-add), not
//! looped over. Variable names are transformers 4.x's
//! (`block_sparse_moe.gate`, `block_sparse_moe.experts.J.w1`), which
//! transformers 5.x still writes and PEFT names adapters by;
//! [`crate::checkpoint`] also reads 5.x's fused expert tensors.
//!
//! Shapes: N tokens (batch times length), D hidden, F expert width, E
//! experts, k experts per token.

use tch::{nn, Kind, Tensor};

use crate::layer::Linear;
use crate::lora::LoraSpec;
use crate::Config;

/// One expert: a SwiGLU MLP with Mixtral's names (`w1` gate, `w3` up, `w2` down).
#[derive(Debug)]
pub struct Expert {
    w1: Linear,
    w2: Linear,
    w3: Linear,
}

impl Expert {
    fn new(vs: nn::Path, c: &Config) -> Expert {
        let (d, f) = (c.hidden_size, c.intermediate_size);
        Expert {
            w1: Linear::new(&vs / "w1", d, f, false),
            w2: Linear::new(&vs / "w2", f, d, false),
            w3: Linear::new(&vs / "w3", d, f, false),
        }
    }

    /// `[n, D] -> [n, D]`.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.w2
            .forward(&(self.w1.forward(x).silu() * self.w3.forward(x)))
    }
}

/// A block's sparse feed-forward: the router and the experts.
#[derive(Debug)]
pub struct SparseMoe {
    /// The router, `[E, D]`.
    gate: Linear,
    experts: Vec<Expert>,
    /// Experts per token.
    top_k: i64,
}

impl SparseMoe {
    /// Creates the variables under `vs` (a block's `block_sparse_moe`).
    pub(crate) fn new(vs: nn::Path, c: &Config) -> SparseMoe {
        let e = c.num_local_experts;
        SparseMoe {
            gate: Linear::new(&vs / "gate", c.hidden_size, e, false),
            experts: (0..e)
                .map(|j| Expert::new(&vs / "experts" / j, c))
                .collect(),
            top_k: c.num_experts_per_tok,
        }
    }

    /// The same weights (shared) with adapters under `vs` (the block's
    /// `block_sparse_moe` path) on the targeted layers: `gate` (the router),
    /// `w1`, `w2`, `w3` (every expert's).
    pub(crate) fn with_adapters(&self, vs: &nn::Path, spec: &LoraSpec) -> SparseMoe {
        SparseMoe {
            gate: self.gate.adapted(vs, "gate", spec),
            experts: self
                .experts
                .iter()
                .enumerate()
                .map(|(j, x)| {
                    let path = vs / "experts" / j;
                    Expert {
                        w1: x.w1.adapted(&path, "w1", spec),
                        w2: x.w2.adapted(&path, "w2", spec),
                        w3: x.w3.adapted(&path, "w3", spec),
                    }
                })
                .collect(),
            top_k: self.top_k,
        }
    }

    /// `x: [B, T, D]` -> (`[B, T, D]`, the router's logits `[B*T, E]`).
    pub(crate) fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let size = x.size();
        let d = size[size.len() - 1];
        let flat = x.reshape([-1, d]); // [N, D]
        let logits = self.gate.forward(&flat); // [N, E]
        let probs = logits.to_kind(Kind::Float).softmax(-1, Kind::Float);
        let (top, chosen) = probs.topk(self.top_k, -1, true, true); // [N, k] each
        let weights = &top / top.sum_dim_intlist(-1, true, Kind::Float); // [N, k], f32

        // Group the N*k (token, expert) pairs by expert, tokens in order
        // within each group.
        let slots = chosen.flatten(0, -1); // [N*k]
        let order = slots.argsort_stable(true, 0, false); // [N*k]
        let token = order.floor_divide_scalar(self.top_k); // [N*k] token of each sorted slot
        let counts = slots
            .bincount::<Tensor>(None, self.experts.len() as i64)
            .to_device(tch::Device::Cpu); // the one host read of a pass
        let counts = Vec::<i64>::try_from(&counts).expect("bincount gives i64 counts");
        let grouped = flat.index_select(0, &token); // [N*k, D]
                                                    // Every expert runs, on no tokens if none chose it, so each has a
                                                    // (zero) gradient.
        let outputs: Vec<Tensor> = grouped
            .split_with_sizes(&counts, 0)
            .iter()
            .zip(&self.experts)
            .map(|(xs, expert)| expert.forward(xs))
            .collect();
        let weight = weights.flatten(0, -1).index_select(0, &order).unsqueeze(1); // [N*k, 1]
        let y = (Tensor::cat(&outputs, 0).to_kind(Kind::Float) * weight).to_kind(x.kind());
        let out = flat.zeros_like().index_add(0, &token, &y); // [N, D]
        (out.view(size.as_slice()), logits)
    }
}

/// The router's load-balancing loss of transformers'
/// `load_balancing_loss_func`: over every block's routed tokens, E times
/// the sum over experts of (the share of top-k slots the expert got) times
/// (its mean router probability), each token counted with its weight (1 for
/// a real token, 0 for padding; a prompt shared by K responses counts K).
///
/// `routed`: per block pass, the router's logits `[n, E]` and the tokens'
/// weights `[n]`. Returns a scalar (f32); 0 when nothing was routed.
pub fn load_balancing_loss(routed: &[(Tensor, Tensor)], experts: i64, top_k: i64) -> Tensor {
    let Some((first, _)) = routed.first() else {
        return Tensor::from(0.0f32);
    };
    let options = (Kind::Float, first.device());
    let mut tokens_per_expert = Tensor::zeros([experts], options);
    let mut prob_per_expert = Tensor::zeros([experts], options);
    let mut total = Tensor::zeros([], options);
    for (logits, weight) in routed {
        let probs = logits.to_kind(Kind::Float).softmax(-1, Kind::Float); // [n, E]
        let (_, chosen) = probs.topk(top_k, -1, true, true); // [n, k]
        let weight = weight.to_kind(Kind::Float); // [n]
        tokens_per_expert = tokens_per_expert.scatter_add(
            0,
            &chosen.flatten(0, -1),
            &weight.repeat_interleave_self_int(top_k, 0, None),
        );
        prob_per_expert += (probs * weight.unsqueeze(1)).sum_dim_intlist(0, false, Kind::Float);
        total += weight.sum(Kind::Float);
    }
    let total = total.clamp_min(1e-12);
    ((tokens_per_expert / &total) * (prob_per_expert / &total)).sum(Kind::Float) * experts as f64
}
