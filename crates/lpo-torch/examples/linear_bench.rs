//! oneDNN's inner product ([`lpo_torch::linear::onednn_linear`]) against
//! `at::linear` (MKL's sgemm) on one CPU thread: forward + backward (input
//! and weight gradients) of `x: [M, in]` times `w: [out, in]` transposed, for
//! the layer shapes of the tiny and small presets and a range of row counts
//! M. Prints µs per pass (wall clock, one thread), the median of
//! interleaved repeats, and the
//! ratio (> 1: oneDNN faster); what `lpo_model`'s choice of kernel rests on.
//!
//!   cargo run --release -p lpo-torch --example linear_bench [-- REPEATS]

use std::time::Instant;

use tch::{Device, Kind, Tensor};

fn pass(x: &Tensor, w: &Tensor, dy: &Tensor, onednn: bool) -> f64 {
    let start = Instant::now();
    let y = match onednn {
        true => lpo_torch::linear::onednn_linear(x, w).expect("oneDNN linear"),
        false => x.linear::<Tensor>(w, None),
    };
    (y * dy).sum(Kind::Float).backward();
    start.elapsed().as_secs_f64() * 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !lpo_torch::linear::onednn_available() {
        eprintln!("this libtorch has no oneDNN linear");
        std::process::exit(1);
    }
    tch::set_num_threads(1);
    let repeats: usize = std::env::args()
        .nth(1)
        .map_or(20, |s| s.parse().expect("REPEATS is a number"));
    println!("products: at::linear vs oneDNN, one thread, µs per forward + backward");
    let shapes = [
        ("tiny q/o", 128, 128),
        ("tiny k/v", 128, 64),
        ("tiny gate/up", 128, 352),
        ("tiny down", 352, 128),
        ("small q/o", 256, 256),
        ("small gate/up", 256, 704),
        ("small down", 704, 256),
    ];
    for (name, input, output) in shapes {
        for rows in [64, 128, 256, 512, 1024, 2048, 4096] {
            let opts = (Kind::Float, Device::Cpu);
            let x = Tensor::randn([rows, input], opts).set_requires_grad(true);
            let w = (Tensor::randn([output, input], opts) * 0.05).set_requires_grad(true);
            let dy = Tensor::randn([rows, output], opts);
            let (mut aten, mut onednn) = (Vec::new(), Vec::new());
            for i in 0..repeats + 3 {
                let (a, o) = (pass(&x, &w, &dy, false), pass(&x, &w, &dy, true));
                if i >= 3 {
                    aten.push(a);
                    onednn.push(o);
                }
            }
            let (a, o) = (median(aten), median(onednn));
            let macs = rows * input * output;
            println!(
                "RESULT {name:<14} in={input:<4} out={output:<4} M={rows:<5} MACs=2^{:.1}: at::linear {a:8.1} oneDNN {o:8.1} ratio {:.2}",
                (macs as f64).log2(),
                a / o
            );
        }
    }
}
