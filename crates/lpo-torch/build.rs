//! The shared libtorch build script (run path, version), plus src/fused.cpp,
//! src/linear.cpp and src/dist.cpp: libtorch kernels and c10d's process group,
//! which the tch crate has no bindings for,
//! compiled against the headers of the libtorch torch-sys linked.
use std::path::Path;

#[path = "../../build/torch_rpath.rs"]
mod torch_rpath;

fn main() {
    torch_rpath::main();
    println!("cargo:rerun-if-changed=src/fused.cpp");
    println!("cargo:rerun-if-changed=src/linear.cpp");
    println!("cargo:rerun-if-changed=src/dist.cpp");
    println!("cargo:rerun-if-changed=src/gloo_decl");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib =
        std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys exports its libtorch lib dir");
    let include = Path::new(&lib).join("../include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    cc::Build::new()
        .cpp(true)
        .file("src/fused.cpp")
        .file("src/linear.cpp")
        .file("src/dist.cpp")
        .include(&include)
        .include("src/gloo_decl")
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .warnings(false)
        .compile("lpo_fused");
}
