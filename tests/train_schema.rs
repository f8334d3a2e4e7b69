//! The one `[train]` schema and the parameter store: every family reads the same keys, refuses
//! a key it would ignore (naming it), and every engine of every family runs either optimizer,
//! either clipping and any learning-rate schedule, resuming exactly.

use std::path::Path;

use bohp::learner::Learner;
use bohp::recurrent::config::RecurrentConfig;
use bohp::recurrent::train::RecurrentTrainer;
use bohp::rl::config::RlConfig;
use bohp::rl::train::RlTrainer;
use bohp::run::RunDir;

use crate::common::repo_root;

/// The error of validating a config written as `text`, read by the family its `task.kind` names.
fn load_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    match bohp::registry::Registry::builtin()
        .of_file(&path)
        .and_then(|family| family.check(&path))
    {
        Ok(()) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const SINGLE: &str = "[task]\nkind = \"one-shot\"\n[model]\ngamma = 0.1\n[train]\nepisodes = 10\nlearning_rate = 0.01\n";
const RECURRENT: &str = "[task]\nkind = \"memorisation\"\nsize = 10\n[model]\n[train]\nepisodes = 10\nlearning_rate = 0.01\n";
const RL: &str = "[task]\nkind = \"bandit\"\n[model]\nkind = \"plastic\"\nhidden = 8\n[train]\nepisodes = 10\nlearning_rate = 0.01\n";
const OMNIGLOT: &str = "[task]\nkind = \"omniglot\"\ndata = [\"x.zip\"]\n[model]\n[train]\nepisodes = 10\nlearning_rate = 0.01\n";

/// A key only other families read is refused, naming the key and who reads it; the schema's
/// own checks are the same in every family.
#[test]
fn a_train_key_the_family_would_ignore_is_refused_by_name() {
    let cases = [
        (SINGLE, "discount = 0.5", "train.discount", "actor-critic"),
        (
            SINGLE,
            "eval_episodes = 5",
            "train.eval_episodes",
            "recurrent",
        ),
        (
            RECURRENT,
            "freeze_last = 2",
            "train.freeze_last",
            "single-layer",
        ),
        (
            RECURRENT,
            "readback_every = 2",
            "train.readback_every",
            "single-layer",
        ),
        (
            RL,
            "gradient_checkpointing = true",
            "train.gradient_checkpointing",
            "recurrent",
        ),
        (RL, "eval_episodes = 5", "train.eval_episodes", "Omniglot"),
        (
            OMNIGLOT,
            "trace_checkpoint_every = 3",
            "train.trace_checkpoint_every",
            "recurrent",
        ),
        (
            OMNIGLOT,
            "exploration = \"entropy\"",
            "train.exploration",
            "actor-critic",
        ),
        // The schema's own checks, the same in every family.
        (
            RL,
            "clip_scope = \"global\"\nclip_grad_norm = -1.0",
            "train.clip_grad_norm",
            "> 0",
        ),
        (OMNIGLOT, "l1 = 0.1", "train.l1", "original"),
        (
            RECURRENT,
            "min_learning_rate = 0.5",
            "train.min_learning_rate",
            "<=",
        ),
        (
            SINGLE,
            "engine = \"fused\"\nclip_scope = \"per-tensor\"",
            "train.clip_scope",
            "clip_grad_norm",
        ),
    ];
    for (base, extra, field, hint) in cases {
        let text = base.replace("[train]\n", &format!("[train]\n{extra}\n"));
        let e = load_error(&text);
        assert!(
            e.contains(field) && e.contains(hint),
            "{extra}: expected {field} and {hint:?} in: {e}"
        );
    }
    // And the same keys where the family reads them are accepted.
    for (base, extra) in [
        (
            SINGLE,
            "freeze_last = 2\nreadback_every = 2\noptimizer = \"original\"\nmax_change = 0.01",
        ),
        (
            RECURRENT,
            "eval_episodes = 5\noptimizer = \"original\"\nmax_change = 0.01\nclip_grad_norm = 1.0",
        ),
        (
            RL,
            "engine = \"fused\"\noptimizer = \"original\"\nmax_change = 0.01\nlr_schedule = \"cosine\"",
        ),
        (
            RL,
            "optimizer = \"original\"\nmax_change = 0.01\nclip_scope = \"global\"",
        ),
        (
            OMNIGLOT,
            "clip_grad_norm = 1.0\nclip_scope = \"per-tensor\"\nlr_schedule = \"linear\"",
        ),
        (
            OMNIGLOT,
            "optimizer = \"original\"\nmax_change = 0.01\nclip_grad_norm = 1.0",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ok.toml");
        std::fs::write(
            &path,
            base.replace("[train]\n", &format!("[train]\n{extra}\n")),
        )
        .unwrap();
        let family = bohp::registry::Registry::builtin().of_file(&path).unwrap();
        if let Err(e) = family.check(&path) {
            panic!("{extra}: refused: {e}");
        }
    }
}

/// `trainer` stepped 6 times, checkpointed into `run`, then both it and the trainer `resume`
/// restores from the checkpoint run to the end: every row's loss must agree bit for bit.
fn resumes_exactly<T: Learner>(
    what: &str,
    run: &RunDir,
    mut a: T,
    resume: impl FnOnce(&RunDir) -> T,
    loss: impl Fn(&T::Row) -> f64,
) -> T {
    let mut metrics = run.metrics_writer(0).unwrap();
    for _ in 0..6 {
        metrics.write(&a.step().unwrap()).unwrap();
    }
    metrics.flush().unwrap();
    a.checkpoint(run).unwrap();
    let mut b = resume(run);
    while !a.is_done() {
        let (ra, rb) = (a.step().unwrap(), b.step().unwrap());
        assert_eq!(loss(&ra).to_bits(), loss(&rb).to_bits(), "{what}");
    }
    b
}

fn with_train(path: &Path, extra: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .replace("[train]\n", &format!("[train]\n{extra}\n"))
}

/// The recurrent fused engine with the original procedure, global clipping and a cosine
/// schedule, and the actor-critic fused engine with the same (its clipping per tensor or
/// global): each trains (the parameters move), and resumes from a checkpoint bit for bit.
#[test]
fn the_host_engines_run_every_optimizer_and_resume_exactly() {
    let extra = |scope: &str| {
        format!(
            "optimizer = \"original\"\nmax_change = 0.01\nl2 = 0.0001\nclip_grad_norm = 0.5\nclip_scope = \"{scope}\"\nlr_schedule = \"cosine\"\nmin_learning_rate = 0.001"
        )
    };
    for scope in ["global", "per-tensor"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memorisation.toml");
        let text = with_train(
            &repo_root().join("configs/memorisation-50.toml"),
            &extra(scope),
        );
        std::fs::write(&path, text).unwrap();
        let mut config = RecurrentConfig::load(&path).unwrap();
        config.train.episodes = 12;
        config.train.batch = 4;
        let run = RunDir::create(&dir.path().join("run")).unwrap();
        std::fs::write(run.config_path(), config.to_toml()).unwrap();
        let fresh = RecurrentTrainer::new(config.clone()).unwrap();
        let start = fresh.parameter_values();
        let b = resumes_exactly(
            &format!("recurrent, clip {scope}"),
            &run,
            fresh,
            |run| RecurrentTrainer::resume(run, config.clone()).unwrap(),
            |r| r.loss,
        );
        assert_ne!(b.parameter_values(), start, "recurrent {scope}: trained");

        let path = dir.path().join("bandit.toml");
        let text = format!(
            "seed = 1\n[task]\nkind = \"bandit\"\nsteps = 30\n[model]\nkind = \"retroactive\"\nhidden = 12\n\
             [train]\nepisodes = 12\nbatch = 8\nlearning_rate = 0.01\nengine = \"fused\"\n{}\n",
            extra(scope)
        );
        std::fs::write(&path, text).unwrap();
        let config = RlConfig::load(&path).unwrap();
        let run = RunDir::create(&dir.path().join("rl")).unwrap();
        std::fs::write(run.config_path(), config.to_toml()).unwrap();
        resumes_exactly(
            &format!("actor-critic, clip {scope}"),
            &run,
            RlTrainer::new(config.clone()).unwrap(),
            |run| RlTrainer::resume(run, config.clone()).unwrap(),
            |r| r.loss,
        );
    }
}

/// The learning-rate schedule reaches the actor-critic family (which had none): a linear
/// decay to the learning rate itself is the constant schedule bit for bit; a decay to 0 agrees
/// on the first update (the same rate) and departs after it.
#[test]
fn the_actor_critic_family_follows_the_learning_rate_schedule() {
    for engine in ["fused", "autodiff"] {
        let losses = |schedule: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("bandit.toml");
            let text = format!(
                "seed = 3\n[task]\nkind = \"bandit\"\nsteps = 20\n[model]\nkind = \"plastic\"\nhidden = 8\n\
                 [train]\nepisodes = 6\nbatch = 4\nlearning_rate = 0.05\nengine = \"{engine}\"\n{schedule}\n"
            );
            std::fs::write(&path, text).unwrap();
            let mut trainer = RlTrainer::new(RlConfig::load(&path).unwrap()).unwrap();
            (0..6)
                .map(|_| trainer.step().unwrap().loss.to_bits())
                .collect::<Vec<_>>()
        };
        let constant = losses("");
        assert_eq!(
            losses("lr_schedule = \"linear\"\nmin_learning_rate = 0.05"),
            constant,
            "{engine}"
        );
        let decayed = losses("lr_schedule = \"linear\"\nmin_learning_rate = 0.0");
        assert_eq!(
            decayed[..2],
            constant[..2],
            "{engine}: updates 0 and 1 see the first rate's result"
        );
        assert_ne!(
            decayed[2..],
            constant[2..],
            "{engine}: the decayed rate changes later losses"
        );
    }
}

/// The autodiff engines keep their parameters on the host for what burn's optimizer cannot run
/// (the original procedure, global clipping): the recurrent plastic network and LSTM, the
/// actor-critic agent and LSTM, and the Omniglot network each train that way and resume from a
/// checkpoint bit for bit.
#[test]
fn the_autodiff_engines_run_the_original_procedure_and_resume_exactly() {
    let extra = "optimizer = \"original\"\nmax_change = 0.01\nclip_grad_norm = 0.5\nlr_schedule = \"linear\"\nmin_learning_rate = 0.001";
    let dir = tempfile::tempdir().unwrap();
    for name in ["memorisation-50", "memorisation-50-lstm"] {
        let path = dir.path().join(format!("{name}.toml"));
        let text = with_train(&repo_root().join(format!("configs/{name}.toml")), extra);
        std::fs::write(&path, text).unwrap();
        let mut config = RecurrentConfig::load(&path).unwrap();
        config.train.engine = bohp::schema::Engine::Autodiff;
        config.train.episodes = 10;
        config.train.batch = 2;
        let run = RunDir::create(&dir.path().join(name)).unwrap();
        std::fs::write(run.config_path(), config.to_toml()).unwrap();
        let fresh = RecurrentTrainer::new(config.clone()).unwrap();
        let start = fresh.parameter_values();
        let b = resumes_exactly(
            name,
            &run,
            fresh,
            |run| RecurrentTrainer::resume(run, config.clone()).unwrap(),
            |r| r.loss,
        );
        assert_ne!(b.parameter_values(), start, "{name}: trained");
    }
    for kind in ["retroactive", "lstm"] {
        let path = dir.path().join(format!("{kind}.toml"));
        let text = format!(
            "seed = 1\n[task]\nkind = \"bandit\"\nsteps = 20\n[model]\nkind = \"{kind}\"\nhidden = 8\n\
             [train]\nepisodes = 10\nbatch = 4\nlearning_rate = 0.01\n{extra}\n"
        );
        std::fs::write(&path, text).unwrap();
        let config = RlConfig::load(&path).unwrap();
        let run = RunDir::create(&dir.path().join(kind)).unwrap();
        std::fs::write(run.config_path(), config.to_toml()).unwrap();
        resumes_exactly(
            kind,
            &run,
            RlTrainer::new(config.clone()).unwrap(),
            |run| RlTrainer::resume(run, config.clone()).unwrap(),
            |r| r.loss,
        );
    }
    use bohp::omniglot::config::OmniglotConfig;
    use bohp::omniglot::train::OmniglotTrainer;
    let data = crate::omniglot::write_set(dir.path(), "images_background", 2, 6, 3);
    let path = dir.path().join("omniglot.toml");
    let text = format!(
        "seed = 1\n[task]\nkind = \"omniglot\"\ndata = [{data:?}]\n[model]\nchannels = 8\noutputs = 5\n\
         [train]\nepisodes = 10\nbatch = 2\nlearning_rate = 0.003\neval_episodes = 4\n{extra}\n"
    );
    std::fs::write(&path, text).unwrap();
    let config = OmniglotConfig::load(&path).unwrap();
    let run = RunDir::create(&dir.path().join("omniglot")).unwrap();
    std::fs::write(run.config_path(), config.to_toml()).unwrap();
    resumes_exactly(
        "omniglot",
        &run,
        OmniglotTrainer::new(config.clone()).unwrap(),
        |run| OmniglotTrainer::resume(run, config.clone()).unwrap(),
        |r| r.loss,
    );
}

/// The host store under an autodiff module is burn's Adam by other means: with a clipping bound
/// far above the gradient's norm (global clipping runs on the host), a recurrent autodiff run
/// in f64 follows the burn-optimizer run to rounding, and both move the parameters. This checks
/// that gradients and values travel between the module and the host in the right order.
#[test]
fn the_host_store_under_autodiff_equals_burns_adam() {
    let mut config =
        RecurrentConfig::load(&repo_root().join("configs/memorisation-50.toml")).unwrap();
    config.train.engine = bohp::schema::Engine::Autodiff;
    config.dtype = bohp::device::Precision::F64;
    config.train.episodes = 8;
    config.train.batch = 2;
    let mut a = RecurrentTrainer::new(config.clone()).unwrap();
    let start = a.parameter_values();
    config.train.clip_grad_norm = Some(1e12);
    let mut b = RecurrentTrainer::new(config).unwrap();
    while !a.is_done() {
        let (ra, rb) = (a.step().unwrap(), b.step().unwrap());
        assert!(
            (ra.loss - rb.loss).abs() <= 1e-9 * ra.loss.abs().max(1.0),
            "update {}: {} vs {}",
            ra.episode,
            ra.loss,
            rb.loss
        );
    }
    let gap = |x: &[Vec<f64>], y: &[Vec<f64>]| {
        x.iter()
            .flatten()
            .zip(y.iter().flatten())
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max)
    };
    assert!(gap(&a.parameter_values(), &start) > 1e-6, "trained");
    let between = gap(&a.parameter_values(), &b.parameter_values());
    assert!(between < 1e-9, "host store vs burn's Adam: {between}");
}

/// A run's `config.toml` shows the `[train]` defaults it runs with: the actor-critic loss's
/// keys and the clipping's scope where the family reads them, and no key of another family.
#[test]
fn a_loaded_config_writes_its_train_defaults_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rl.toml");
    std::fs::write(&path, RL).unwrap();
    let rl = RlConfig::load(&path).unwrap().to_toml();
    for line in [
        "discount = 0.9",
        "value_coef = 0.1",
        "exploration = \"sum-p2\"",
        "exploration_coef = 0.03",
        "clip_grad_norm = 4.0",
        "clip_scope = \"per-tensor\"",
    ] {
        assert!(rl.contains(line), "{line} missing from:\n{rl}");
    }
    let path = dir.path().join("single.toml");
    std::fs::write(&path, SINGLE).unwrap();
    let single = bohp::single::config::SingleLayerConfig::load(&path)
        .unwrap()
        .to_toml();
    for key in ["discount", "clip_scope", "eval_episodes", "freeze_last"] {
        assert!(!single.contains(key), "{key} in:\n{single}");
    }
}
