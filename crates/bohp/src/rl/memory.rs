//! The memory an actor-critic config needs, estimated before anything is allocated, and the
//! check that refuses a config that cannot fit, naming the field to shrink.

use super::config::RlConfig;
use super::env::EnvKind;
use super::fused::SEGMENT;
use super::model::RlModelKind;
use crate::device::Precision;
use crate::error::{Error, Result};
use crate::memory::{Estimate, Shrink};
use crate::schema::{Engine, TrainFamily};

/// The hidden size the check tries in place of `model.hidden` (the maze's published size):
/// the field is named when this alone makes the config fit.
const ORDINARY_HIDDEN: usize = 100;

impl RlConfig {
    /// The least memory this config needs to train ([`crate::memory`]): the parameters with
    /// Adam's two moments (and the fused engine's f64 host copies), the steps' inputs,
    /// activations and outputs (of every episode of a batch for autodiff, of one for the fused
    /// engine), and the plastic traces `[N, N]`:
    /// one per step and episode for autodiff, the fused engine's checkpointed traces of one
    /// episode (per thread; counted once).
    pub(crate) fn memory_estimate(&self) -> Estimate {
        let net = self.network();
        let (i, n, a) = (net.inputs as f64, net.hidden as f64, net.actions as f64);
        let float = match self.dtype {
            Precision::F32 => 4.0,
            Precision::F64 => 8.0,
        };
        let shape = self.env_shape();
        let (steps, batch) = (shape.steps as f64, self.train.batch as f64);
        let kind = self.model.kind;
        let params = if kind == RlModelKind::Lstm {
            4.0 * n * (i + n + 2.0) + n * (a + 1.0) + a + 1.0
        } else {
            i * n + 2.0 * n * n + n * (a + 5.0) + a + 3.0
        };
        let host = if self.train.engine == Engine::Fused {
            3.0 * 8.0
        } else {
            0.0
        };
        let mut e = Estimate::default();
        e.add(
            "model.hidden",
            "parameters and Adam state",
            params * (3.0 * float + host),
        );
        let side = shape.maze_side as f64;
        if shape.kind == EnvKind::Maze {
            e.add("task.maze_side", "the mazes", batch * side * side);
        }
        let per_step = i + a + if kind == RlModelKind::Lstm { 6.0 } else { 2.0 } * n;
        let long = if self.train.batch >= shape.steps {
            "train.batch"
        } else {
            "task.steps"
        };
        // The fused engine keeps one episode's steps per thread; autodiff keeps every episode's.
        let kept = if self.train.engine == Engine::Fused {
            1.0
        } else {
            batch
        };
        e.add(
            long,
            "each step's inputs, activations and outputs",
            steps * kept * per_step * float,
        );
        if kind.plastic() {
            let traces = if kind == RlModelKind::Retroactive {
                2.0
            } else {
                1.0
            } * n
                * n
                * float;
            match self.train.engine {
                Engine::Fused => e.add(
                    "task.steps",
                    "one episode's checkpointed traces",
                    ((steps / SEGMENT as f64).ceil() + SEGMENT as f64 + 4.0) * traces,
                ),
                Engine::Autodiff | Engine::Analytic => e.add(
                    long,
                    "the traces of every step and episode, kept for backpropagation",
                    steps * batch * traces,
                ),
            }
        }
        e
    }

    /// Refuses a config whose [`Self::memory_estimate`] exceeds `available` bytes.
    pub(super) fn check_memory(
        &self,
        bad: &dyn Fn(&str, String, &str) -> Error,
        available: f64,
    ) -> Result<()> {
        let batch = super::config::RlTraining::batch();
        crate::memory::check_config(
            self,
            RlConfig::memory_estimate,
            &[
                Shrink {
                    field: "train.batch",
                    value: self.train.batch.to_string(),
                    reset: &|c: &mut RlConfig| c.train.batch = batch,
                },
                Shrink {
                    field: "task.steps",
                    value: self.env_shape().steps.to_string(),
                    reset: &|c: &mut RlConfig| c.task.steps = None,
                },
                Shrink {
                    field: "task.maze_side",
                    value: self.env_shape().maze_side.to_string(),
                    reset: &|c: &mut RlConfig| c.task.maze_side = None,
                },
                Shrink {
                    field: "model.hidden",
                    value: self.model.hidden.to_string(),
                    reset: &|c: &mut RlConfig| c.model.hidden = ORDINARY_HIDDEN,
                },
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

    fn maze(extra: &str) -> RlConfig {
        let text = format!(
            "[task]\nkind = \"maze\"\n{extra}\n[model]\nkind = \"simple\"\nhidden = 100\n[train]\nepisodes = 10\nlearning_rate = 0.001\n"
        );
        parse_toml(&text, std::path::Path::new("maze.toml")).expect("parses")
    }

    fn refused(config: &RlConfig, available: f64) -> String {
        let bad = crate::schema::value_error("maze.toml");
        config
            .check_memory(&bad, available)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn the_field_that_makes_a_maze_config_too_large_is_named() {
        let gib = (1u64 << 30) as f64;
        // The published maze fits in well under a GiB.
        let ordinary = maze("");
        assert!(ordinary.memory_estimate().total() < 0.25 * gib);
        ordinary
            .check_memory(&crate::schema::value_error("maze.toml"), gib)
            .expect("fits");
        let mut big = maze("");
        big.model.hidden = 30_000;
        let message = refused(&big, 16.0 * gib);
        assert!(
            message.contains("model.hidden") && message.contains("30000"),
            "{message}"
        );
        let mut long = maze("steps = 900000");
        long.train.batch = 30;
        let message = refused(&long, 16.0 * gib);
        assert!(
            message.contains("task.steps") && message.contains("900000"),
            "{message}"
        );
        let mut wide = maze("");
        wide.train.batch = 60_000;
        let message = refused(&wide, 16.0 * gib);
        assert!(
            message.contains("train.batch") && message.contains("60000"),
            "{message}"
        );
    }
}
