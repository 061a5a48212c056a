//! Batched generation with a KV cache: greedy or temperature/top-p sampling.
//!
//! Prompts are left-padded so every row's last prompt token is in the last
//! column; each step then feeds one token per row. Sampling draws from a
//! caller-owned seeded RNG on the host, so results depend only on the seed.

use rand::Rng;
use tch::{Device, Kind, Tensor};

use crate::model::{positions_of, KvCache, Mistral};

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
    tch::no_grad(|| generate_inner(model, prompts, options, rng))
}

fn generate_inner(
    model: &Mistral,
    prompts: &[Vec<i64>],
    options: &GenerateOptions,
    rng: &mut impl Rng,
) -> Vec<Vec<i64>> {
    let b = prompts.len();
    if b == 0 {
        return Vec::new();
    }
    let device = model.device();
    let (tokens, valid) = left_pad(prompts, options.pad, device);
    let width = tokens.size()[1];
    let room = (model.config().max_position_embeddings - width).max(0) as usize;
    let max_new = options.max_new_tokens.min(room);
    let positions = positions_of(&valid);
    let mut next_position = positions.select(1, width - 1) + 1; // [B]
    let mut cache = KvCache::new(model);
    let hidden = model.hidden(&tokens, &positions, &valid, &mut cache);
    let mut logits = model.logits(&hidden.select(1, width - 1)); // [B, V]
    let mut out = vec![Vec::new(); b];
    let mut done = vec![false; b];
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
        let step_tokens = Tensor::from_slice(&next)
            .view([b as i64, 1])
            .to_device(device);
        let step_valid = Tensor::ones([b as i64, 1], (Kind::Bool, device));
        let hidden = model.hidden(
            &step_tokens,
            &next_position.view([b as i64, 1]),
            &step_valid,
            &mut cache,
        );
        next_position += 1;
        logits = model.logits(&hidden.select(1, 0));
    }
    out
}

/// Picks one token per row of `logits: [B, V]`.
fn choose(logits: &Tensor, decoding: Decoding, rng: &mut impl Rng) -> Vec<i64> {
    match decoding {
        Decoding::Greedy => Vec::<i64>::try_from(logits.argmax(-1, false).to_device(Device::Cpu))
            .expect("argmax is i64"),
        Decoding::Sample { temperature, top_p } => {
            let probs = (logits.to_kind(Kind::Float) / temperature)
                .softmax(-1, Kind::Float)
                .to_device(Device::Cpu);
            let (b, v) = probs.size2().expect("[B, V]");
            let flat = Vec::<f32>::try_from(probs.flatten(0, -1)).expect("f32");
            (0..b as usize)
                .map(|row| {
                    sample_top_p(&flat[row * v as usize..(row + 1) * v as usize], top_p, rng)
                })
                .collect()
        }
    }
}

/// Samples an index from `probs` restricted to its top-p nucleus.
pub fn sample_top_p(probs: &[f32], top_p: f64, rng: &mut impl Rng) -> i64 {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    // Descending probability, ties by index: a total order, so deterministic.
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut kept = 0;
    let mut mass = 0.0f64;
    for &i in &order {
        kept += 1;
        mass += f64::from(probs[i]);
        if mass >= top_p {
            break;
        }
    }
    let mut u = rng.random::<f64>() * mass;
    for &i in &order[..kept] {
        u -= f64::from(probs[i]);
        if u < 0.0 {
            return i as i64;
        }
    }
    order[kept - 1] as i64
}
