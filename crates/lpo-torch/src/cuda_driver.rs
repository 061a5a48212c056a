//! Device names and memory from the CUDA driver API (`libcuda.so.1`).
//!
//! tch exposes device counts but not names or memory sizes; the driver API
//! functions used here are stable C entry points.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::OnceLock;

use crate::{CuDevice, CuGetName, CuResult};

type CuInit = unsafe extern "C" fn(c_uint) -> CuResult;
type CuDeviceGet = unsafe extern "C" fn(*mut CuDevice, c_int) -> CuResult;
type CuTotalMem = unsafe extern "C" fn(*mut usize, CuDevice) -> CuResult;
type CuMemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> CuResult;

struct Driver {
    device_get: CuDeviceGet,
    get_name: CuGetName,
    total_mem: CuTotalMem,
    mem_get_info: Option<CuMemGetInfo>,
}

fn driver() -> Option<&'static Driver> {
    static DRIVER: OnceLock<Option<Driver>> = OnceLock::new();
    DRIVER
        .get_or_init(|| {
            let name = CString::new("libcuda.so.1").ok()?;
            // SAFETY: plain dlopen/dlsym; the handle stays open for the process.
            unsafe {
                let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
                if handle.is_null() {
                    return None;
                }
                let init: CuInit =
                    std::mem::transmute::<*mut c_void, CuInit>(symbol(handle, "cuInit")?);
                if init(0) != 0 {
                    return None;
                }
                Some(Driver {
                    device_get: std::mem::transmute::<*mut c_void, CuDeviceGet>(symbol(
                        handle,
                        "cuDeviceGet",
                    )?),
                    get_name: std::mem::transmute::<*mut c_void, CuGetName>(symbol(
                        handle,
                        "cuDeviceGetName",
                    )?),
                    total_mem: std::mem::transmute::<*mut c_void, CuTotalMem>(symbol(
                        handle,
                        "cuDeviceTotalMem_v2",
                    )?),
                    mem_get_info: symbol(handle, "cuMemGetInfo_v2")
                        .map(|p| std::mem::transmute::<*mut c_void, CuMemGetInfo>(p)),
                })
            }
        })
        .as_ref()
}

unsafe fn symbol(handle: *mut c_void, name: &str) -> Option<*mut c_void> {
    let c_name = CString::new(name).ok()?;
    let ptr = libc::dlsym(handle, c_name.as_ptr());
    (!ptr.is_null()).then_some(ptr)
}

/// Name and total memory (bytes) of CUDA device `index`, if the driver answers.
pub(crate) fn describe(index: usize) -> Option<(String, u64)> {
    let driver = driver()?;
    let mut device: CuDevice = 0;
    let mut buffer = [0 as c_char; 256];
    let mut bytes: usize = 0;
    // SAFETY: the driver functions receive valid out-pointers and buffer sizes.
    unsafe {
        if (driver.device_get)(&mut device, c_int::try_from(index).ok()?) != 0 {
            return None;
        }
        if (driver.get_name)(buffer.as_mut_ptr(), buffer.len() as c_int, device) != 0 {
            return None;
        }
        if (driver.total_mem)(&mut bytes, device) != 0 {
            return None;
        }
        Some((
            CStr::from_ptr(buffer.as_ptr())
                .to_string_lossy()
                .into_owned(),
            bytes as u64,
        ))
    }
}

/// Bytes in use on the device of the calling thread's current context (the
/// one libtorch made current), as the driver counts them: everything
/// allocated on the device, the caching allocator's reserve included.
pub(crate) fn memory_in_use() -> Option<u64> {
    let get = driver()?.mem_get_info?;
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: valid out-pointers; fails (non-zero) without a current context.
    unsafe {
        if get(&mut free, &mut total) != 0 {
            return None;
        }
    }
    Some(total.saturating_sub(free) as u64)
}
