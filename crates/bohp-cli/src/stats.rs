//! Summary statistics across seeds: median and interquartile range.

use serde::{Deserialize, Serialize};

/// The `q`-quantile (0 ≤ q ≤ 1) of `values`, interpolating linearly between order statistics
/// (NumPy's default, Hyndman & Fan type 7): the value at rank `q · (n - 1)`.
///
/// # Panics
///
/// Panics if `values` is empty or holds a NaN.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    assert!(!values.is_empty(), "quantile of no values");
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("no NaN in statistics"));
    let rank = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = rank.floor() as usize;
    let above = rank.ceil() as usize;
    sorted[below] + (rank - below as f64) * (sorted[above] - sorted[below])
}

/// Median and quartiles of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The first quartile.
    pub q25: f64,
    /// The third quartile.
    pub q75: f64,
}

impl Spread {
    /// The spread of `values` (see [`quantile`]).
    pub fn of(values: &[f64]) -> Spread {
        Spread {
            median: quantile(values, 0.5),
            q25: quantile(values, 0.25),
            q75: quantile(values, 0.75),
        }
    }
}

/// Per-episode spreads across seeds: `series[s][e]` is seed `s`'s value at episode `e`; all
/// series must have the same length.
pub fn per_episode(series: &[Vec<f64>]) -> Vec<Spread> {
    let len = series.first().map_or(0, Vec::len);
    assert!(
        series.iter().all(|s| s.len() == len),
        "series of equal length"
    );
    let mut column = vec![0.0; series.len()];
    (0..len)
        .map(|e| {
            for (c, s) in column.iter_mut().zip(series) {
                *c = s[e];
            }
            Spread::of(&column)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_of_known_samples() {
        // 1..=5: ranks 0..4; q25 at rank 1 -> 2, median at rank 2 -> 3, q75 at rank 3 -> 4.
        let s = Spread::of(&[5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!((s.q25, s.median, s.q75), (2.0, 3.0, 4.0));
        // 1..=4: q25 at rank 0.75 -> 1 + 0.75 = 1.75; median at 1.5 -> 2.5; q75 at 2.25 -> 3.25.
        let s = Spread::of(&[4.0, 3.0, 2.0, 1.0]);
        assert_eq!((s.q25, s.median, s.q75), (1.75, 2.5, 3.25));
        // One value: every quantile is that value.
        let s = Spread::of(&[7.5]);
        assert_eq!((s.q25, s.median, s.q75), (7.5, 7.5, 7.5));
        // 20 seeds 0, 1, ..., 19: rank 9.5 -> 9.5; q25 at 4.75; q75 at 14.25.
        let v: Vec<f64> = (0..20).map(f64::from).collect();
        let s = Spread::of(&v);
        assert_eq!((s.q25, s.median, s.q75), (4.75, 9.5, 14.25));
        assert_eq!(quantile(&v, 0.0), 0.0);
        assert_eq!(quantile(&v, 1.0), 19.0);
    }

    #[test]
    fn per_episode_spreads_take_each_episode_across_seeds() {
        let series = vec![vec![1.0, 10.0], vec![2.0, 30.0], vec![3.0, 20.0]];
        let s = per_episode(&series);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].median, 2.0);
        assert_eq!(s[1].median, 20.0);
        assert_eq!(s[1].q25, 15.0);
        assert_eq!(s[1].q75, 25.0);
    }
}
