//! The memory a few-shot config needs, estimated before any image is read or tensor
//! allocated, and the check that refuses a config that cannot fit, naming the field to shrink.

use super::config::{
    OmniglotConfig, OmniglotTraining, default_channels, default_queries, default_shots,
    default_slots, default_ways,
};
use super::data::SIDE;
use crate::device::Precision;
use crate::error::{Error, Result};
use crate::memory::{Estimate, Shrink};
use crate::rules::Modulation;
use crate::schema::TrainFamily;

impl OmniglotConfig {
    /// The least memory this config needs to train ([`crate::memory`]): the parameters with
    /// Adam's two moments, every image of a batch with its four convolutions' outputs (kept for
    /// backpropagation), and the plastic layer's trace `[C, outputs]` after every support step
    /// of every episode. The image sets themselves are not counted (their size is known when
    /// they are read).
    pub(crate) fn memory_estimate(&self) -> Estimate {
        let (task, model) = (&self.task, &self.model);
        let float = match self.dtype {
            Precision::F32 => 4.0,
            Precision::F64 => 8.0,
        };
        let (c, outputs) = (model.channels as f64, model.outputs as f64);
        let support = (task.ways * task.shots) as f64;
        let images = self.train.batch as f64 * (support + task.queries as f64);
        let conv = 9.0 * c + 3.0 * 9.0 * c * c + 4.0 * c;
        let plastic = 2.0 * c * outputs + outputs + c + 2.0;
        let mut e = Estimate::default();
        e.add(
            if conv >= plastic {
                "model.channels"
            } else {
                "model.outputs"
            },
            "parameters and Adam state",
            (conv + plastic) * 3.0 * float,
        );
        // Side 31 → 15 → 7 → 3 → 1 (3×3, stride 2).
        let pixels = (SIDE * SIDE) as f64 + c * (15.0 * 15.0 + 7.0 * 7.0 + 3.0 * 3.0 + 1.0);
        e.add(
            "train.batch",
            "every image of a batch with its convolutions' outputs",
            images * pixels * float,
        );
        let traces = if model.modulation == Modulation::Retroactive {
            2.0
        } else {
            1.0
        };
        e.add(
            "train.batch",
            "the plastic trace after every support step of every episode",
            traces * self.train.batch as f64 * support * c * outputs * float,
        );
        e
    }

    /// Refuses a config whose [`Self::memory_estimate`] exceeds `available` bytes.
    pub(super) fn check_memory(
        &self,
        bad: &dyn Fn(&str, String, &str) -> Error,
        available: f64,
    ) -> Result<()> {
        let (task, model) = (&self.task, &self.model);
        let shrink = |field, value: usize, reset: &'static dyn Fn(&mut OmniglotConfig)| Shrink {
            field,
            value: value.to_string(),
            reset,
        };
        crate::memory::check_config(
            self,
            OmniglotConfig::memory_estimate,
            &[
                shrink("train.batch", self.train.batch, &|c| {
                    c.train.batch = OmniglotTraining::batch()
                }),
                shrink("model.channels", model.channels, &|c| {
                    c.model.channels = default_channels()
                }),
                shrink("model.outputs", model.outputs, &|c| {
                    c.model.outputs = default_slots()
                }),
                shrink("task.shots", task.shots, &|c| {
                    c.task.shots = default_shots()
                }),
                shrink("task.queries", task.queries, &|c| {
                    c.task.queries = default_queries()
                }),
                shrink("task.ways", task.ways, &|c| c.task.ways = default_ways()),
            ],
            bad,
            available,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::schema::parse_toml;

    use super::*;

    fn config() -> OmniglotConfig {
        let text = "[task]\nkind = \"omniglot\"\ndata = [\"x.zip\"]\n[model]\n[train]\nepisodes = 10\nlearning_rate = 0.001\n";
        parse_toml(text, std::path::Path::new("omniglot.toml")).expect("parses")
    }

    fn refused(config: &OmniglotConfig, available: f64) -> String {
        let bad = crate::schema::value_error("omniglot.toml");
        config
            .check_memory(&bad, available)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn the_field_that_makes_an_omniglot_config_too_large_is_named() {
        let gib = (1u64 << 30) as f64;
        let ordinary = config();
        assert!(ordinary.memory_estimate().total() < 0.25 * gib);
        let bad = crate::schema::value_error("omniglot.toml");
        ordinary.check_memory(&bad, gib).expect("fits");
        for (field, value, set) in [
            (
                "model.channels",
                4_000,
                &(|c: &mut OmniglotConfig| c.model.channels = 4_000)
                    as &dyn Fn(&mut OmniglotConfig),
            ),
            ("model.outputs", 60_000, &|c: &mut OmniglotConfig| {
                c.model.outputs = 60_000
            }),
            ("train.batch", 60_000, &|c: &mut OmniglotConfig| {
                c.train.batch = 60_000
            }),
            ("task.queries", 10_000, &|c: &mut OmniglotConfig| {
                c.task.queries = 10_000
            }),
        ] {
            let mut big = config();
            set(&mut big);
            let message = refused(&big, 2.0 * gib);
            assert!(
                message.contains(field) && message.contains(&value.to_string()),
                "{field}: {message}"
            );
        }
    }
}
