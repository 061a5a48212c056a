//! The decoder, block by block (names follow Hugging Face's Mistral, Llama
//! and Qwen2, which share them, so the variable paths are their checkpoint
//! tensor names).
//!
//! Shapes: B batch, T new tokens, S keys (cached + new), D hidden, H query
//! heads, G key/value heads, E head width, V vocabulary.

use tch::nn;
use tch::{Device, Kind, Tensor};

use crate::layer::{Linear, INIT_STD};
use crate::linear::linear;
use crate::lora::LoraSpec;
use crate::moe::SparseMoe;
use crate::Config;

/// Token embeddings, `[V, D]`.
#[derive(Debug)]
pub(crate) struct Embedding {
    pub(crate) weight: Tensor,
}

impl Embedding {
    fn new(vs: nn::Path, vocab: i64, dim: i64) -> Embedding {
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: INIT_STD,
        };
        Embedding {
            weight: vs.var("weight", &[vocab, dim], init),
        }
    }

    /// `[B, T]` ids -> `[B, T, D]`.
    pub(crate) fn forward(&self, tokens: &Tensor) -> Tensor {
        Tensor::embedding(&self.weight, tokens, -1, false, false)
    }
}

/// Root-mean-square layer norm with a learned gain.
#[derive(Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(vs: nn::Path, size: i64, eps: f64) -> RmsNorm {
        RmsNorm {
            weight: vs.var("weight", &[size], nn::Init::Const(1.0)),
            eps,
        }
    }

    fn share(&self) -> RmsNorm {
        RmsNorm {
            weight: self.weight.shallow_clone(),
            eps: self.eps,
        }
    }

    /// `[.., D] -> [.., D]`, normalised in f32 whatever the input kind.
    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let x = x.to_kind(Kind::Float);
        let rms = (x.square().mean_dim(-1, true, Kind::Float) + self.eps).rsqrt();
        (x * rms).to_kind(kind) * &self.weight
    }
}

/// Rotary position embeddings (the "rotate half" layout Hugging Face uses),
/// with the config's scaling (linear, llama3, yarn) in the frequencies and
/// yarn's attention factor in cos and sin.
#[derive(Debug)]
pub struct Rotary {
    /// `[max_len, E]`.
    cos: Tensor,
    /// `[max_len, E]`.
    sin: Tensor,
}

impl Rotary {
    fn new(config: &Config, device: Device) -> Rotary {
        let (inv_freq, scale) = config.rope_frequencies();
        let inv_freq = Tensor::from_slice(&inv_freq).to_device(device); // [E/2], f64
        let t = Tensor::arange(config.max_position_embeddings, (Kind::Double, device));
        let freqs = t.outer(&inv_freq); // [max_len, E/2]
        let emb = Tensor::cat(&[&freqs, &freqs], -1); // [max_len, E]
        Rotary {
            cos: (emb.cos() * scale).to_kind(Kind::Float),
            sin: (emb.sin() * scale).to_kind(Kind::Float),
        }
    }

    fn share(&self) -> Rotary {
        Rotary {
            cos: self.cos.shallow_clone(),
            sin: self.sin.shallow_clone(),
        }
    }

    /// The cos and sin at `positions: [B, T]`, gathered once per forward
    /// pass and shared by every block's queries and keys.
    pub(crate) fn at(&self, positions: &Tensor) -> RopeAt {
        let (b, t) = positions.size2().expect("positions are [B, T]");
        let e = self.cos.size()[1];
        let flat = positions.flatten(0, -1);
        RopeAt {
            cos: self.cos.index_select(0, &flat).view([b, 1, t, e]),
            sin: self.sin.index_select(0, &flat).view([b, 1, t, e]),
        }
    }
}

/// Rotary cos and sin at one forward pass's positions, `[B, 1, T, E]` each (f32).
#[derive(Debug)]
pub struct RopeAt {
    cos: Tensor,
    sin: Tensor,
}

impl RopeAt {
    /// Rotates `x: [B, heads, T, E]` (computed in f32, returned in `x`'s kind).
    fn apply(&self, x: &Tensor) -> Tensor {
        let halves = x.chunk(2, -1);
        let rotated = Tensor::cat(&[&halves[1].neg(), &halves[0]], -1);
        (x.to_kind(Kind::Float) * &self.cos + rotated.to_kind(Kind::Float) * &self.sin)
            .to_kind(x.kind())
    }
}

