//! Reward statistics of a set of lists: what `lpo data preview` shows per source.

use crate::RewardList;

/// Summary of the rewards of some lists.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RewardStats {
    /// Lists.
    pub lists: usize,
    /// Responses.
    pub responses: usize,
    /// Mean reward over all responses.
    pub mean: f64,
    /// Standard deviation over all responses (population).
    pub sd: f64,
    /// Mean over lists of (highest - lowest reward).
    pub mean_range: f64,
    /// Share of response pairs within a list whose rewards are equal.
    pub tie_share: f64,
    /// Lists whose rewards all tie.
    pub all_tied: usize,
}

impl RewardStats {
    /// Computes the statistics of `lists`.
    pub fn of<'a>(lists: impl IntoIterator<Item = &'a RewardList>) -> RewardStats {
        let mut s = RewardStats::default();
        let (mut sum, mut sum_sq, mut range, mut pairs, mut ties) = (0.0, 0.0, 0.0, 0usize, 0usize);
        for list in lists {
            s.lists += 1;
            let rewards: Vec<f64> = list.responses.iter().map(|r| r.reward).collect();
            s.responses += rewards.len();
            sum += rewards.iter().sum::<f64>();
            sum_sq += rewards.iter().map(|r| r * r).sum::<f64>();
            let hi = rewards.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lo = rewards.iter().copied().fold(f64::INFINITY, f64::min);
            range += hi - lo;
            for i in 0..rewards.len() {
                for j in i + 1..rewards.len() {
                    pairs += 1;
                    ties += usize::from(rewards[i] == rewards[j]);
                }
            }
            s.all_tied += usize::from(list.all_tied());
        }
        if s.responses > 0 {
            let n = s.responses as f64;
            s.mean = sum / n;
            s.sd = (sum_sq / n - s.mean * s.mean).max(0.0).sqrt();
        }
        if s.lists > 0 {
            s.mean_range = range / s.lists as f64;
        }
        if pairs > 0 {
            s.tie_share = ties as f64 / pairs as f64;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scored;

    fn list(rewards: &[f64]) -> RewardList {
        RewardList {
            context: Vec::new(),
            prompt: String::new(),
            responses: rewards
                .iter()
                .map(|&reward| Scored {
                    text: String::new(),
                    reward,
                })
                .collect(),
            ..RewardList::default()
        }
    }

    #[test]
    fn hand_computed_statistics() {
        let lists = [list(&[1.0, 1.0, 4.0]), list(&[2.0, 2.0])];
        let s = RewardStats::of(&lists);
        assert_eq!((s.lists, s.responses, s.all_tied), (2, 5, 1));
        assert!((s.mean - 2.0).abs() < 1e-12); // 10 / 5
                                               // Population variance: (1+1+4+0+0)/5 = 1.2
        assert!((s.sd - 1.2f64.sqrt()).abs() < 1e-12);
        assert!((s.mean_range - 1.5).abs() < 1e-12);
        // Pairs: 3 in the first list (1 tie), 1 in the second (tie): 2/4.
        assert!((s.tie_share - 0.5).abs() < 1e-12);
        assert_eq!(RewardStats::of(&[]), RewardStats::default());
    }
}
