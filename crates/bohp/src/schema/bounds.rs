//! The upper bound of every size and count a config sets (docs/reliability.md lists them).
//!
//! A bound is far above anything that trains on one machine; it exists so that an absurd value
//! (a typo, an extra zero) is refused by name before the memory estimate, and so that sizes
//! multiplied together stay far from `usize`'s range. Values below a bound may still be
//! refused by the family's memory check ([`crate::memory`]).

use crate::error::{Error, Result};

/// One bound: the config field, the family it applies to and the largest value allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The field, as written in the config (`train.batch`).
    pub field: &'static str,
    /// The family whose configs have the field (`train.*`: every family that reads it).
    pub family: &'static str,
    /// The largest value allowed.
    pub most: usize,
}

const fn bound(field: &'static str, family: &'static str, most: usize) -> Bound {
    Bound {
        field,
        family,
        most,
    }
}

/// A billion updates, or episodes of the held-out measure.
const BILLION: usize = 1_000_000_000;
/// A million steps, items, bits.
const MILLION: usize = 1_000_000;

/// Every bound, by family.
pub const BOUNDS: &[Bound] = &[
    bound("train.episodes", "every", BILLION),
    bound("train.batch", "every", 65_536),
    bound("train.checkpoint_every", "every", BILLION),
    bound("train.readback_every", "single-layer", BILLION),
    bound("train.eval_episodes", "recurrent, few-shot", MILLION),
    bound("train.trace_checkpoint_every", "recurrent", MILLION),
    bound("task.pattern_bits", "single-layer", MILLION),
    bound("task.steps", "single-layer", MILLION),
    bound("model.hidden", "single-layer", MILLION),
    bound("task.size", "recurrent", MILLION),
    bound("task.items", "recurrent", MILLION),
    bound("task.cycles", "recurrent", MILLION),
    bound("task.present_steps", "recurrent", MILLION),
    bound("task.gap_steps", "recurrent", MILLION),
    bound("task.probe_steps", "recurrent", MILLION),
    bound("model.neurons", "recurrent", 65_536),
    bound("model.lstm_hidden", "recurrent", 65_536),
    bound("task.steps", "reinforcement", MILLION),
    bound("task.maze_side", "reinforcement", 101),
    bound("task.cues", "reinforcement", 65_536),
    bound("task.cue_bits", "reinforcement", 65_536),
    bound("task.train_tasks", "reinforcement", 100_000),
    bound("task.heldout_tasks", "reinforcement", 100_000),
    bound("task.stimulus_bits", "reinforcement", 65_536),
    bound("task.trial_timeout", "reinforcement", MILLION),
    bound("model.hidden", "reinforcement", 65_536),
    bound("task.ways", "few-shot", 65_536),
    bound("task.shots", "few-shot", 1_000),
    bound("task.queries", "few-shot", 10_000),
    bound("model.channels", "few-shot", 4_096),
    bound("model.outputs", "few-shot", 65_536),
];

/// The bound of `field` in `family`'s configs (`family = "any"`: the field's one bound, for
/// fields every family names alike).
///
/// # Panics
///
/// Panics if the field has no bound (a field checked without one listed in [`BOUNDS`]).
pub fn most(family: &str, field: &str) -> usize {
    BOUNDS
        .iter()
        .find(|b| {
            b.field == field
                && (family == "any" || b.family == "every" || b.family.contains(family))
        })
        .unwrap_or_else(|| panic!("{field} of the {family} family has a bound in BOUNDS"))
        .most
}

/// Refuses the first of `values` (a field and its value, `None` when unset) above its bound,
/// naming the field.
pub(crate) fn check(
    bad: &dyn Fn(&str, String, &str) -> Error,
    family: &str,
    values: &[(&str, Option<usize>)],
) -> Result<()> {
    for &(field, value) in values {
        let most = most(family, field);
        if let Some(v) = value
            && v > most
        {
            return Err(bad(
                field,
                v.to_string(),
                &format!("expected at most {most} (the documented bound, docs/reliability.md)"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_is_listed_once_per_family() {
        for (i, a) in BOUNDS.iter().enumerate() {
            for b in &BOUNDS[i + 1..] {
                assert!(
                    !(a.field == b.field
                        && (a.family.contains(b.family) || b.family.contains(a.family))),
                    "{} twice",
                    a.field
                );
            }
        }
        assert_eq!(most("few-shot", "train.eval_episodes"), MILLION);
        assert_eq!(most("reinforcement", "task.steps"), MILLION);
    }
}