/// Where a pass's token states lie when packed: only the real tokens of
/// `[R, T]` padded rows, in row-major order, at `offset..offset + N` of a
/// packed sequence `[1, M, ..]` ([`PackedPasses`]). Norms, linear layers and
/// the head then compute no padding; attention spreads its queries, keys
/// and values back over the padded rows and gathers its output again.
///
/// A padding slot holds a copy of a real token's state (one gather, no
/// zero-filled buffer, except for a pass without tokens): the mask never
/// lets a real query see a padding key, and a padding query's output is
/// dropped, so no value reaches a real token from it, and the gradients it
/// receives are exact zeros (adding them in any order changes nothing).
#[derive(Debug)]
pub(crate) struct Packing {
    /// `[N]` flat indices into the `R*T` slots of the real tokens.
    index: Tensor,
    /// `[R*T]` the packed token each slot holds: its own for a real slot,
    /// the row's (or the pass's) first for padding; `None` when `N = 0`.
    source: Option<Tensor>,
    /// Where the pass starts in the packed sequence.
    offset: i64,
    /// Whether every row is full (no padding: unpacking is a view; a batch
    /// with no padding in either pass is not packed at all).
    full: bool,
    rows: i64,
    width: i64,
}

impl Packing {
    /// The real tokens of `R = lengths.len()` rows of width `T`, left-aligned
    /// (right padding) or right-aligned (left padding, as prompts are), from
    /// `offset` on in the packed sequence.
    pub fn new(
        lengths: &[usize],
        width: i64,
        left_padded: bool,
        offset: i64,
        device: Device,
    ) -> Packing {
        let n: usize = lengths.iter().sum();
        let mut index = Vec::with_capacity(n);
        let mut source = Vec::with_capacity(lengths.len() * width as usize);
        for (r, &len) in lengths.iter().enumerate() {
            debug_assert!(len as i64 <= width, "a row longer than its width");
            let (len, packed) = (len as i64, offset + index.len() as i64);
            let fill = width - len;
            let first = r as i64 * width + if left_padded { fill } else { 0 };
            index.extend(first..first + len);
            // Padding copies the row's first token (or the batch's first).
            let filler = if len > 0 { packed } else { offset };
            let real = packed..packed + len;
            match left_padded {
                true => source.extend(std::iter::repeat_n(filler, fill as usize).chain(real)),
                false => source.extend(real.chain(std::iter::repeat_n(filler, fill as usize))),
            }
        }
        let to_device = |v: &[i64]| Tensor::from_slice(v).to_device(device);
        Packing {
            index: to_device(&index),
            source: (n > 0).then(|| to_device(&source)),
            offset,
            full: n as i64 == lengths.len() as i64 * width,
            rows: lengths.len() as i64,
            width,
        }
    }

    /// Real tokens `N`.
    pub fn len(&self) -> i64 {
        self.index.size()[0]
    }

    /// `[R*T]` the slots of the real tokens.
    pub fn slots(&self) -> &Tensor {
        &self.index
    }

    /// `[R, T, ..] -> [N, ..]`: the real tokens' slots.
    pub fn pack(&self, padded: &Tensor) -> Tensor {
        padded.flatten(0, 1).index_select(0, &self.index)
    }

    /// `[1, M, C] -> [R, T, C]`: this pass's tokens of a packed sequence in
    /// their padded rows, a real token's copy at padding (zeros when there
    /// is no real token).
    pub fn unpack(&self, packed: &Tensor) -> Tensor {
        let c = packed.size()[2];
        if self.full {
            return packed
                .narrow(1, self.offset, self.rows * self.width)
                .view([self.rows, self.width, c]);
        }
        let flat = match &self.source {
            Some(source) => packed.squeeze_dim(0).index_select(0, source),
            None => packed.new_zeros(
                [self.rows * self.width, c],
                (packed.kind(), packed.device()),
            ),
        };
        flat.view([self.rows, self.width, c])
    }
}

/// Cached keys and values of one block, `[B, G, S, E]` each, and (when
/// recording) the router logits of each pass through a sparse block.
#[derive(Debug, Default)]
pub struct LayerCache {
    kv: Option<(Tensor, Tensor)>,
    /// `Some` when the router's logits are kept: `[B*T, E]` per pass.
    pub(crate) router: Option<Vec<Tensor>>,
}

