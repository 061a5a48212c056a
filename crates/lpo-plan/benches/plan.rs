//! Planning throughput: a 100,000-run grid (10 x 10 x 10 x 10 x 10 seeds).

use criterion::{criterion_group, criterion_main, Criterion};
use lpo_recipe::Recipe;
use toml::Value;

fn grid_of_100k() -> Recipe {
    let mut r = Recipe::default();
    let ints = |n: i64| (1..=n).map(Value::Integer).collect::<Vec<_>>();
    r.sweep.grid.insert("train.steps".into(), ints(10));
    r.sweep.grid.insert(
        "train.learning_rate".into(),
        (1..=10).map(|i| Value::Float(i as f64 * 1e-5)).collect(),
    );
    r.sweep.grid.insert(
        "loss.beta".into(),
        (1..=10).map(|i| Value::Float(i as f64 / 20.0)).collect(),
    );
    r.sweep.grid.insert("eval.prompts".into(), ints(10));
    r.sweep.seeds = (0..10).collect();
    r
}

fn bench(c: &mut Criterion) {
    let recipe = grid_of_100k();
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    group.bench_function("grid_100k_runs", |b| {
        b.iter(|| {
            let plan = lpo_plan::plan(&recipe).unwrap();
            assert_eq!(plan.runs.len(), 100_000);
            plan
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
