//! Sequence log-probabilities of K responses per prompt, forward + backward:
//! the prompt computed once and shared through the KV cache
//! (`response_logps`) against every (prompt, response) pair as its own full
//! sequence. Compare the two times: the ratio is the saving of prefix sharing.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lpo_model::logps::{response_logps, right_pad};
use lpo_model::{Config, Mistral};
use lpo_recipe::SizePreset;
use tch::{nn, Device, Kind, Tensor};

const B: usize = 8;
const K: usize = 8;
const PROMPT: usize = 96;
const RESPONSE: usize = 16;

fn bench(c: &mut Criterion) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Mistral::new(&vs.root(), &Config::from_dims(&SizePreset::Tiny.dims()));
    let token = |i: usize| 4 + (i * 7919 % 50) as i64;
    let prompts: Vec<Vec<i64>> = (0..B)
        .map(|b| (0..PROMPT).map(|t| token(b * 131 + t)).collect())
        .collect();
    let responses: Vec<Vec<i64>> = (0..B * K)
        .map(|r| (0..RESPONSE).map(|t| token(r * 17 + t + 5)).collect())
        .collect();
    let mut group = c.benchmark_group(format!(
        "logps_fwd_bwd_tiny_b{B}_k{K}_prompt{PROMPT}_response{RESPONSE}"
    ));
    group.throughput(Throughput::Elements((B * K) as u64));
    group.sample_size(20);
    group.bench_function("shared_prefix", |bench| {
        bench.iter(|| {
            let out = response_logps(&model, &prompts, &responses, K, 0);
            out.sum.sum(Kind::Float).backward();
        })
    });
    group.bench_function("full_sequences", |bench| {
        bench.iter(|| {
            // Every pair as one sequence: prompt + response, K times per prompt.
            let rows: Vec<Vec<i64>> = responses
                .iter()
                .enumerate()
                .map(|(i, r)| prompts[i / K].iter().chain(r).copied().collect())
                .collect();
            let (tokens, valid) = right_pad(&rows, 0, Device::Cpu);
            let logp = model
                .forward(&tokens, &valid)
                .log_softmax(-1, Kind::Float)
                .narrow(1, PROMPT as i64 - 1, RESPONSE as i64)
                .gather(
                    2,
                    &tokens
                        .narrow(1, PROMPT as i64, RESPONSE as i64)
                        .unsqueeze(2),
                    false,
                );
            logp.sum(Kind::Float).backward();
            let _: &Tensor = &logp;
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