impl LayerCache {
    /// Repeats every row `times` times (see [`KvCache::repeat_rows`]).
    pub(crate) fn repeat_rows(&mut self, times: i64) {
        if times == 1 {
            return; // one continuation per row: nothing to copy
        }
        if let Some((k, v)) = self.kv.take() {
            self.kv = Some((
                k.repeat_interleave_self_int(times, 0, None),
                v.repeat_interleave_self_int(times, 0, None),
            ));
        }
    }
}

/// Grouped-query causal self-attention (q/k/v biases in Qwen2; per-head
/// q/k RMSNorm in Qwen3).
#[derive(Debug)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// Qwen3: RMSNorm over each query head's `E` features, before rotary.
    q_norm: Option<RmsNorm>,
    /// Qwen3: the same for keys.
    k_norm: Option<RmsNorm>,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn new(vs: nn::Path, c: &Config) -> Attention {
        let e = c.head_dim();
        let (d, h, g, bias) = (
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.qkv_bias(),
        );
        Attention {
            q_proj: Linear::new(&vs / "q_proj", d, h * e, bias),
            k_proj: Linear::new(&vs / "k_proj", d, g * e, bias),
            v_proj: Linear::new(&vs / "v_proj", d, g * e, bias),
            o_proj: Linear::new(&vs / "o_proj", h * e, d, false),
            q_norm: c
                .qk_norm()
                .then(|| RmsNorm::new(&vs / "q_norm", e, c.rms_norm_eps)),
            k_norm: c
                .qk_norm()
                .then(|| RmsNorm::new(&vs / "k_norm", e, c.rms_norm_eps)),
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: e,
        }
    }

    /// `x: [B, T, D]` at the positions `rope` was gathered for, `mask:
    /// [B, 1, T, S]` (true = may attend) -> `[B, T, D]`. Appends this step's
    /// keys and values to `cache`.
    fn forward(&self, x: &Tensor, rope: &RopeAt, mask: &Tensor, cache: &mut LayerCache) -> Tensor {
        let q = rope.apply(&self.split(self.q_proj.forward(x), self.heads, &self.q_norm)); // [B, H, T, E]
        let k = rope.apply(&self.split(self.k_proj.forward(x), self.kv_heads, &self.k_norm)); // [B, G, T, E]
        let v = self.split(self.v_proj.forward(x), self.kv_heads, &None); // [B, G, T, E]
        let (k, v) = match cache.kv.take() {
            Some((k0, v0)) => (Tensor::cat(&[k0, k], 2), Tensor::cat(&[v0, v], 2)), // [B, G, S, E]
            None => (k, v),
        };
        cache.kv = Some((k.shallow_clone(), v.shallow_clone()));
        self.o_proj.forward(&self.attend(&q, &k, &v, mask))
    }

    /// A batch's prompts and their K responses packed into one sequence
    /// (`x: [1, Np + N, D]`, see [`PackedPasses`]) -> `[1, Np + N, D]`: one
    /// product per projection for both passes; the prompts attend among
    /// themselves, each response to its prompt and itself.
    fn forward_packed(&self, x: &Tensor, p: &PackedPasses) -> Tensor {
        // A projection's output in the two passes' padded rows.
        let spread = |y: Tensor| (p.prompts.packing.unpack(&y), p.responses.packing.unpack(&y));
        let (qp, qr) = spread(self.q_proj.forward(x)); // [R, T, H*E] each pass
        let (kp, kr) = spread(self.k_proj.forward(x)); // [R, T, G*E]
        let (vp, vr) = spread(self.v_proj.forward(x)); // [R, T, G*E]
        let heads = |pass: &PackedPass, q, k, v| {
            (
                pass.rope.apply(&self.split(q, self.heads, &self.q_norm)), // [R, H, T, E]
                pass.rope.apply(&self.split(k, self.kv_heads, &self.k_norm)), // [R, G, T, E]
                self.split(v, self.kv_heads, &None),
            )
        };
        let (qp, kp, vp) = heads(&p.prompts, qp, kp, vp);
        let yp = self.attend(&qp, &kp, &vp, p.prompts.mask); // [B, Tp, H*E]
        let (qr, kr, vr) = heads(&p.responses, qr, kr, vr);
        let shared = |prompt: &Tensor, own: Tensor| {
            Tensor::cat(&[prompt.repeat_interleave_self_int(p.k, 0, None), own], 2)
        }; // [B*K, G, Tp + Tr, E]
        let yr = self.attend(&qr, &shared(&kp, kr), &shared(&vp, vr), p.responses.mask); // [B*K, Tr, H*E]
        let c = self.heads * self.head_dim;
        let y = Tensor::cat(&[yp.reshape([-1, c]), yr.reshape([-1, c])], 0) // [B*Tp + B*K*Tr, H*E]
            .index_select(0, p.real)
            .unsqueeze(0); // [1, Np + N, H*E]
        self.o_proj.forward(&y)
    }

    /// `[B, T, heads*E] -> [B, heads, T, E]`, each head normalised by `norm`.
    fn split(&self, y: Tensor, heads: i64, norm: &Option<RmsNorm>) -> Tensor {
        let (b, t, _) = y.size3().expect("3-d");
        let y = y.view([b, t, heads, self.head_dim]); // [B, T, heads, E]
        match norm {
            Some(norm) => norm.forward(&y).transpose(1, 2),
            None => y.transpose(1, 2),
        }
    }

    /// Scaled dot-product attention of `q: [B, H, T, E]` over `k, v: [B, G,
    /// S, E]` where `mask: [B, 1, T, S]` allows -> `[B, T, H*E]`.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Tensor {
        // On the CPU, SDPA shares each key/value head among its query heads
        // itself (`enable_gqa`), which is faster than expanding them; CUDA's
        // memory-efficient kernel (the one that takes a mask) does not
        // support that, so there the heads are expanded.
        let groups = self.heads / self.kv_heads;
        let shared = groups > 1 && q.device() == Device::Cpu;
        let (k, v) = if groups > 1 && !shared {
            (
                k.repeat_interleave_self_int(groups, 1, None), // [B, H, S, E]
                v.repeat_interleave_self_int(groups, 1, None),
            )
        } else {
            (k.shallow_clone(), v.shallow_clone())
        };
        let y =
            Tensor::scaled_dot_product_attention(q, &k, &v, Some(mask), 0.0, false, None, shared); // [B, H, T, E]
        let (b, _, t, _) = y.size4().expect("4-d");
        y.transpose(1, 2)
            .reshape([b, t, self.heads * self.head_dim])
    }
}

