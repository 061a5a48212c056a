//! Weighted sampling across data sources, deterministic per seed.

use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::Rng;

/// For each of `n` slots, the index of the source it draws from, with
/// probability proportional to `weights`. Weights must be positive and finite.
pub fn assign(weights: &[f64], n: usize, rng: &mut impl Rng) -> Vec<usize> {
    assert!(!weights.is_empty(), "a mix needs at least one source");
    if weights.len() == 1 {
        return vec![0; n];
    }
    let dist = WeightedIndex::new(weights).expect("weights are positive and finite");
    (0..n).map(|_| dist.sample(rng)).collect()
}

/// Splits `n` slots over sources in proportion to `weights` exactly
/// (largest remainder, ties to the earlier source): the same counts for
/// every seed, so stratified evaluation sets are comparable across seeds.
pub fn apportion(weights: &[f64], n: usize) -> Vec<usize> {
    let total: f64 = weights.iter().sum();
    let quotas: Vec<f64> = weights.iter().map(|w| w / total * n as f64).collect();
    let mut counts: Vec<usize> = quotas.iter().map(|q| q.floor() as usize).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        (quotas[b] - quotas[b].floor()).total_cmp(&(quotas[a] - quotas[a].floor()))
    });
    let missing = n - counts.iter().sum::<usize>();
    for &i in order.iter().take(missing) {
        counts[i] += 1;
    }
    counts
}

/// A seeded permutation of `0..n` (Fisher–Yates).
pub fn permutation(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_is_exact_and_proportional() {
        assert_eq!(apportion(&[1.0, 1.0], 10), [5, 5]);
        assert_eq!(apportion(&[2.0, 1.0], 10), [7, 3]); // 6.67, 3.33
        assert_eq!(apportion(&[1.0, 1.0, 1.0], 10), [4, 3, 3]);
        assert_eq!(apportion(&[1.0], 7), [7]);
        assert_eq!(apportion(&[1.0, 3.0], 0), [0, 0]);
    }
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn shares_follow_weights_and_seed() {
        let draw = |seed| assign(&[3.0, 1.0], 20_000, &mut StdRng::seed_from_u64(seed));
        let a = draw(4);
        assert_eq!(a, draw(4));
        assert_ne!(a, draw(5));
        let share = a.iter().filter(|&&i| i == 0).count() as f64 / a.len() as f64;
        // Binomial sd at n = 20000, p = 0.75 is 0.003; allow 5 sd.
        assert!((share - 0.75).abs() < 0.015, "share {share}");
    }

    #[test]
    fn single_source_and_permutations() {
        assert_eq!(assign(&[2.0], 3, &mut StdRng::seed_from_u64(0)), [0, 0, 0]);
        let mut p = permutation(50, &mut StdRng::seed_from_u64(1));
        assert_ne!(p, (0..50).collect::<Vec<_>>());
        p.sort();
        assert_eq!(p, (0..50).collect::<Vec<_>>());
    }
}
