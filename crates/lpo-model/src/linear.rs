//! Every matrix product of a layer: `x W^T (+ b)` on oneDNN's inner product
//! for large f32 products on an AVX-512 CPU, else `at::linear`. The dense
//! layers ([`crate::layer::Linear`]) and the LoRA adapters
//! ([`crate::lora::Adapter`]) both multiply here.

use tch::Tensor;

/// `x: [.., in]` times `weight: [out, in]` transposed, plus `bias: [out]`.
/// f32 products on an AVX-512 CPU of at least
/// [`lpo_torch::linear::onednn_min_macs`] multiply-adds (2^20 on AMD Zen 5,
/// 2^26 elsewhere: where oneDNN wins on that CPU) run on oneDNN's inner
/// product (forward and backward; [`lpo_torch::linear`]); the rest, CUDA and
/// bf16 included, on `at::linear`.
pub(crate) fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let macs = x.numel() as i64 * weight.size()[0];
    if macs >= min_macs() && lpo_torch::linear::onednn_applies(x, weight) {
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
fn min_macs() -> i64 {
    crate::tests::ONEDNN_MIN_MACS
        .with(std::cell::Cell::get)
        .unwrap_or_else(lpo_torch::linear::onednn_min_macs)
}

#[cfg(not(test))]
fn min_macs() -> i64 {
    lpo_torch::linear::onednn_min_macs()
}
