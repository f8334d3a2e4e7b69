//! Each task learns to a stated threshold within a CI-sized budget, on every backend and
//! precision; and the two CPU backends compute the same training run.

use bohp::device::{Backend, Precision};
use bohp::single::tasks::Measures;

use crate::backend_matrix;
use crate::common::{budget_config, frozen_mean, train_in_memory};

/// Trains the shipped `name` config for `episodes` updates (the last 200 frozen) and checks
/// the frozen-phase `measure` against `threshold`.
fn learns(
    name: &str,
    episodes: usize,
    measure: fn(&Measures) -> f64,
    threshold: f64,
    backend: Backend,
    precision: Precision,
) {
    let rows = train_in_memory(budget_config(name, episodes, 200, backend, precision));
    let frozen = frozen_mean(&rows);
    let value = measure(&frozen);
    assert!(
        value < threshold,
        "{name} on {backend} {precision}: frozen-phase value {value} not below {threshold} ({frozen:?})"
    );
}

/// Completion: Manhattan error at step 2 below 0.6 (chance: about 7) after 1500 updates.
fn completion_learns(backend: Backend, precision: Precision) {
    learns("completion", 1500, |m| m.error, 0.6, backend, precision);
}

/// One-shot: cross-entropy below 0.08 (chance: ln 2 = 0.69) after 1500 updates of 64 episodes.
fn one_shot_learns(backend: Backend, precision: Precision) {
    learns("one-shot", 1500, |m| m.loss, 0.08, backend, precision);
}

/// Reversal: cross-entropy below 0.15 (chance: 0.69) after 1500 updates of 64 episodes.
fn reversal_learns(backend: Backend, precision: Precision) {
    learns("reversal", 1500, |m| m.loss, 0.15, backend, precision);
}

backend_matrix! {
    completion => completion_learns,
    one_shot => one_shot_learns,
    reversal => reversal_learns,
}

/// ndarray and flex run the same f64 training to rounding: equal losses for 30 updates.
#[test]
fn ndarray_and_flex_agree_in_f64() {
    for name in ["completion", "one-shot", "reversal"] {
        let a = train_in_memory(budget_config(name, 30, 0, Backend::Ndarray, Precision::F64));
        let b = train_in_memory(budget_config(name, 30, 0, Backend::Flex, Precision::F64));
        for (x, y) in a.iter().zip(&b) {
            let tol = 1e-9 * x.loss.abs().max(1.0);
            assert!(
                (x.loss - y.loss).abs() < tol,
                "{name} episode {}: {} vs {}",
                x.episode,
                x.loss,
                y.loss
            );
        }
    }
}
