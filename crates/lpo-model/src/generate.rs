//! Batched generation with a KV cache: greedy or temperature/top-p sampling.
//!
//! Prompts are left-padded so every row's last prompt token is in the last
//! column; each step then feeds one token per row. K samples of a prompt
//! share its computed prefix (its keys and values are cached once and
//! repeated). Sampling happens on the model's device by inverse CDF, from one
//! uniform number per row per token drawn from a caller-owned seeded RNG on
//! the host: only the chosen ids are copied back, and results depend only on
//! the seed (up to how the device rounds the cumulative sums).

use rand::Rng;
use tch::{Device, Kind, Tensor};

use crate::model::{positions_of, KvCache, Mistral};

/// Names the sampling algorithm in cache identities of sampled text: a
/// new name when the same seed would draw other tokens.
pub const SAMPLER: &str = "inverse-cdf-v1";

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    /// The most likely token (lowest id on ties).
    Greedy,
    /// Sampling from softmax(logits / temperature) restricted to the smallest
    /// set of tokens whose mass reaches `top_p`.
    Sample {
        /// Softmax temperature (> 0).
        temperature: f64,
        /// Nucleus mass in (0, 1].
        top_p: f64,
    },
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateOptions {
    /// Most tokens per response (fewer if the position table ends first).
    pub max_new_tokens: usize,
    /// Token that ends a response (not included in the output).
    pub eos: i64,
    /// Padding token.
    pub pad: i64,
    /// Decoding rule.
    pub decoding: Decoding,
}

/// Pads token rows to a common width: `([N, T] tokens, [N, T] bool validity)`.
/// Left padding puts every row's last token in the last column (prompts);
/// right padding puts every row's first token in the first (responses).
pub fn pad_rows(rows: &[Vec<i64>], pad: i64, device: Device, left: bool) -> (Tensor, Tensor) {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut tokens = Vec::with_capacity(rows.len() * width);
    let mut valid = Vec::with_capacity(rows.len() * width);
    for row in rows {
        let fill = width - row.len();
        if left {
            tokens.extend(std::iter::repeat_n(pad, fill));
            valid.extend(std::iter::repeat_n(false, fill));
        }
        tokens.extend(row.iter().copied());
        valid.extend(std::iter::repeat_n(true, row.len()));
        if !left {
            tokens.extend(std::iter::repeat_n(pad, fill));
            valid.extend(std::iter::repeat_n(false, fill));
        }
    }
    let shape = [rows.len() as i64, width as i64];
    (
        Tensor::from_slice(&tokens).view(shape).to_device(device),
        Tensor::from_slice(&valid).view(shape).to_device(device),
    )
}

/// Left-pads token rows (see [`pad_rows`]).
pub fn left_pad(rows: &[Vec<i64>], pad: i64, device: Device) -> (Tensor, Tensor) {
    pad_rows(rows, pad, device, true)
}

/// Generates one response per prompt (token ids, without the end token).
pub fn generate(
    model: &Mistral,
    prompts: &[Vec<i64>],
    options: &GenerateOptions,
    rng: &mut impl Rng,
) -> Vec<Vec<i64>> {
    generate_k(model, prompts, 1, options, rng)
}

/// Generates `k` responses per prompt, prompt-major (rows `b*k..(b+1)*k`
/// continue `prompts[b]`): the same as [`generate`] on each prompt repeated
/// `k` times, computing each prompt once.
pub fn generate_k(
    model: &Mistral,
    prompts: &[Vec<i64>],
    k: usize,
    options: &GenerateOptions,
    rng: &mut impl Rng,
) -> Vec<Vec<i64>> {
    tch::no_grad(|| generate_inner(model, prompts, k.max(1) as i64, options, rng))
}

