//! The single layer's [`Family`]: its configs are those whose `task.kind` is `completion`,
//! `one-shot` or `reversal`.

use std::collections::VecDeque;

use burn::module::Module;
use serde_json::json;

use crate::device::init_device;
use crate::error::Result;
use crate::family::{EvalRequest, Family, Registered, Report, Trained};
use crate::run::{MetricsRow, RunDir, Summary, load_model, load_record};
use crate::single::config::SingleLayerConfig;
use crate::single::train::{SingleLayerTrainer, evaluate, gradient_engine, init_model};

/// The 2016 single plastic layer.
pub struct SingleLayer;

/// The single layer in the registry.
pub static FAMILY: Registered<SingleLayer> = Registered::new();

crate::learner::run_schedule!(SingleLayerConfig);

impl Family for SingleLayer {
    const NAME: &'static str = "single-layer";
    const PROGRESS_WINDOW: usize = 100;
    type Config = SingleLayerConfig;
    type Trainer = SingleLayerTrainer;

    const KINDS: &'static [&'static str] = &["completion", "one-shot", "reversal"];
    crate::family::config_methods!(SingleLayerConfig);

    fn rescale(config: &mut SingleLayerConfig, configured: usize) -> Option<String> {
        config.scale_frozen_phase(configured)
    }
    fn frozen(config: &SingleLayerConfig) -> Option<usize> {
        Some(config.train.freeze_last)
    }

    fn start(config: SingleLayerConfig) -> Result<SingleLayerTrainer> {
        let engine = gradient_engine(config.train.engine);
        SingleLayerTrainer::new(config, engine)
    }
    fn resume(run: &RunDir, config: SingleLayerConfig) -> Result<SingleLayerTrainer> {
        let engine = gradient_engine(config.train.engine);
        SingleLayerTrainer::resume(run, config, engine)
    }
    fn extend(trainer: &mut SingleLayerTrainer, updates: usize, source: &str) -> Result<()> {
        trainer.extend(updates, source)
    }
    fn config(trainer: &SingleLayerTrainer) -> &SingleLayerConfig {
        trainer.config()
    }

    fn describe(trainer: &SingleLayerTrainer) -> String {
        let c = trainer.config();
        format!(
            "{} on {} ({}, {} gradients), batch {}",
            c.task.kind, c.device, c.dtype, c.train.engine, c.train.batch
        )
    }
    fn progress(recent: &VecDeque<MetricsRow>) -> String {
        let n = recent.len() as f64;
        let loss = recent.iter().map(|r| r.loss).sum::<f64>() / n;
        let error = recent.iter().map(|r| r.error).sum::<f64>() / n;
        let frozen = recent.back().is_some_and(|r| r.frozen == 1);
        let phase = if frozen { " [frozen]" } else { "" };
        format!("loss {loss:.4} error {error:.4}{phase}")
    }
    fn report(trainer: &SingleLayerTrainer, summary: &Summary) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(frozen) = &summary.frozen {
            lines.push(format!(
                "frozen phase ({} episodes): {frozen}",
                trainer.config().train.freeze_last
            ));
        }
        lines.push(format!("last 100 episodes: {}", summary.last_100));
        lines
    }

    fn evaluate(run: &RunDir, config: SingleLayerConfig, request: &EvalRequest) -> Result<Report> {
        request.refuse_omniglot_runs()?;
        let device = init_device(config.device, config.dtype)?;
        let model = load_model(init_model(&config, &device), &run.model_path(), None)?.valid();
        let measures = evaluate(
            &model,
            &config.task(),
            config.seed,
            request.episodes,
            config.train.batch,
            &device,
        );
        Ok(Report {
            json: json!({
                "task": config.task.kind.name(),
                "episodes": request.episodes,
                "seed": config.seed,
                "device": config.device.name(),
                "dtype": config.dtype.name(),
                "loss": measures.loss,
                "error": measures.error,
                "error_code": measures.error_code,
            }),
            lines: vec![format!(
                "{} on {} fresh episodes (seed {}, {}, {}): {measures}",
                config.task.kind, request.episodes, config.seed, config.device, config.dtype
            )],
        })
    }
    fn trained(run: &RunDir, config: SingleLayerConfig) -> Result<Trained> {
        // The non-plastic control's α is 0 and not trained.
        let unused = if config.model.plasticity == crate::schema::Plasticity::None {
            vec!["plastic.alpha"]
        } else {
            Vec::new()
        };
        let (model, _) = load_trained(run, config)?;
        Ok(Trained {
            kind: Self::NAME,
            module: Box::new(model),
            unused,
        })
    }
}

/// The run's final network on the CPU, in the run's precision, with its config.
pub fn load_trained(
    run: &RunDir,
    config: SingleLayerConfig,
) -> Result<(crate::single::network::PlasticNet, SingleLayerConfig)> {
    let device = init_device(crate::device::Backend::Flex, config.dtype)?;
    let model = load_record(init_model(&config, &device), &run.model_path(), None)?;
    Ok((model, config))
}
