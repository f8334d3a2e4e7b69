//! The recurrent networks' [`Family`]: configs whose `task.kind` is `memorisation` or
//! `images` (plastic, non-plastic and LSTM models).

use std::collections::VecDeque;

use serde_json::json;

use super::config::{RecurrentConfig, RecurrentModelKind};
use super::model::{LstmNet, PlasticRnn};
use super::train::{RecurrentRow, RecurrentSummary, RecurrentTrainer};
use crate::device::{Backend, init_device};
use crate::error::Result;
use crate::family::{EvalRequest, Family, Registered, Report, Trained};
use crate::run::{RunDir, load_record};
use crate::schema::Engine;

/// Fully recurrent plastic networks and their baselines (2018).
pub struct Recurrent;

/// The recurrent family in the registry.
pub static FAMILY: Registered<Recurrent> = Registered::new();

crate::learner::run_schedule!(RecurrentConfig);

impl Family for Recurrent {
    const NAME: &'static str = "recurrent";
    type Config = RecurrentConfig;
    type Trainer = RecurrentTrainer;

    const KINDS: &'static [&'static str] = &["memorisation", "images"];
    crate::family::config_methods!(RecurrentConfig);
    crate::family::trainer_methods!(RecurrentConfig, RecurrentTrainer);

    fn describe(trainer: &RecurrentTrainer) -> String {
        let config = trainer.config();
        format!(
            "{} ({} model, {} params) with the {} engine on {}, batch {}",
            config.task.kind.name(),
            trainer.model_name(),
            config.num_params(),
            config.train.engine.name(),
            if config.train.engine == Engine::Fused {
                "the host CPU".to_string()
            } else {
                config.device.to_string()
            },
            config.train.batch,
        )
    }
    fn progress(recent: &VecDeque<RecurrentRow>) -> String {
        let mean = recent.iter().map(|r| r.error).sum::<f64>() / recent.len() as f64;
        let last = recent.back().expect("called after a row");
        format!(
            "error {mean:.4} (last 50 updates), plasticity rate η {:.4}, {:.2} s/update",
            last.eta, last.seconds
        )
    }
    fn report(_: &RecurrentTrainer, summary: &RecurrentSummary) -> Vec<String> {
        vec![summary_text(summary)]
    }

    fn evaluate(run: &RunDir, config: RecurrentConfig, request: &EvalRequest) -> Result<Report> {
        request.refuse_omniglot_runs()?;
        let mut trainer = RecurrentTrainer::new(config.clone())?;
        trainer.load_model(&run.model_path())?;
        let e = trainer.evaluate(request.episodes);
        Ok(Report {
            json: json!({
                "task": config.task.kind.name(),
                "model": trainer.model_name(),
                "episodes": request.episodes,
                "seed": config.seed,
                "dtype": config.dtype.name(),
                "loss": e.loss,
                "error": e.error,
                "blank_error": e.blank_error,
            }),
            lines: vec![format!(
                "{} {} on {} held-out episodes (seed {}, {}): loss {:.5}, error {:.5} (a blank output: {:.5})",
                config.task.kind.name(),
                trainer.model_name(),
                request.episodes,
                config.seed,
                config.dtype,
                e.loss,
                e.error,
                e.blank_error
            )],
        })
    }
    fn trained(run: &RunDir, config: RecurrentConfig) -> Result<Trained> {
        // The non-plastic network's α and η are not trained.
        let unused = if config.model.plasticity == crate::schema::Plasticity::None {
            vec!["alpha", "eta"]
        } else {
            Vec::new()
        };
        Ok(match load_trained(run, config)? {
            TrainedRecurrent::Plastic(m, _) => Trained {
                kind: "recurrent",
                module: m,
                unused,
            },
            TrainedRecurrent::Lstm(m, _) => Trained {
                kind: "lstm",
                module: m,
                unused: Vec::new(),
            },
        })
    }
}

/// A trained recurrent run's network.
pub enum TrainedRecurrent {
    /// The plastic (or non-plastic) recurrent network.
    Plastic(Box<PlasticRnn>, RecurrentConfig),
    /// The LSTM baseline.
    Lstm(Box<LstmNet>, RecurrentConfig),
}

/// The run's final network on the CPU, in the run's precision.
pub fn load_trained(run: &RunDir, config: RecurrentConfig) -> Result<TrainedRecurrent> {
    let device = init_device(Backend::Flex, config.dtype)?;
    let path = run.model_path();
    Ok(match config.model.kind {
        RecurrentModelKind::Plastic => {
            let rnn = config.plastic_rnn();
            let template = rnn.from_values(&rnn.init_values(config.seed), &device);
            TrainedRecurrent::Plastic(Box::new(load_record(template, &path, None)?), config)
        }
        RecurrentModelKind::Lstm => {
            let template = LstmNet::new(config.size(), config.lstm_hidden(), &device);
            TrainedRecurrent::Lstm(Box::new(load_record(template, &path, None)?), config)
        }
    })
}

/// A finished recurrent run's summary in one line.
pub(crate) fn summary_text(s: &RecurrentSummary) -> String {
    let unit = match s.blank_error {
        Some(blank) => format!("per-pixel MSE on the erased half; a blank half scores {blank:.4}"),
        None => "wrong bits among the erased half".to_string(),
    };
    format!(
        "{} {} ({} engine, {} units, {} params): {} updates; held-out error {:.4} ({unit}), loss {:.3}; \
         last-10% training error {:.4}; eta {:.4}; {:.3} s/episode; peak memory {} MiB",
        s.task,
        s.model,
        s.engine,
        s.units,
        s.params,
        s.episodes,
        s.eval_error,
        s.eval_loss,
        s.final_train_error,
        s.eta,
        s.seconds_per_episode,
        s.peak_rss_mib
            .map_or("?".to_string(), |m| format!("{m:.0}")),
    )
}
