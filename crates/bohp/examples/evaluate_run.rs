//! Loads a trained run (any family) from Rust and evaluates it on fresh held-out episodes.
//!
//! ```bash
//! cargo run --release -p bohp-cli -- train configs/one-shot.toml --out runs/os
//! cargo run --release -p bohp --example evaluate_run -- runs/os 500
//! ```

use std::path::PathBuf;

use bohp::recurrent::train::RecurrentTrainer;
use bohp::registry::{TrainedModel, load_trained};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: evaluate_run RUN_DIR [EPISODES]")?,
    );
    let episodes: usize = args.next().map_or(Ok(200), |e| e.parse())?;
    match load_trained(&dir)? {
        TrainedModel::Single(model, config) => {
            // The model was loaded on the CPU (flex) in the run's precision.
            let device = bohp::device::init_device(bohp::device::Backend::Flex, config.dtype)?;
            let m = bohp::single::train::evaluate(
                &model,
                &config.task(),
                config.seed,
                episodes,
                100,
                &device,
            );
            println!(
                "{}: loss {:.5}, error {:.5} on {episodes} fresh episodes",
                config.task.kind, m.loss, m.error
            );
        }
        TrainedModel::ActorCritic(model, config) => {
            // An agent's measure is its reward: the run's summary.json holds it; here, the
            // network's size.
            println!(
                "{:?} {} agent: {} parameters ({} counted in the loaded module), {} hidden neurons",
                config.task.kind,
                config.model.kind.name(),
                config.network().num_params(),
                burn::module::Module::num_params(&model),
                config.model.hidden,
            );
        }
        TrainedModel::FewShot(_, config) => {
            // Reads the config's image sets; measures the held-out alphabets.
            let mut trainer = bohp::omniglot::train::OmniglotTrainer::new(config.clone())?;
            trainer.load_model(&dir.join("model.bpk"))?;
            let held_out = trainer.held_out().clone();
            let (net, nn) = trainer.evaluate(&held_out, 5, 1, episodes)?;
            println!(
                "omniglot 5-way 1-shot on the held-out alphabets: network {:.3}, nearest neighbour {:.3} ({episodes} episodes)",
                net.accuracy, nn.accuracy
            );
        }
        TrainedModel::Recurrent(_, config) | TrainedModel::Lstm(_, config) => {
            let mut trainer = RecurrentTrainer::new(config.clone())?;
            trainer.load_model(&dir.join("model.bpk"))?;
            let e = trainer.evaluate(episodes);
            println!(
                "{} {}: loss {:.5}, error {:.5} (blank {:.5}) on {episodes} held-out episodes",
                config.task.kind.name(),
                trainer.model_name(),
                e.loss,
                e.error,
                e.blank_error
            );
        }
    }
    Ok(())
}
