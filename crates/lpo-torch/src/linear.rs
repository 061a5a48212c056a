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

/// Whether [`onednn_linear`] can be the faster choice for `x` and `w`: f32
/// tensors on the CPU, oneDNN present, and a CPU with AVX-512 (where its
/// advantage over MKL was measured; elsewhere `at::linear` stays). Whether
/// it is depends on the product's size too: [`onednn_min_macs`].
pub fn onednn_applies(x: &Tensor, w: &Tensor) -> bool {
    x.device() == Device::Cpu
        && w.device() == Device::Cpu
        && x.kind() == Kind::Float
        && w.kind() == Kind::Float
        && onednn_preferred()
}

/// Whether this machine multiplies f32 CPU tensors on oneDNN: present, the
/// CPU has AVX-512, and neither reproducible mode nor `LPO_ONEDNN=0` turned
/// it off ([`crate::numerics`]).
pub fn onednn_preferred() -> bool {
    avx512()
        && onednn_available()
        && !crate::numerics::reproducible()
        && !crate::numerics::onednn_disabled()
}

/// The fewest multiply-adds of a product that [`onednn_linear`] multiplies
/// faster than `at::linear` on this CPU, forward and backward on one thread
/// (`cargo run --release -p lpo-torch --example linear_bench`): 2^20 on AMD
/// Zen 5 and later, which run AVX-512 at full width where MKL's kernels for
/// AMD use AVX2 (oneDNN about twice as fast from there up; below, its fixed
/// ~10 µs a call loses), and 2^26 elsewhere: on Zen 4 (AVX-512 on 256-bit
/// units) oneDNN is 0.6-0.95x MKL's speed below 2^24 multiply-adds and
/// 1.0-1.5x from 2^26 up, and Intel's MKL uses AVX-512 itself
/// (`docs/performance.md`).
pub fn onednn_min_macs() -> i64 {
    match amd_family().is_some_and(|family| family >= ZEN5_FAMILY) {
        true => 1 << 20,
        false => 1 << 26,
    }
}

/// AMD's CPU family of Zen 5 (Zen 4 is 0x19).
const ZEN5_FAMILY: u32 = 0x1A;

/// This CPU's family when it is an AMD one (CPUID leaf 1's base family, plus
/// the extended family when the base is 0xF).
#[cfg(target_arch = "x86_64")]
fn amd_family() -> Option<u32> {
    use std::arch::x86_64::__cpuid;
    static FAMILY: OnceLock<Option<u32>> = OnceLock::new();
    *FAMILY.get_or_init(|| {
        // SAFETY: CPUID leaves 0 and 1 exist on every x86_64 CPU.
        #[allow(unused_unsafe)]
        let (vendor, signature) = unsafe { (__cpuid(0), __cpuid(1).eax) };
        let name: Vec<u8> = [vendor.ebx, vendor.edx, vendor.ecx]
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .collect();
        (name == b"AuthenticAMD").then(|| family_of(signature))
    })
}

/// The family in a CPUID leaf 1 signature (`eax`): the base family, plus
/// the extended family when the base is 0xF.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn family_of(signature: u32) -> u32 {
    let base = (signature >> 8) & 0xF;
    match base {
        0xF => base + ((signature >> 20) & 0xFF),
        _ => base,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn amd_family() -> Option<u32> {
    None
}

/// Which kernels multiply f32 linear layers on the CPU in this process, and
/// why: what `lpo doctor` and the CPU benchmark print.
pub fn product_path() -> String {
    let aten = "at::linear (MKL sgemm)";
    if onednn_preferred() {
        return format!(
            "oneDNN inner product for f32 products of >= 2^{} multiply-adds (AVX-512), {aten} below",
            onednn_min_macs().trailing_zeros()
        );
    }
    let why = if crate::numerics::reproducible() {
        "reproducible mode"
    } else if crate::numerics::onednn_disabled() {
        "LPO_ONEDNN=0"
    } else if !avx512() {
        "no AVX-512"
    } else {
        "oneDNN not in this libtorch"
    };
    format!("{aten} ({why})")
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

    /// Fixed values `(x [m, k], w [n, k], dy [m, n])`, each from `(a, b, c)`:
    /// element i is `((i * a % b) - c) / c`.
    fn operands(m: usize, k: usize, n: usize) -> [Vec<f64>; 3] {
        let fill = |len: usize, (a, b, c): (usize, usize, usize)| -> Vec<f64> {
            (0..len)
                .map(|i| ((i * a % b) as f64 - c as f64) / c as f64)
                .collect()
        };
        [
            fill(m * k, (7, 11, 5)),
            fill(n * k, (5, 13, 6)),
            fill(m * n, (3, 7, 3)),
        ]
    }

    fn float(values: &[f64], shape: &[i64]) -> Tensor {
        Tensor::from_slice(values).to_kind(Kind::Float).view(shape)
    }

    #[test]
    fn products_and_gradients_equal_a_float64_reference() {
        if !onednn_available() {
            eprintln!("skipped: this libtorch has no oneDNN");
            return;
        }
        // A 3-d input [2, 3, 5] (M = 6 rows), 4 outputs.
        let (m, k, n) = (6, 5, 4);
        let [xs, ws, dys] = operands(m, k, n);
        let x = float(&xs, &[2, 3, 5]).set_requires_grad(true);
        let w = float(&ws, &[4, 5]).set_requires_grad(true);
        let dy = float(&dys, &[2, 3, 4]);
        assert!(onednn_applies(&x, &w) || !onednn_preferred());
        assert!([1 << 20, 1 << 26].contains(&onednn_min_macs()));
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
    fn both_weight_gradient_orders_with_a_frozen_input_match_the_reference() {
        if !onednn_available() {
            return;
        }
        // in < out (dw computed transposed) and in > out; x needs no gradient.
        for (m, k, n) in [(5, 3, 7), (5, 7, 3)] {
            let [xs, ws, dys] = operands(m, k, n);
            let (mi, ki, ni) = (m as i64, k as i64, n as i64);
            let x = float(&xs, &[mi, ki]);
            let w = float(&ws, &[ni, ki]).set_requires_grad(true);
            let dy = float(&dys, &[mi, ni]);
            (onednn_linear(&x, &w).unwrap() * &dy)
                .sum(Kind::Float)
                .backward();
            let [_, _, dw_ref] = reference(&xs, &ws, &dys, m, k, n);
            assert_close(&values(&w.grad()), &dw_ref, "dw");
        }
    }

    #[test]
    fn cpu_families_decode_as_amd_and_intel_document_them() {
        // EPYC 9004 (Zen 4): family 0x19; EPYC 9005 (Zen 5): 0x1A; Xeon
        // Scalable (Skylake-SP): family 6, no extended family.
        assert_eq!(family_of(0x00A1_0F11), 0x19);
        assert_eq!(family_of(0x00B0_0F21), ZEN5_FAMILY);
        assert_eq!(family_of(0x0005_0654), 6);
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
