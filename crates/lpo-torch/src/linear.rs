//! A linear layer whose matrix products run on oneDNN's f32 inner product
//! (libtorch's `mkldnn::_linear_pointwise` operator, called from
//! `linear.cpp`): libtorch's own `at::linear` uses MKL's sgemm on the CPU,
//! which on this project's AVX-512 machines reaches about 105 GFLOP/s on one
//! core where oneDNN reaches 185–250 (forward, input gradient and weight
//! gradient; `docs/performance.md`). Same IEEE f32 arithmetic, other
//! summation order.

use std::ffi::c_int;
use std::sync::OnceLock;

use anyhow::Result;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::fused::check;

extern "C" {
    fn lpo_onednn_linear_available() -> c_int;
    fn lpo_onednn_linear(
        x: *const C_tensor,
        w: *const C_tensor,
        out: *mut *mut C_tensor,
    ) -> *const std::ffi::c_char;
}

/// Whether this libtorch has oneDNN's linear (`mkldnn::_linear_pointwise`).
pub fn onednn_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    // SAFETY: a query of the operator registry, no arguments.
    *AVAILABLE.get_or_init(|| unsafe { lpo_onednn_linear_available() } == 1)
}

/// Whether [`onednn_linear`] is the faster choice for `x` and `w`: f32
/// tensors on the CPU, oneDNN present, and a CPU with AVX-512 (where its
/// advantage over MKL was measured; elsewhere `at::linear` stays).
pub fn onednn_applies(x: &Tensor, w: &Tensor) -> bool {
    x.device() == Device::Cpu
        && w.device() == Device::Cpu
        && x.kind() == Kind::Float
        && w.kind() == Kind::Float
        && onednn_preferred()
}

/// Whether this machine multiplies f32 CPU tensors on oneDNN: present, and
/// the CPU has AVX-512.
pub fn onednn_preferred() -> bool {
    avx512() && onednn_available()
}

#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512() -> bool {
    false
}

/// `x: [.., in]` times `w: [out, in]` transposed, `[.., out]`, differentiable
/// in both (the backward pass uses the same kernel). See [`onednn_applies`].
pub fn onednn_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    // SAFETY: x and w are live tensors borrowed for the call; `out` receives
    // a new tensor that we own from here on.
    let error = unsafe { lpo_onednn_linear(x.as_ptr(), w.as_ptr(), &mut out) };
    check(error, "oneDNN linear")?;
    // SAFETY: on success `out` points to a tensor allocated for us.
    Ok(unsafe { Tensor::from_ptr(out) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x w^T and its gradients in float64 on the host, the reference.
    fn reference(x: &[f64], w: &[f64], dy: &[f64], m: usize, k: usize, n: usize) -> [Vec<f64>; 3] {
        let mut y = vec![0.0; m * n];
        let mut dx = vec![0.0; m * k];
        let mut dw = vec![0.0; n * k];
        for i in 0..m {
            for j in 0..n {
                for l in 0..k {
                    y[i * n + j] += x[i * k + l] * w[j * k + l];
                    dx[i * k + l] += dy[i * n + j] * w[j * k + l];
                    dw[j * k + l] += dy[i * n + j] * x[i * k + l];
                }
            }
        }
        [y, dx, dw]
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
    }

    fn assert_close(got: &[f64], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    #[test]
    fn products_and_gradients_equal_a_float64_reference() {
        if !onednn_available() {
            eprintln!("skipped: this libtorch has no oneDNN");
            return;
        }
        // A 3-d input [2, 3, 5] (M = 6 rows), 4 outputs; fixed values.
        let (m, k, n) = (6usize, 5usize, 4usize);
        let xs: Vec<f64> = (0..m * k)
            .map(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0)
            .collect();
        let ws: Vec<f64> = (0..n * k)
            .map(|i| ((i * 5 % 13) as f64 - 6.0) / 8.0)
            .collect();
        let dys: Vec<f64> = (0..m * n)
            .map(|i| ((i * 3 % 7) as f64 - 3.0) / 2.0)
            .collect();
        let x = Tensor::from_slice(&xs)
            .to_kind(Kind::Float)
            .view([2, 3, 5])
            .set_requires_grad(true);
        let w = Tensor::from_slice(&ws)
            .to_kind(Kind::Float)
            .view([4, 5])
            .set_requires_grad(true);
        let dy = Tensor::from_slice(&dys)
            .to_kind(Kind::Float)
            .view([2, 3, 4]);
        assert!(onednn_applies(&x, &w));
        let y = onednn_linear(&x, &w).unwrap();
        assert_eq!(y.size(), [2, 3, 4]);
        (&y * &dy).sum(Kind::Float).backward();
        let [y_ref, dx_ref, dw_ref] = reference(&xs, &ws, &dys, m, k, n);
        assert_close(&values(&y), &y_ref, "y");
        assert_close(&values(&x.grad()), &dx_ref, "dx");
        assert_close(&values(&w.grad()), &dw_ref, "dw");
    }

    #[test]
    fn a_frozen_weight_gets_no_gradient_and_no_grad_mode_records_nothing() {
        if !onednn_available() {
            return;
        }
        let x = Tensor::ones([3, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let w = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
        let y = onednn_linear(&x, &w).unwrap();
        y.sum(Kind::Float).backward();
        assert!(!w.grad().defined());
        assert_eq!(values(&x.grad()), vec![2.0; 6]);
        let y = tch::no_grad(|| onednn_linear(&x, &w).unwrap());
        assert!(!y.requires_grad());
    }

    #[test]
    fn both_weight_gradient_orders_and_a_frozen_input_match_the_reference() {
        if !onednn_available() {
            return;
        }
        // in < out (dw computed transposed) and in > out.
        for (m, k, n) in [(5usize, 3usize, 7usize), (5, 7, 3)] {
            let xs: Vec<f64> = (0..m * k)
                .map(|i| ((i * 3 % 7) as f64 - 3.0) / 2.0)
                .collect();
            let ws: Vec<f64> = (0..n * k)
                .map(|i| ((i * 5 % 9) as f64 - 4.0) / 4.0)
                .collect();
            let dys: Vec<f64> = (0..m * n)
                .map(|i| ((i * 7 % 5) as f64 - 2.0) / 3.0)
                .collect();
            let x = Tensor::from_slice(&xs)
                .to_kind(Kind::Float)
                .view([m as i64, k as i64]);
            let w = Tensor::from_slice(&ws)
                .to_kind(Kind::Float)
                .view([n as i64, k as i64])
                .set_requires_grad(true);
            let dy = Tensor::from_slice(&dys)
                .to_kind(Kind::Float)
                .view([m as i64, n as i64]);
            (onednn_linear(&x, &w).unwrap() * &dy)
                .sum(Kind::Float)
                .backward();
            let [_, _, dw_ref] = reference(&xs, &ws, &dys, m, k, n);
            assert_close(&values(&w.grad()), &dw_ref, "dw");
        }
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        if !onednn_available() {
            return;
        }
        let x = Tensor::ones([3, 2], (Kind::Float, Device::Cpu));
        let w = Tensor::ones([2, 5], (Kind::Float, Device::Cpu));
        assert!(onednn_linear(&x, &w).is_err());
    }
}
