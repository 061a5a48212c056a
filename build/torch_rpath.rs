//! Shared build script for every package that links libtorch.
//!
//! torch-sys (`links = "tch"`) exports the directory it linked libtorch from as
//! `DEP_TCH_LIBTORCH_LIB`. Baking that directory into the binary's run path
//! means `lpo` and the test binaries start without `LD_LIBRARY_PATH`. The
//! wheel's own libraries carry `RPATH $ORIGIN/../../nvidia/...`, so the CUDA
//! runtime pieces installed beside `torch/` are found without a second entry.
//! It also records the libtorch version (from its CMake package file) and path
//! for `lpo doctor`. (lpo-torch's build script includes it as a module.)
use std::path::Path;

pub fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    if !lib.is_empty() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    let version_file = Path::new(&lib).join("../share/cmake/Torch/TorchConfigVersion.cmake");
    println!("cargo:rerun-if-changed={}", version_file.display());
    let version = std::fs::read_to_string(&version_file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                line.strip_prefix("set(PACKAGE_VERSION \"")?
                    .split('"')
                    .next()
                    .map(str::to_string)
            })
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=LPO_LIBTORCH_LIB={lib}");
    println!("cargo:rustc-env=LPO_LIBTORCH_VERSION={version}");
}
