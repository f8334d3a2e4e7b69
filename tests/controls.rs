//! The paper's central claim: the same network with α fixed at 0 cannot solve the tasks that
//! the plastic network solves under the same budget.

use bohp::device::{Backend, Precision};
use bohp::single::config::Plasticity;

use crate::common::{budget_config, frozen_mean, train_in_memory};

fn plastic_and_not(
    name: &str,
    episodes: usize,
) -> (bohp::single::tasks::Measures, bohp::single::tasks::Measures) {
    let plastic = budget_config(name, episodes, 200, Backend::Flex, Precision::F32);
    let mut fixed = plastic.clone();
    fixed.model.plasticity = Plasticity::None;
    (
        frozen_mean(&train_in_memory(plastic)),
        frozen_mean(&train_in_memory(fixed)),
    )
}

#[test]
fn one_shot_needs_plasticity() {
    let (plastic, fixed) = plastic_and_not("one-shot", 1500);
    assert!(plastic.loss < 0.08, "plastic: {plastic:?}");
    // Chance is ln 2 = 0.693: without plasticity the label of a pattern cannot be known.
    assert!(fixed.loss > 0.65, "α = 0 must stay near chance: {fixed:?}");
    assert!(fixed.error > 0.45, "α = 0 must stay near chance: {fixed:?}");
}

#[test]
fn completion_needs_plasticity() {
    let (plastic, fixed) = plastic_and_not("completion", 1500);
    assert!(plastic.error < 0.6, "plastic: {plastic:?}");
    // Chance: the 7 bits not in the cue are unknown, Manhattan error 7.
    assert!(fixed.error > 6.5, "α = 0 must stay near chance: {fixed:?}");
}
