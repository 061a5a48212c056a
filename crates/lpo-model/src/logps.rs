//! Sequence log-probabilities of K responses per prompt, computing each
//! prompt once: the prompt's keys and values are cached and shared by its K
//! continuations (gradients flow through the shared prefix).

use tch::{Device, Kind, Tensor};

use crate::generate::{left_pad, pad_rows};
use crate::model::{positions_of, KvCache, Mistral};

/// Summed log-probabilities and token counts of responses, both `[B, K]`.
pub struct ResponseLogps {
    /// Sum over response tokens of log p(token | prompt, earlier tokens).
    pub sum: Tensor,
    /// Number of response tokens (0 for an empty slot).
    pub tokens: Tensor,
}

/// Right-pads token rows (see [`pad_rows`]).
pub fn right_pad(rows: &[Vec<i64>], pad: i64, device: Device) -> (Tensor, Tensor) {
    pad_rows(rows, pad, device, false)
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
    let b = prompts.len() as i64;
    let k = k as i64;
    assert_eq!(responses.len() as i64, b * k, "B*K responses");
    let device = model.device();
    // The prompt once per row: [B, Tp], its last column a real token.
    let (prompt_tokens, prompt_valid) = left_pad(prompts, pad, device);
    let tp = prompt_tokens.size()[1];
    let prompt_positions = positions_of(&prompt_valid);
    let mut cache = KvCache::new(model);
    let prompt_hidden = model.hidden(&prompt_tokens, &prompt_positions, &prompt_valid, &mut cache);
    let last = prompt_hidden
        .select(1, tp - 1)
        .repeat_interleave_self_int(k, 0, None)
        .unsqueeze(1); // [B*K, 1, D]
    cache.repeat_rows(k);
    // The K continuations: [B*K, Tr].
    let (tokens, valid) = right_pad(responses, pad, device);
    let tr = tokens.size()[1];
    let start = (prompt_positions.select(1, tp - 1) + 1).repeat_interleave_self_int(k, 0, None); // [B*K]
                                                                                                 // Rows are padded to the batch's longest response, so a padding slot of a
                                                                                                 // row with a long prompt can lie past the last position the rotary table
                                                                                                 // holds; real tokens never do (prompt + response <= max_len), and padding
                                                                                                 // is neither attended to nor scored, so its position is clamped.
    let last_position = model.config().max_position_embeddings - 1;
    let positions = (start.unsqueeze(1) + Tensor::arange(tr, (Kind::Int64, device)).unsqueeze(0))
        .clamp_max(last_position);
    let hidden = model.hidden(&tokens, &positions, &valid, &mut cache); // [B*K, Tr, D]
                                                                        // Token t is predicted from the state before it: the prompt's last for t = 0.
    let predictors = Tensor::cat(&[last, hidden.narrow(1, 0, tr - 1)], 1); // [B*K, Tr, D]
    let logp = model
        .logits(&predictors)
        .to_kind(Kind::Float)
        .log_softmax(-1, Kind::Float)
        .gather(2, &tokens.unsqueeze(2), false)
        .squeeze_dim(2); // [B*K, Tr]
    let valid_f = valid.to_kind(Kind::Float);
    ResponseLogps {
        sum: (logp * &valid_f)
            .sum_dim_intlist(1, false, Kind::Float)
            .view([b, k]),
        tokens: valid_f.sum_dim_intlist(1, false, Kind::Float).view([b, k]),
    }
}