fn generate_inner(
    model: &Mistral,
    prompts: &[Vec<i64>],
    k: i64,
    options: &GenerateOptions,
    rng: &mut impl Rng,
) -> Vec<Vec<i64>> {
    let rows = prompts.len() * k as usize;
    if rows == 0 {
        return Vec::new();
    }
    let device = model.device();
    let (tokens, valid) = left_pad(prompts, options.pad, device);
    let width = tokens.size()[1];
    let room = (model.config().max_position_embeddings - width).max(0) as usize;
    let max_new = options.max_new_tokens.min(room);
    let positions = positions_of(&valid);
    let mut cache = KvCache::new(model);
    let hidden = model.hidden(&tokens, &positions, &valid, &mut cache);
    // The prefix once per prompt, then K rows per prompt from here on.
    cache.repeat_rows(k);
    let mut next_position =
        (positions.select(1, width - 1) + 1).repeat_interleave_self_int(k, 0, None); // [B*K]
    let mut logits = model
        .logits(&hidden.select(1, width - 1))
        .repeat_interleave_self_int(k, 0, None); // [B*K, V]
    let mut out = vec![Vec::new(); rows];
    let mut done = vec![false; rows];
    let n = rows as i64;
    for step in 0..max_new {
        let next = choose(&logits, options.decoding, rng);
        for (row, &token) in next.iter().enumerate() {
            if done[row] {
                continue;
            }
            if token == options.eos {
                done[row] = true;
            } else {
                out[row].push(token);
            }
        }
        if step + 1 == max_new || done.iter().all(|&d| d) {
            break;
        }
        let step_tokens = Tensor::from_slice(&next).view([n, 1]).to_device(device);
        let step_valid = Tensor::ones([n, 1], (Kind::Bool, device));
        let hidden = model.hidden(
            &step_tokens,
            &next_position.view([n, 1]),
            &step_valid,
            &mut cache,
        );
        next_position += 1;
        logits = model.logits(&hidden.select(1, 0));
    }
    out
}

/// Picks one token per row of `logits: [B, V]`; sampling draws one uniform
/// number per row (done rows included, so the stream does not depend on
/// which rows have ended).
fn choose(logits: &Tensor, decoding: Decoding, rng: &mut impl Rng) -> Vec<i64> {
    let picked = match decoding {
        Decoding::Greedy => logits.argmax(-1, false),
        Decoding::Sample { temperature, top_p } => {
            let rows = logits.size()[0];
            let uniforms: Vec<f64> = (0..rows).map(|_| rng.random::<f64>()).collect();
            sample_rows(logits, temperature, top_p, &uniforms)
        }
    };
    Vec::<i64>::try_from(picked.to_device(Device::Cpu)).expect("token ids are i64")
}

/// Samples one token per row of `logits: [B, V]` from softmax(logits /
/// temperature) restricted to its top-p nucleus, on the logits' device, by
/// inverse CDF with `uniforms[b]` in [0, 1) for row b. Returns `[B]` ids.
///
/// At `top_p` 1 the cumulative sum runs in vocabulary order (no sort).
/// Below 1 the probabilities are sorted in descending order (ties by
/// lower id) and the nucleus is the shortest prefix whose mass reaches
/// `top_p`; the uniform then picks within it.
pub fn sample_rows(logits: &Tensor, temperature: f64, top_p: f64, uniforms: &[f64]) -> Tensor {
    let (b, v) = logits.size2().expect("logits are [B, V]");
    assert_eq!(uniforms.len() as i64, b, "one uniform per row");
    let probs = (logits.to_kind(Kind::Float) / temperature).softmax(-1, Kind::Float); // [B, V]
    let u = Tensor::from_slice(uniforms)
        .to_kind(Kind::Float)
        .to_device(logits.device())
        .unsqueeze(1); // [B, 1]
    let pick = |cdf: &Tensor, mass: &Tensor| {
        // The first index whose cumulative mass exceeds u * mass.
        (u * mass).searchsorted(cdf, false, true, "right", None::<Tensor>)
    };
    if top_p >= 1.0 {
        let cdf = probs.cumsum(-1, Kind::Float); // [B, V]
        pick(&cdf, &cdf.narrow(1, v - 1, 1))
            .clamp_max(v - 1)
            .squeeze_dim(1)
    } else {
        let (sorted, order) = probs.sort_stable(true, -1, true); // [B, V]
        let cdf = sorted.cumsum(-1, Kind::Float);
        let before = &cdf - &sorted; // mass of the more likely tokens
        let kept = before.lt(top_p).sum_dim_intlist(-1, true, Kind::Int64); // [B, 1], >= 1
        let last = kept - 1;
        let mass = cdf.gather(1, &last, false);
        let j = pick(&cdf, &mass).minimum(&last);
        order.gather(1, &j, false).squeeze_dim(1)
    }
}