/// One pass's attention in [`PackedPasses`]: where its tokens lie in the
/// packed sequence and its padded rows' rotary table and mask.
pub(crate) struct PackedPass<'a> {
    pub packing: &'a Packing,
    pub rope: &'a RopeAt,
    /// `[R, 1, T, S]`.
    pub mask: &'a Tensor,
}

/// A batch of B prompts and their B*K responses as one packed sequence
/// `[1, Np + N, ..]`: the prompts' real tokens, then the responses'. Every
/// per-token layer runs once over it; attention runs per pass on padded
/// rows, the responses' after their prompt's keys and values.
pub(crate) struct PackedPasses<'a> {
    pub prompts: PackedPass<'a>,
    pub responses: PackedPass<'a>,
    /// Responses per prompt.
    pub k: i64,
    /// `[Np + N]`: the real tokens' slots among the prompts' `B*Tp` padded
    /// slots followed by the responses' `B*K*Tr`.
    pub real: &'a Tensor,
}

/// A block's feed-forward: a dense SwiGLU MLP, or Mixtral's sparse mixture
/// of SwiGLU experts.
#[derive(Debug)]
pub enum FeedForward {
    /// `mlp.*` (Mistral, Llama, Qwen2, Qwen3).
    Dense(Mlp),
    /// `block_sparse_moe.*` (Mixtral).
    Sparse(SparseMoe),
}

impl FeedForward {
    fn new(vs: &nn::Path, c: &Config) -> FeedForward {
        match c.is_moe() {
            true => FeedForward::Sparse(SparseMoe::new(vs / "block_sparse_moe", c)),
            false => FeedForward::Dense(Mlp::new(vs / "mlp", c)),
        }
    }

    /// `[B, T, D] -> [B, T, D]`; a sparse block's router logits go to
    /// `cache` when it records them.
    fn forward(&self, x: &Tensor, cache: &mut LayerCache) -> Tensor {
        match self {
            FeedForward::Dense(mlp) => mlp.forward(x),
            FeedForward::Sparse(moe) => {
                let (y, logits) = moe.forward(x);
                if let Some(router) = &mut cache.router {
                    router.push(logits);
                }
                y
            }
        }
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
#[derive(Debug)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn new(vs: nn::Path, c: &Config) -> Mlp {
        Mlp {
            gate_proj: Linear::new(&vs / "gate_proj", c.hidden_size, c.intermediate_size, false),
            up_proj: Linear::new(&vs / "up_proj", c.hidden_size, c.intermediate_size, false),
            down_proj: Linear::new(&vs / "down_proj", c.intermediate_size, c.hidden_size, false),
        }
    }

