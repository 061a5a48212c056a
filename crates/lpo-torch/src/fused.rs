//! libtorch's multi-tensor kernels that the tch crate has no bindings for
//! (compiled from `fused.cpp`): the fused AdamW update and the global
//! gradient norm with clipping, each one call over every parameter, with no
//! copy of a result to the host.

use std::ffi::{c_char, CStr};

use anyhow::{bail, Result};
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn lpo_fused_adamw(
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        exp_avgs: *const *const C_tensor,
        exp_avg_sqs: *const *const C_tensor,
        steps: *const *const C_tensor,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        found_inf: *const C_tensor,
    ) -> *const c_char;
    fn lpo_clip_grad_norm(
        grads: *const *const C_tensor,
        n: usize,
        max_norm: f64,
        norm: *mut *mut C_tensor,
    ) -> *const c_char;
}

/// AdamW's hyper-parameters for one [`adamw`] call.
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
}

/// One AdamW update in place, with PyTorch's fused kernel (the update of
/// `torch.optim.AdamW(fused=True)`): `params`, `grads`, `exp_avgs` and
/// `exp_avg_sqs` are parallel lists of same-shaped f32 tensors on one device;
/// `step` is a 0-dim f32 tensor there holding the step number, already
/// incremented. When `found_inf` (0-dim f32) holds 1, nothing changes (the
/// check happens on the device).
pub fn adamw(
    params: &[Tensor],
    grads: &[Tensor],
    exp_avgs: &[Tensor],
    exp_avg_sqs: &[Tensor],
    step: &Tensor,
    found_inf: &Tensor,
    h: AdamWStep,
) -> Result<()> {
    let n = params.len();
    if [grads.len(), exp_avgs.len(), exp_avg_sqs.len()] != [n; 3] {
        bail!("fused AdamW needs one gradient and two moments per parameter");
    }
    // The kernel walks each parameter's elements through the other three.
    for (i, p) in params.iter().enumerate() {
        let shape = p.size();
        if [&grads[i], &exp_avgs[i], &exp_avg_sqs[i]]
            .iter()
            .any(|t| t.size() != shape)
        {
            bail!(
                "fused AdamW: parameter {i} ({shape:?}) has a gradient or moment of another shape"
            );
        }
    }
    if n == 0 {
        return Ok(());
    }
    let steps = vec![step.as_ptr(); n];
    // SAFETY: every pointer is a live tensor borrowed for the call; the
    // kernel only updates their contents in place.
    let error = unsafe {
        lpo_fused_adamw(
            pointers(params).as_ptr(),
            pointers(grads).as_ptr(),
            pointers(exp_avgs).as_ptr(),
            pointers(exp_avg_sqs).as_ptr(),
            steps.as_ptr(),
            n,
            h.lr,
            h.beta1,
            h.beta2,
            h.weight_decay,
            h.eps,
            found_inf.as_ptr(),
        )
    };
    check(error, "fused AdamW")
}

/// The global L2 norm of `grads` (computed in f32), as a 0-dim tensor on
/// their device; with `max_norm > 0` the gradients are first scaled in place
/// by `min(1, max_norm / (norm + 1e-6))`, as `torch.nn.utils.clip_grad_norm_`
/// does. The norm returned is the one before scaling.
pub fn clip_grad_norm(grads: &[Tensor], max_norm: f64) -> Result<Tensor> {
    if grads.is_empty() {
        return Ok(Tensor::zeros([], (tch::Kind::Float, tch::Device::Cpu)));
    }
    let mut norm: *mut C_tensor = std::ptr::null_mut();
    // SAFETY: the gradients are live tensors borrowed for the call; `norm`
    // receives a new tensor that we own from here on.
    let error =
        unsafe { lpo_clip_grad_norm(pointers(grads).as_ptr(), grads.len(), max_norm, &mut norm) };
    check(error, "gradient norm")?;
    // SAFETY: on success `norm` points to a tensor allocated for us.
    Ok(unsafe { Tensor::from_ptr(norm) })
}

fn pointers(tensors: &[Tensor]) -> Vec<*const C_tensor> {
    tensors.iter().map(Tensor::as_ptr).collect()
}

pub(crate) fn check(error: *const c_char, what: &str) -> Result<()> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result is a NUL-terminated message owned by the shim.
    let message = unsafe { CStr::from_ptr(error) }.to_string_lossy();
    bail!("{what} failed in libtorch: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn clipping_scales_every_gradient_by_one_factor_and_returns_the_norm_before() {
        let a = Tensor::from_slice(&[3.0f32, 0.0]);
        let b = Tensor::from_slice(&[4.0f32]);
        let norm = clip_grad_norm(&[a.shallow_clone(), b.shallow_clone()], 1.0).unwrap();
        assert!((norm.double_value(&[]) - 5.0).abs() < 1e-6);
        assert!((a.double_value(&[0]) - 0.6).abs() < 1e-6);
        assert!((b.double_value(&[0]) - 0.8).abs() < 1e-6);
        // Below the limit nothing changes (the factor is exactly 1).
        let before = b.double_value(&[0]);
        let norm = clip_grad_norm(&[a.shallow_clone(), b.shallow_clone()], 2.0).unwrap();
        assert!((norm.double_value(&[]) - 1.0).abs() < 1e-6);
        assert_eq!(b.double_value(&[0]), before);
    }

    #[test]
    fn mismatched_lists_and_libtorch_errors_are_errors() {
        let p = Tensor::zeros([2], (Kind::Float, tch::Device::Cpu));
        let step = Tensor::from(1.0f32);
        let ok = Tensor::from(0.0f32);
        let h = AdamWStep {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.0,
            eps: 1e-8,
        };
        let p1 = [p.shallow_clone()];
        assert!(adamw(&p1, &[], &[], &[], &step, &ok, h).is_err());
        // A gradient of another shape is refused before the kernel runs.
        let g = [Tensor::zeros([3], (Kind::Float, tch::Device::Cpu))];
        let m = [p.zeros_like()];
        let v = [p.zeros_like()];
        let err = adamw(&p1, &g, &m, &v, &step, &ok, h).unwrap_err();
        assert!(err.to_string().contains("fused AdamW"), "{err}");
    }
}
