//! Every matrix product of a layer: `x W^T (+ b)` on oneDNN's inner product
//! for large f32 products on an AVX-512 CPU, else `at::linear`. The dense
//! layers ([`crate::layer::Linear`]) and the LoRA adapters
//! ([`crate::lora::Adapter`]) both multiply here.

use tch::Tensor;

/// Products with fewer multiply-adds than this stay on `at::linear`: below
/// it oneDNN's fixed cost per call (about 10 µs) outweighs its faster kernel.
const ONEDNN_MIN_MACS: i64 = 1 << 20;

/// `x: [.., in]` times `weight: [out, in]` transposed, plus `bias: [out]`.
/// f32 products on an AVX-512 CPU of at least [`ONEDNN_MIN_MACS`] run on
/// oneDNN's inner product (forward and backward; [`lpo_torch::linear`]),
/// about twice MKL's speed there; the rest, CUDA and bf16 included, on
/// `at::linear`.
pub(crate) fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let macs = x.numel() as i64 * weight.size()[0];
    if macs >= ONEDNN_MIN_MACS && onednn_allowed() && lpo_torch::linear::onednn_applies(x, weight) {
        // linear.cpp multiplies what oneDNN refuses with at::matmul; what
        // fails there too (mismatched shapes) at::linear reports below.
        if let Ok(y) = lpo_torch::linear::onednn_linear(x, weight) {
            #[cfg(test)]
            crate::tests::ONEDNN_CALLS.with(|n| n.set(n.get() + 1));
            return match bias {
                Some(b) => y + b,
                None => y,
            };
        }
    }
    x.linear(weight, bias)
}

#[cfg(test)]
fn onednn_allowed() -> bool {
    !crate::tests::AT_LINEAR_ONLY.with(std::cell::Cell::get)
}

#[cfg(not(test))]
fn onednn_allowed() -> bool {
    true
}