    /// `[B, T, D] -> [B, T, D]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        self.down_proj
            .forward(&(self.gate_proj.forward(x).silu() * self.up_proj.forward(x)))
    }
}

/// Pre-norm decoder block: attention then MLP, each with a residual.
#[derive(Debug)]
pub struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    ffn: FeedForward,
}

impl Block {
    fn new(vs: nn::Path, c: &Config) -> Block {
        Block {
            input_layernorm: RmsNorm::new(&vs / "input_layernorm", c.hidden_size, c.rms_norm_eps),
            self_attn: Attention::new(&vs / "self_attn", c),
            post_attention_layernorm: RmsNorm::new(
                &vs / "post_attention_layernorm",
                c.hidden_size,
                c.rms_norm_eps,
            ),
            ffn: FeedForward::new(&vs, c),
        }
    }

    /// The same weights (shared) with adapters under `vs` on the targeted
    /// linear layers.
    fn with_adapters(&self, vs: &nn::Path, spec: &LoraSpec) -> Block {
        let adapt =
            |linear: &Linear, group: &str, name: &str| linear.adapted(&(vs / group), name, spec);
        let a = &self.self_attn;
        Block {
            input_layernorm: self.input_layernorm.share(),
            self_attn: Attention {
                q_proj: adapt(&a.q_proj, "self_attn", "q_proj"),
                k_proj: adapt(&a.k_proj, "self_attn", "k_proj"),
                v_proj: adapt(&a.v_proj, "self_attn", "v_proj"),
                o_proj: adapt(&a.o_proj, "self_attn", "o_proj"),
                q_norm: a.q_norm.as_ref().map(RmsNorm::share),
                k_norm: a.k_norm.as_ref().map(RmsNorm::share),
                heads: a.heads,
                kv_heads: a.kv_heads,
                head_dim: a.head_dim,
            },
            post_attention_layernorm: self.post_attention_layernorm.share(),
            ffn: match &self.ffn {
                FeedForward::Dense(m) => FeedForward::Dense(Mlp {
                    gate_proj: adapt(&m.gate_proj, "mlp", "gate_proj"),
                    up_proj: adapt(&m.up_proj, "mlp", "up_proj"),
                    down_proj: adapt(&m.down_proj, "mlp", "down_proj"),
                }),
                FeedForward::Sparse(moe) => {
                    FeedForward::Sparse(moe.with_adapters(&(vs / "block_sparse_moe"), spec))
                }
            },
        }
    }

    /// The block's feed-forward.
    pub fn feed_forward(&self) -> &FeedForward {
        &self.ffn
    }

    /// `[B, T, D] -> [B, T, D]`.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        rope: &RopeAt,
        mask: &Tensor,
        cache: &mut LayerCache,
    ) -> Tensor {
        let h = x + self
            .self_attn
            .forward(&self.input_layernorm.forward(x), rope, mask, cache);
        &h + self
            .ffn
            .forward(&self.post_attention_layernorm.forward(&h), cache)
    }

    /// A packed batch of prompts and responses ([`PackedPasses`]):
    /// `[1, Np + N, D] -> [1, Np + N, D]`; `cache` only records a sparse
    /// block's router logits (one pass).
    pub(crate) fn forward_packed(
        &self,
        x: &Tensor,
        passes: &PackedPasses,
        cache: &mut LayerCache,
    ) -> Tensor {
        let h = x + self
            .self_attn
            .forward_packed(&self.input_layernorm.forward(x), passes);
        &h + self
            .ffn
            .forward(&self.post_attention_layernorm.forward(&h), cache)
    }
}

/// Keys and values of every block for incremental decoding.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    /// Which cached key positions hold real tokens, `[B, S]` bool.
    valid: Option<Tensor>,
}

impl KvCache {
    /// An empty cache for `model`.
    pub fn new(model: &Mistral) -> KvCache {
        KvCache {
            layers: (0..model.blocks.len())
                .map(|_| LayerCache::default())
                .collect(),
            valid: None,
        }
    }

