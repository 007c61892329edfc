//! Statistics the comparing benchmarks share: a set of timed samples summarized as median,
//! p99 (where there are enough samples for one), min–max spread and count.
#![allow(dead_code)] // Each bench uses a different part.

use std::time::{Duration, Instant};

/// A summary of repeated measurements of one figure.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    pub median: f64,
    /// Only with 20 samples or more: fewer do not have a 99th percentile worth the name.
    pub p99: Option<f64>,
    pub spread: Spread,
    pub n: usize,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Spread {
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Summary {
        assert!(!samples.is_empty(), "a figure needs at least one sample");
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Summary {
            median: quantile(&sorted, 0.5),
            p99: (sorted.len() >= 20).then(|| quantile(&sorted, 0.99)),
            spread: Spread { min: sorted[0], max: sorted[sorted.len() - 1] },
            n: sorted.len(),
        }
    }
}

/// The `q` quantile of sorted samples (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Runs `body` `count` times and returns each run's milliseconds.
pub fn timed(count: usize, mut body: impl FnMut(usize)) -> Vec<f64> {
    (0..count)
        .map(|k| {
            let start = Instant::now();
            body(k);
            ms(start.elapsed())
        })
        .collect()
}
