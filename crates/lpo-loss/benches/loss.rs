//! Loss forward + backward throughput for B = 64 lists of K = 8 (every loss
//! kind as configured by default, plus LPO with its anchor and the supervised term).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lpo_loss::{compute, LossInput, LossParams};
use lpo_recipe::LossConfig;
use tch::{Kind, Tensor};

fn bench(c: &mut Criterion) {
    tch::manual_seed(0);
    let (b, k) = (64, 8);
    let lr = Tensor::randn([b, k], (Kind::Float, tch::Device::Cpu)) * 5.0 - 40.0;
    let r = Tensor::randint(11, [b, k], (Kind::Float, tch::Device::Cpu));
    let mask = Tensor::ones([b, k], (Kind::Bool, tch::Device::Cpu));
    let tokens = Tensor::randint_low(1, 200, [b, k], (Kind::Int64, tch::Device::Cpu));
    let mut group = c.benchmark_group("loss_fwd_bwd_b64_k8");
    group.throughput(Throughput::Elements(b as u64));
    let mut cases: Vec<(String, LossParams)> = lpo_recipe::LOSSES
        .iter()
        .map(|spec| spec.kind)
        .map(|kind| {
            let config = LossConfig {
                kind: kind.into(),
                ..LossConfig::default()
            };
            (
                kind.as_str().to_string(),
                LossParams::at_step(&config, 0, 1),
            )
        })
        .collect();
    let lpo = cases[0].1.clone();
    cases.push((
        "lpo+anchor+sft".to_string(),
        LossParams {
            gamma: 0.1,
            sft_weight: 0.5,
            ..lpo
        },
    ));
    for (name, params) in &cases {
        group.bench_function(name.as_str(), |bench| {
            bench.iter(|| {
                let lp = (&lr + Tensor::randn([b, k], (Kind::Float, tch::Device::Cpu)))
                    .set_requires_grad(true);
                let out = compute(
                    params,
                    &LossInput {
                        policy_logps: &lp,
                        reference_logps: &lr,
                        rewards: &r,
                        mask: &mask,
                        token_counts: Some(&tokens),
                    },
                );
                out.loss.backward();
                lp.grad()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