    /// Keeps every sparse block's router logits from now on (for the
    /// load-balancing loss; [`KvCache::take_router_logits`]).
    pub fn record_router_logits(&mut self) {
        for layer in &mut self.layers {
            layer.router.get_or_insert_with(Vec::new);
        }
    }

    /// The router logits recorded since [`KvCache::record_router_logits`]:
    /// per block, per pass, `[rows*T, E]`.
    pub fn take_router_logits(&mut self) -> Vec<Vec<Tensor>> {
        self.layers
            .iter_mut()
            .map(|l| l.router.take().unwrap_or_default())
            .collect()
    }

    /// Cached positions S.
    pub fn len(&self) -> i64 {
        self.valid.as_ref().map_or(0, |v| v.size()[1])
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Repeats every row `times` times (row b becomes rows b*times..(b+1)*times),
    /// so K continuations share one computed prefix.
    pub fn repeat_rows(&mut self, times: i64) {
        for layer in &mut self.layers {
            layer.repeat_rows(times);
        }
        self.valid = self
            .valid
            .take()
            .map(|v| v.repeat_interleave_self_int(times, 0, None));
    }
}

/// The decoder (Mistral, Llama, Qwen2): embeddings, blocks, final norm,
/// output head.
#[derive(Debug)]
pub struct Mistral {
    pub(crate) embed_tokens: Embedding,
    pub(crate) blocks: Vec<Block>,
    pub(crate) norm: RmsNorm,
    /// `None` with tied embeddings: the head is `embed_tokens`' weight, `[V, D]`.
    lm_head: Option<Linear>,
    pub(crate) rotary: Rotary,
    config: Config,
}

impl Mistral {
    /// Creates the variables under `vs` (randomly initialised from torch's seed).
    pub fn new(vs: &nn::Path, config: &Config) -> Mistral {
        let model = vs / "model";
        Mistral {
            embed_tokens: Embedding::new(
                &model / "embed_tokens",
                config.vocab_size,
                config.hidden_size,
            ),
            blocks: (0..config.num_hidden_layers)
                .map(|i| Block::new(&model / "layers" / i, config))
                .collect(),
            norm: RmsNorm::new(&model / "norm", config.hidden_size, config.rms_norm_eps),
            lm_head: (!config.tie_word_embeddings)
                .then(|| Linear::new(vs / "lm_head", config.hidden_size, config.vocab_size, false)),
            rotary: Rotary::new(config, vs.device()),
            config: config.clone(),
        }
    }

    /// The decoder without its output head (`model.*` only), for a reward
    /// model's trunk ([`crate::reward_model`]); [`Mistral::logits`] is never
    /// called on it.
    pub(crate) fn trunk(vs: &nn::Path, config: &Config) -> Mistral {
        let tied = Config {
            tie_word_embeddings: true,
            ..config.clone()
        };
        Mistral::new(vs, &tied)
    }

    /// A policy with LoRA adapters: this model's weights, shared (not
    /// copied) and meant to stay frozen, plus adapters created under `vs`
    /// (PEFT's names: `model.layers.N.self_attn.q_proj.lora_A.weight`, ...).
    /// At initialisation its outputs equal this model's (`B = 0`).
    pub fn with_adapters(&self, vs: &nn::Path, spec: &LoraSpec) -> Mistral {
        let layers = vs / "model" / "layers";
        Mistral {
            embed_tokens: Embedding {
                weight: self.embed_tokens.weight.shallow_clone(),
            },
            blocks: self
                .blocks
                .iter()
                .enumerate()
                .map(|(i, b)| b.with_adapters(&(&layers / i), spec))
                .collect(),
            norm: self.norm.share(),
            lm_head: self.lm_head.as_ref().map(|h| h.with_adapter(None)),
            rotary: self.rotary.share(),
            config: self.config.clone(),
        }
    }

    /// The architecture.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.rotary.cos.device()
    }

