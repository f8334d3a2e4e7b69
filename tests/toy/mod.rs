//! A test-only model family, to show what a new family needs: this one folder and one
//! registry line (`Registry::builtin().with(&toy::FAMILY)`).
//!
//! The "model" is one scalar θ (a burn module with one parameter) fitted by SGD to noisy
//! targets `y_k = target + noise(seed, k)`: update `k`'s loss is `(θ − y_k)²`. Its checkpoint
//! holds the model and `next_episode`; a resumed run repeats the uninterrupted one exactly
//! because `y_k` depends only on the seed and `k`.

use std::collections::VecDeque;
use std::path::Path;

use bohp::device::{Backend, Precision, init_device};
use bohp::family::{EvalRequest, Family, Keys, Registered, Report, Trained};
use bohp::learner::{Divergence, Learner, Progress, RunSchedule, Session, open_checkpoint};
use bohp::run::{MetricsRecord, RunDir, Snapshot, model_bytes, record_from_bytes};
use bohp::single::config::Engine;
use bohp::{Error, Result};
use burn::module::{Module, Param, ParamId};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The toy family.
pub struct Toy;

/// Its registry entry.
pub static FAMILY: Registered<Toy> = Registered::new();

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToyConfig {
    pub seed: u64,
    #[serde(default)]
    pub device: Backend,
    #[serde(default)]
    pub dtype: Precision,
    pub task: ToyTask,
    pub train: ToyTrain,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToyTask {
    /// Always `toy`.
    pub kind: String,
    /// The targets' mean.
    pub target: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToyTrain {
    pub episodes: usize,
    pub checkpoint_every: usize,
    pub learning_rate: f64,
    #[serde(default = "one")]
    pub batch: usize,
    #[serde(default)]
    pub engine: Engine,
}

fn one() -> usize {
    1
}

impl RunSchedule for ToyConfig {
    fn episodes(&self) -> usize {
        self.train.episodes
    }
    fn episodes_mut(&mut self) -> &mut usize {
        &mut self.train.episodes
    }
    fn checkpoint_every(&self) -> usize {
        self.train.checkpoint_every
    }
    fn check(&self, source: &str) -> Result<()> {
        if !(self.train.learning_rate > 0.0 && self.train.learning_rate < 0.5) {
            return Err(Error::ConfigValue {
                source_name: source.to_string(),
                field: "train.learning_rate".into(),
                value: self.train.learning_rate.to_string(),
                expected: "in (0, 0.5)".into(),
            });
        }
        Ok(())
    }
}

/// `y_k`: the target plus a deterministic perturbation in [−0.3, 0.3].
fn target(config: &ToyConfig, k: u64) -> f64 {
    let h = config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    config.task.target + 0.1 * ((h % 7) as f64 - 3.0)
}

#[derive(Module, Debug)]
pub struct ToyModel {
    pub theta: Param<Tensor<1>>,
}

fn module(theta: f64, dtype: Precision) -> Result<ToyModel> {
    let device = init_device(Backend::Flex, dtype)?;
    Ok(ToyModel {
        // A fixed id: every record of the run names its parameter the same way.
        theta: Param::initialized(
            ParamId::from(1),
            Tensor::from_data(TensorData::from([theta]), &device),
        ),
    })
}

fn theta_of(model: &ToyModel) -> f64 {
    model
        .theta
        .val()
        .into_data()
        .convert::<f64>()
        .iter::<f64>()
        .next()
        .unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ToyRow {
    pub episode: usize,
    pub loss: f64,
    pub theta: f64,
}

impl MetricsRecord for ToyRow {
    fn episode(&self) -> usize {
        self.episode
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToySummary {
    pub episodes: usize,
    pub theta: f64,
    pub final_loss: f64,
}

pub struct ToyTrainer {
    config: ToyConfig,
    theta: f64,
    next: usize,
}

impl Learner for ToyTrainer {
    type Row = ToyRow;
    type Summary = ToySummary;

    fn progress(&self) -> Progress {
        Progress::of(self.next, &self.config)
    }
    fn step(&mut self) -> std::result::Result<ToyRow, Divergence> {
        let y = target(&self.config, self.next as u64);
        let loss = (self.theta - y).powi(2);
        self.theta -= self.config.train.learning_rate * 2.0 * (self.theta - y);
        // Rounded to the model's precision, as the checkpoint stores it.
        if self.config.dtype == Precision::F32 {
            self.theta = self.theta as f32 as f64;
        }
        let row = ToyRow {
            episode: self.next,
            loss,
            theta: self.theta,
        };
        self.next += 1;
        Ok(row)
    }
    fn check_parameters(&self) -> std::result::Result<(), Divergence> {
        match self.theta.is_finite() {
            true => Ok(()),
            false => Err(Divergence {
                episode: self.next,
                what: "theta".into(),
            }),
        }
    }
    fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            model: self.model_record()?,
            optimizer: None,
            host_optimizer: None,
            next_episode: self.next,
            dtype: self.config.dtype,
        })
    }
    fn model_record(&self) -> Result<Vec<u8>> {
        model_bytes(
            &module(self.theta, self.config.dtype)?,
            Path::new("model.bpk"),
        )
    }
    fn summarize(&mut self, rows: &[ToyRow], _: Session) -> Result<ToySummary> {
        Ok(ToySummary {
            episodes: rows.len(),
            theta: self.theta,
            final_loss: rows.last().map_or(f64::NAN, |r| r.loss),
        })
    }
}

impl Family for Toy {
    const NAME: &'static str = "toy";
    type Config = ToyConfig;
    type Trainer = ToyTrainer;

    const KINDS: &'static [&'static str] = &["toy"];
    fn load(path: &Path) -> Result<ToyConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read", e))?;
        let config: ToyConfig = toml::from_str(&text).map_err(|e| Error::ConfigSyntax {
            path: path.to_path_buf(),
            field: "<file>".into(),
            message: e.to_string(),
        })?;
        config.check(&path.display().to_string())?;
        Ok(config)
    }
    fn to_toml(config: &ToyConfig) -> String {
        toml::to_string(config).unwrap()
    }
    fn keys(c: &mut ToyConfig) -> Keys<'_> {
        Keys {
            episodes: &mut c.train.episodes,
            seed: &mut c.seed,
            batch: &mut c.train.batch,
            engine: &mut c.train.engine,
            device: &mut c.device,
            dtype: &mut c.dtype,
            freeze_last: None,
        }
    }
    fn start(config: ToyConfig) -> Result<ToyTrainer> {
        Ok(ToyTrainer {
            config,
            theta: 0.0,
            next: 0,
        })
    }
    fn resume(run: &RunDir, config: ToyConfig) -> Result<ToyTrainer> {
        let checkpoint = open_checkpoint::<ToyRow>(run, config.dtype, config.train.episodes)?;
        let model = record_from_bytes(
            module(0.0, config.dtype)?,
            checkpoint.model,
            &checkpoint.dir,
        )?;
        Ok(ToyTrainer {
            theta: theta_of(&model),
            next: checkpoint.state.next_episode,
            config,
        })
    }
    fn extend(trainer: &mut ToyTrainer, updates: usize, source: &str) -> Result<()> {
        trainer.config = bohp::learner::extended(&trainer.config, trainer.next, updates, source)?;
        Ok(())
    }
    fn config(trainer: &ToyTrainer) -> &ToyConfig {
        &trainer.config
    }
    fn describe(trainer: &ToyTrainer) -> String {
        format!("toy fit to {}", trainer.config.task.target)
    }
    fn progress(recent: &VecDeque<ToyRow>) -> String {
        format!("loss {:.4}", recent.back().unwrap().loss)
    }
    fn report(_: &ToyTrainer, summary: &ToySummary) -> Vec<String> {
        vec![format!("theta {:.4}", summary.theta)]
    }
    fn evaluate(run: &RunDir, config: ToyConfig, request: &EvalRequest) -> Result<Report> {
        request.refuse_omniglot_runs()?;
        let model = bohp::run::load_record(module(0.0, config.dtype)?, &run.model_path(), None)?;
        let theta = theta_of(&model);
        // Held-out targets: indices past any training update.
        let loss = (0..request.episodes as u64)
            .map(|k| (theta - target(&config, 1 << 40 | k)).powi(2))
            .sum::<f64>()
            / request.episodes as f64;
        Ok(Report {
            json: serde_json::json!({"theta": theta, "loss": loss, "seed": config.seed}),
            lines: vec![format!("theta {theta:.4}: held-out loss {loss:.4}")],
        })
    }
    fn trained(run: &RunDir, config: ToyConfig) -> Result<Trained> {
        let model = bohp::run::load_record(module(0.0, config.dtype)?, &run.model_path(), None)?;
        Ok(Trained {
            kind: "toy",
            module: Box::new(model),
            unused: Vec::new(),
        })
    }
}
