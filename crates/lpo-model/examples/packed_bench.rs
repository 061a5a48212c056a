//! Padded against packed lists (`Layout`), forward + backward of the
//! policy's response log-probabilities, one CPU thread: CPU ms per pass
//! (median of interleaved repeats, so both layouts see the same machine
//! load) and their ratio (> 1: packed faster), with each shape's padding
//! share.
//!
//!   cargo run --release -p lpo-model --example packed_bench [-- REPEATS [SIZES]]
//!
//! Shapes (B lists of K responses):
//!   arith  B = 8, K = 2: prompts "a+b=" (5-7 tokens), answers of 2-4
//!          (cpu_bench.sh's arithmetic pairs)
//!   chat   B = 4, K = 4: prompts 16-256 and responses 8-320 tokens drawn
//!          log-uniformly (the spread of chat preference data)
//!   long   B = 8, K = 2: prompt 128, responses 64 (no padding: the packed
//!          layout's overhead alone)

use lpo_model::logps::{response_logps_in, Layout};
use lpo_model::{Config, Mistral};
use lpo_recipe::SizePreset;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tch::{nn, Device, Kind};

struct Shape {
    name: &'static str,
    k: usize,
    prompts: Vec<Vec<i64>>,
    responses: Vec<Vec<i64>>,
}

fn tokens(rng: &mut StdRng, len: usize) -> Vec<i64> {
    (0..len).map(|_| rng.random_range(4..60)).collect()
}

fn log_uniform(rng: &mut StdRng, lo: f64, hi: f64) -> usize {
    (lo.ln() + rng.random::<f64>() * (hi.ln() - lo.ln())).exp() as usize
}

fn shapes() -> Vec<Shape> {
    let mut rng = StdRng::seed_from_u64(0);
    let mut shape = |name,
                     b: usize,
                     k: usize,
                     prompt: &dyn Fn(&mut StdRng) -> usize,
                     response: &dyn Fn(&mut StdRng) -> usize| {
        let prompts = (0..b)
            .map(|_| {
                let n = prompt(&mut rng);
                tokens(&mut rng, n)
            })
            .collect();
        let responses = (0..b * k)
            .map(|_| {
                let n = response(&mut rng);
                tokens(&mut rng, n)
            })
            .collect();
        Shape {
            name,
            k,
            prompts,
            responses,
        }
    };
    vec![
        shape("arith", 8, 2, &|r| r.random_range(5..=7), &|r| {
            r.random_range(2..=4)
        }),
        shape("chat", 4, 4, &|r| log_uniform(r, 16.0, 256.0), &|r| {
            log_uniform(r, 8.0, 320.0)
        }),
        shape("long", 8, 2, &|_| 128, &|_| 64),
    ]
}

/// The share of padding among the padded layout's token slots.
fn padding(s: &Shape) -> f64 {
    let width = |rows: &[Vec<i64>]| rows.iter().map(Vec::len).max().unwrap_or(0) * rows.len();
    let real: usize = s.prompts.iter().chain(&s.responses).map(Vec::len).sum();
    1.0 - real as f64 / (width(&s.prompts) + width(&s.responses)) as f64
}

fn pass(model: &Mistral, s: &Shape, layout: Layout) -> f64 {
    let start = lpo_torch::process_cpu_seconds();
    let out = response_logps_in(model, &s.prompts, &s.responses, s.k, 0, layout);
    out.sum.sum(Kind::Float).backward();
    lpo_torch::process_cpu_seconds() - start
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let repeats: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(21);
    let sizes = args
        .get(2)
        .map_or("tiny small base", String::as_str)
        .to_string();
    tch::set_num_threads(1);
    println!("products: {}", lpo_model::products());
    for size in sizes.split_whitespace() {
        let preset = match size {
            "tiny" => SizePreset::Tiny,
            "small" => SizePreset::Small,
            "base" => SizePreset::Base,
            other => panic!("unknown size {other} (tiny, small, base)"),
        };
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Mistral::new(&vs.root(), &Config::from_dims(&preset.dims()));
        for s in shapes() {
            let (mut padded, mut packed) = (Vec::new(), Vec::new());
            for i in 0..repeats + 2 {
                let (a, b) = (
                    pass(&model, &s, Layout::Padded),
                    pass(&model, &s, Layout::Packed),
                );
                if i >= 2 {
                    padded.push(a);
                    packed.push(b);
                }
            }
            let (a, b) = (median(padded), median(packed));
            println!(
                "RESULT {size} {}: padding {:.1}%, padded_ms={:.2} packed_ms={:.2} ratio={:.2}",
                s.name,
                100.0 * padding(&s),
                1e3 * a,
                1e3 * b,
                a / b
            );
        }
    }
}