    /// Final hidden states of new tokens.
    ///
    /// `tokens: [B, T]` (i64) at `positions: [B, T]`; `valid: [B, T]` marks real
    /// tokens (padding is never attended to). Keys already in `cache` come
    /// first; the new keys are appended. Returns `[B, T, D]`.
    pub fn hidden(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        valid: &Tensor,
        cache: &mut KvCache,
    ) -> Tensor {
        let (_, t) = tokens.size2().expect("tokens are [B, T]");
        let past = cache.len();
        let key_valid = match cache.valid.take() {
            Some(old) => Tensor::cat(&[old, valid.to_kind(Kind::Bool)], 1),
            None => valid.to_kind(Kind::Bool),
        }; // [B, S]
        let mask = self.attention_mask(past, t, &key_valid);
        cache.valid = Some(key_valid);
        let rope = self.rotary.at(positions);
        let x = self.embed_tokens.forward(tokens); // [B, T, D]
        self.norm.forward(&self.run_blocks(x, &rope, &mask, cache))
    }

    /// Every block on `x: [B, T, D]` at the positions `rope` was gathered
    /// for, attending where `mask: [B, 1, T, S]` allows after the keys in
    /// `cache` (this pass's are appended) -> `[B, T, D]`, before the final norm.
    pub(crate) fn run_blocks(
        &self,
        mut x: Tensor,
        rope: &RopeAt,
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> Tensor {
        for (block, layer_cache) in self.blocks.iter().zip(&mut cache.layers) {
            x = block.forward(&x, rope, mask, layer_cache);
        }
        x
    }

    /// Next-token logits from hidden states: `[.., D] -> [.., V]`.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => linear(hidden, &self.embed_tokens.weight, None), // [.., D] x [D, V]
        }
    }

    /// Logits of every position of right-padded sequences, no cache: `[B, T] -> [B, T, V]`.
    pub fn forward(&self, tokens: &Tensor, valid: &Tensor) -> Tensor {
        let positions = positions_of(valid);
        let mut cache = KvCache::new(self);
        self.logits(&self.hidden(tokens, &positions, valid, &mut cache))
    }

    /// As [`Mistral::forward`], with the router's load-balancing loss over
    /// the real tokens ([`crate::moe::load_balancing_loss`]; `None` for a
    /// dense model), as transformers' `output_router_logits` gives it.
    pub fn forward_with_router_loss(
        &self,
        tokens: &Tensor,
        valid: &Tensor,
    ) -> (Tensor, Option<Tensor>) {
        let positions = positions_of(valid);
        let mut cache = KvCache::new(self);
        cache.record_router_logits();
        let logits = self.logits(&self.hidden(tokens, &positions, valid, &mut cache));
        let weight = valid.to_kind(Kind::Float).flatten(0, -1);
        let routed: Vec<(Tensor, Tensor)> = cache
            .take_router_logits()
            .into_iter()
            .flatten()
            .map(|l| (l, weight.shallow_clone()))
            .collect();
        (logits, self.router_loss(&routed))
    }

    /// The load-balancing loss of router logits and token weights
    /// ([`crate::moe::load_balancing_loss`]); `None` for a dense model.
    pub(crate) fn router_loss(&self, routed: &[(Tensor, Tensor)]) -> Option<Tensor> {
        let c = &self.config;
        c.is_moe().then(|| {
            crate::moe::load_balancing_loss(routed, c.num_local_experts, c.num_experts_per_tok)
        })
    }

    /// `[B, 1, T, S]` bool: query i (cache index past + i) may see key j when
    /// j <= past + i, j is a real token, and j is within the sliding window.
    /// Every query also sees itself, so padding rows never softmax over nothing.
    pub(crate) fn attention_mask(&self, past: i64, t: i64, key_valid: &Tensor) -> Tensor {
        let device = key_valid.device();
        let s = past + t;
        let q = (Tensor::arange(t, (Kind::Int64, device)) + past).unsqueeze(1); // [T, 1]
        let k = Tensor::arange(s, (Kind::Int64, device)).unsqueeze(0); // [1, S]
        let mut allowed = k.le_tensor(&q); // [T, S]
        if let Some(window) = self.config.sliding_window {
            allowed = allowed.logical_and(&(&q - &k).lt(window));
        }
        let own = k.eq_tensor(&q); // [T, S]
        let allowed = allowed.unsqueeze(0).logical_and(&key_valid.unsqueeze(1)); // [B, T, S]
        allowed.logical_or(&own.unsqueeze(0)).unsqueeze(1)
    }
}

/// Positions of tokens given a validity mask `[B, T]`: real tokens count up
/// from 0 whatever padding precedes them; padding gets the previous position.
pub fn positions_of(valid: &Tensor) -> Tensor {
    (valid.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1).clamp_min(0)
}
