//! The few-shot [`Family`]: configs whose `task.kind` is `omniglot` (a convolutional embedding
//! with a plastic output layer).

use std::collections::VecDeque;

use serde_json::json;

use super::config::OmniglotConfig;
use super::model::FewShotNet;
use super::train::{OmniglotRow, OmniglotSummary, OmniglotTrainer};
use crate::device::{Backend, init_device};
use crate::error::Result;
use crate::family::{EvalRequest, Family, Registered, Report, Trained};
use crate::run::{RunDir, load_record};

/// Few-shot classification of Omniglot characters (2018).
pub struct FewShot;

/// The few-shot family in the registry.
pub static FAMILY: Registered<FewShot> = Registered::new();

crate::learner::run_schedule!(OmniglotConfig);

impl Family for FewShot {
    const NAME: &'static str = "few-shot";
    type Config = OmniglotConfig;
    type Trainer = OmniglotTrainer;

    const KINDS: &'static [&'static str] = &["omniglot"];
    crate::family::config_methods!(OmniglotConfig);
    crate::family::trainer_methods!(OmniglotConfig, OmniglotTrainer);

    fn describe(trainer: &OmniglotTrainer) -> String {
        let config = trainer.config();
        format!(
            "Omniglot {}-way {}-shot ({} network, {} params) on {} ({}), batch {}",
            config.task.ways,
            config.task.shots,
            if config.model.plastic {
                "plastic"
            } else {
                "alpha = 0"
            },
            trainer.num_params(),
            config.device,
            config.dtype,
            config.train.batch,
        )
    }
    fn progress(recent: &VecDeque<OmniglotRow>) -> String {
        let mean = recent.iter().map(|r| r.accuracy).sum::<f64>() / recent.len() as f64;
        let last = recent.back().expect("called after a row");
        format!(
            "accuracy {mean:.3} (last 50 updates), eta {:.3}, {:.2} s/update",
            last.eta, last.seconds
        )
    }
    fn report(_: &OmniglotTrainer, summary: &OmniglotSummary) -> Vec<String> {
        let mut lines = vec![format!(
            "omniglot ({} params): {} updates; training accuracy over the last tenth {:.3}",
            summary.params, summary.episodes, summary.final_train_accuracy
        )];
        for a in &summary.held_out {
            lines.push(format!(
                "held-out alphabets, {}-way 1-shot: accuracy {:.3} [95% CI {:.3}, {:.3}] on {} episodes",
                a.ways, a.accuracy, a.low, a.high, a.episodes
            ));
        }
        lines
    }

    /// 5-way and 20-way 1-shot accuracy on the held-out alphabets, the network's and nearest
    /// neighbour's in its embedding, with 95% intervals; with `--omniglot-runs`, the error on
    /// Lake et al.'s 20 one-shot runs beside the modified-Hausdorff baseline.
    fn evaluate(run: &RunDir, config: OmniglotConfig, request: &EvalRequest) -> Result<Report> {
        // Read the runs first: a bad path fails before the training data is read.
        let runs = match &request.omniglot_runs {
            Some(p) => Some(super::read_runs(p)?),
            None => None,
        };
        let mut trainer = OmniglotTrainer::new(config.clone())?;
        trainer.load_model(&run.model_path())?;
        let mut report = serde_json::Map::new();
        let mut lines = Vec::new();
        let held_out = trainer.held_out().clone();
        if held_out.characters.is_empty() {
            lines.push("no held-out alphabets (task.held_out is empty)".to_string());
        }
        let mut accuracies = Vec::new();
        for ways in [5usize, 20] {
            if held_out.characters.len() < ways || ways > config.model.outputs {
                continue;
            }
            let (net, nn) = trainer.evaluate(&held_out, ways, 1, request.episodes)?;
            lines.push(format!(
                "held-out alphabets, {ways}-way 1-shot, {} episodes: network {:.3} [95% CI {:.3}, {:.3}]; nearest neighbour in its embedding {:.3} [{:.3}, {:.3}]; chance {:.3}",
                request.episodes,
                net.accuracy,
                net.low,
                net.high,
                nn.accuracy,
                nn.low,
                nn.high,
                1.0 / ways as f64
            ));
            accuracies.push(json!({"ways": ways, "network": net, "nearest_neighbour": nn}));
        }
        report.insert("held_out".into(), accuracies.into());
        if let Some(runs) = runs {
            let (net, nn) = trainer.runs_error(&runs)?;
            let hausdorff: f64 =
                runs.iter().map(super::hausdorff_error).sum::<f64>() / runs.len() as f64;
            lines.push(format!(
                "Lake et al.'s {} one-shot runs (20-way, within alphabet): error network {:.1}%, nearest neighbour in its embedding {:.1}%, modified Hausdorff distance {:.1}%",
                runs.len(),
                100.0 * net,
                100.0 * nn,
                100.0 * hausdorff
            ));
            report.insert(
                "runs".into(),
                json!({"count": runs.len(), "network_error": net, "nearest_neighbour_error": nn, "hausdorff_error": hausdorff}),
            );
        }
        Ok(Report {
            json: serde_json::Value::Object(report),
            lines,
        })
    }
    fn trained(run: &RunDir, config: OmniglotConfig) -> Result<Trained> {
        // The α = 0 control's α and η are not trained.
        let unused = if config.model.plastic {
            Vec::new()
        } else {
            vec!["alpha", "eta"]
        };
        let (net, _) = load_trained(run, config)?;
        Ok(Trained {
            kind: "few-shot",
            module: Box::new(net),
            unused,
        })
    }
}

/// The run's final network on the CPU, in the run's precision, with its config.
pub fn load_trained(run: &RunDir, config: OmniglotConfig) -> Result<(FewShotNet, OmniglotConfig)> {
    let device = init_device(Backend::Flex, config.dtype)?;
    let template = FewShotNet::new(&config.model, config.seed, &device);
    Ok((load_record(template, &run.model_path(), None)?, config))
}
