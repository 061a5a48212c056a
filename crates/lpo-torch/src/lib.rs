//! libtorch runtime glue: finds the libtorch this binary runs on, loads its
//! CUDA backend when one is installed, and resolves the device a run uses.
//!
//! `lpo` links only `libtorch_cpu` (the linker drops `libtorch_cuda` as
//! unneeded). CUDA support registers itself when `libtorch_cuda.so` is loaded,
//! so [`load_cuda_backend`] `dlopen`s it before the first CUDA query; on a
//! machine without the CUDA libraries that load fails quietly and lpo runs on
//! the CPU.

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::OnceLock;

use anyhow::{bail, Result};

mod clock;
mod cuda_driver;
pub mod dist;
pub mod fused;
pub mod linear;
pub mod memory;
pub mod numerics;

pub use clock::process_cpu_seconds;

/// Directory libtorch was linked from at build time (also the binary's run path).
pub const LIBTORCH_LIB_DIR: &str = env!("LPO_LIBTORCH_LIB");

/// The libtorch release the build linked against, read from its headers.
pub const LIBTORCH_VERSION: &str = env!("LPO_LIBTORCH_VERSION");

/// Outcome of trying to load libtorch's CUDA backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaBackend {
    /// `libtorch_cuda.so` is loaded; CUDA devices can be used if present.
    Loaded,
    /// It could not be loaded; the reason is the dynamic loader's message.
    Unavailable(String),
}

/// Loads `libtorch_cuda.so` once per process (later calls return the first result).
///
/// Must run before any CUDA query: libtorch caches its CUDA hooks on first use.
pub fn load_cuda_backend() -> &'static CudaBackend {
    static BACKEND: OnceLock<CudaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let candidates = [
            format!("{LIBTORCH_LIB_DIR}/libtorch_cuda.so"),
            "libtorch_cuda.so".to_string(),
        ];
        let mut last_error = String::from("libtorch_cuda.so not found");
        for path in candidates {
            let c_path = CString::new(path).expect("library path has no NUL");
            // SAFETY: dlopen with a valid C string; the handle is kept for the
            // life of the process on purpose (it is never dlclosed).
            let handle =
                unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if !handle.is_null() {
                return CudaBackend::Loaded;
            }
            last_error = dl_error();
        }
        CudaBackend::Unavailable(last_error)
    })
}

fn dl_error() -> String {
    // SAFETY: dlerror returns a thread-local C string or null.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        return "unknown dynamic loader error".into();
    }
    // SAFETY: non-null dlerror result is a valid NUL-terminated string.
    unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned()
}

/// Where a run's tensors live, as a recipe asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// CUDA device 0 when available, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device 0; an error when there is none.
    Cuda,
}

/// Resolves a device request to a `tch::Device`, loading the CUDA backend if needed.
pub fn resolve_device(request: DeviceRequest) -> Result<tch::Device> {
    match request {
        DeviceRequest::Cpu => Ok(tch::Device::Cpu),
        DeviceRequest::Auto => Ok(if cuda_device_count() > 0 {
            tch::Device::Cuda(0)
        } else {
            tch::Device::Cpu
        }),
        DeviceRequest::Cuda => {
            if cuda_device_count() > 0 {
                return Ok(tch::Device::Cuda(0));
            }
            match load_cuda_backend() {
                CudaBackend::Loaded => bail!("train.device = \"cuda\" but no CUDA device is visible"),
                CudaBackend::Unavailable(why) => bail!(
                    "train.device = \"cuda\" but libtorch's CUDA backend could not be loaded ({why}); \
                     install it with `scripts/setup-libtorch.sh --cuda`"
                ),
            }
        }
    }
}

/// Number of CUDA devices libtorch can use (0 without the CUDA backend).
pub fn cuda_device_count() -> usize {
    match load_cuda_backend() {
        CudaBackend::Loaded => usize::try_from(tch::Cuda::device_count()).unwrap_or(0),
        CudaBackend::Unavailable(_) => 0,
    }
}

/// One CUDA device as the driver describes it.
#[derive(Debug, Clone)]
pub struct CudaDeviceInfo {
    /// Ordinal used by libtorch (`cuda:N`).
    pub index: usize,
    /// Marketing name, e.g. "NVIDIA H200".
    pub name: String,
    /// Total device memory in bytes.
    pub total_memory: u64,
}

/// Names and memory of the CUDA devices, read from the driver (`libcuda.so.1`).
pub fn cuda_devices() -> Vec<CudaDeviceInfo> {
    let count = cuda_device_count();
    (0..count)
        .map(|index| {
            let (name, total_memory) =
                cuda_driver::describe(index).unwrap_or_else(|| ("unknown CUDA device".into(), 0));
            CudaDeviceInfo {
                index,
                name,
                total_memory,
            }
        })
        .collect()
}

/// Path of the `libtorch_cpu.so` actually mapped into this process.
pub fn loaded_libtorch_path() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so"))
        .map(str::to_string)
}

/// Runs a tiny forward and backward pass to prove libtorch works on `device`.
pub fn smoke_test(device: tch::Device) -> Result<()> {
    let x = tch::Tensor::f_from_slice(&[1.0f32, 2.0, 3.0])?
        .f_to_device(device)?
        .set_requires_grad(true);
    let y = x.f_mul(&x)?.f_sum(tch::Kind::Float)?;
    y.f_backward()?;
    let grad: Vec<f32> = Vec::<f32>::try_from(x.grad().to_device(tch::Device::Cpu))?;
    if grad != [2.0, 4.0, 6.0] {
        bail!("libtorch computed a wrong gradient: {grad:?}");
    }
    Ok(())
}

pub(crate) type CuResult = c_int;
pub(crate) type CuDevice = c_int;
pub(crate) type CuGetName = unsafe extern "C" fn(*mut c_char, c_int, CuDevice) -> CuResult;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backward_pass_runs_on_cpu() {
        smoke_test(tch::Device::Cpu).unwrap();
    }

    #[test]
    fn matmul_gradient_matches_closed_form() {
        // d/dA sum(A @ B) = 1 @ B^T: every row equals the row sums of B.
        let a = tch::Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0])
            .view([2, 2])
            .set_requires_grad(true);
        let b = tch::Tensor::from_slice(&[5.0f64, 6.0, 7.0, 8.0]).view([2, 2]);
        a.matmul(&b).sum(tch::Kind::Double).backward();
        let grad = Vec::<f64>::try_from(a.grad().view([-1])).unwrap();
        assert_eq!(grad, vec![11.0, 15.0, 11.0, 15.0]);
    }

    #[test]
    fn version_and_paths_are_known() {
        assert!(
            LIBTORCH_VERSION.starts_with("2.11"),
            "linked libtorch {LIBTORCH_VERSION}"
        );
        let loaded = loaded_libtorch_path().expect("libtorch_cpu.so is mapped");
        assert!(loaded.contains("libtorch_cpu.so"));
    }

    #[test]
    fn cpu_request_never_needs_cuda() {
        assert_eq!(
            resolve_device(DeviceRequest::Cpu).unwrap(),
            tch::Device::Cpu
        );
    }
}
