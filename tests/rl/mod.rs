//! Reinforcement learning: the actor-critic networks' gradients (neuromodulated rules, clips
//! saturated or not) against finite differences, exact resume, and A2C learning a bandit.

use bohp::device::{Backend, Precision, init_device};
use bohp::learner::Learner;
use bohp::rl::config::RlConfig;
use bohp::rl::model::{ActorCritic, ActorCriticConfig, RlModelKind};
use bohp::rl::train::RlTrainer;
use bohp::run::RunDir;
use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::{assert_success, bohp, run_bohp};

const STEPS: usize = 12;
const BATCH: usize = 3;

/// A smooth scalar of every step's outputs (values, log-probabilities, `M`) on fixed inputs.
fn objective(model: &ActorCritic, xs: &[Tensor<2>]) -> (Tensor<1>, f64) {
    let mut state = model.start(BATCH);
    let device = xs[0].device();
    let mut total: Tensor<1> = Tensor::zeros([1], &device);
    for x in xs {
        let (out, next) = model.step(x.clone(), state);
        state = next;
        let log_p0 = out.log_probs.slice([0..BATCH, 0..1]).reshape([BATCH]);
        total = total
            + (out.value + log_p0 * 0.3 + out.modulation * 0.2)
                .sum()
                .reshape([1]);
    }
    let saturated = state
        .hebb
        .abs()
        .greater_equal_elem(model.clip() * (1.0 - 1e-12))
        .int()
        .sum()
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap()[0];
    (total, saturated as f64 / (BATCH * 16) as f64)
}

fn value_of(t: Tensor<1>) -> f64 {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()[0]
}

fn bump<const D: usize>(p: &Param<Tensor<D>>, index: usize, delta: f64) -> Param<Tensor<D>> {
    p.clone().map(|t| {
        let (shape, device, grad) = (t.shape(), t.device(), t.is_require_grad());
        let mut v: Vec<f64> = t.into_data().convert::<f64>().try_to_vec().unwrap();
        v[index] += delta;
        Tensor::from_data(TensorData::new(v, shape), &device).set_require_grad(grad)
    })
}

/// Fixed random inputs for `STEPS` steps of `BATCH` episodes (5 inputs), on the host and on
/// the f64 autodiff device.
fn inputs(seed: u64) -> (Vec<Vec<f64>>, Vec<Tensor<2>>, Device) {
    let ad = init_device(Backend::Flex, Precision::F64)
        .unwrap()
        .autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let host: Vec<Vec<f64>> = (0..STEPS)
        .map(|_| {
            (0..BATCH * 5)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect()
        })
        .collect();
    let tensors = host
        .iter()
        .map(|v| Tensor::from_data(TensorData::new(v.clone(), [BATCH, 5]), &ad))
        .collect();
    (host, tensors, ad)
}

/// The small test network of `kind` (4 neurons, η 0.3), with a larger `α` entry so that traces
/// grow and saturate small clips.
fn small_network(
    kind: RlModelKind,
    clip: f64,
    fanout: bool,
    seed: u64,
    device: &Device,
) -> ActorCritic {
    let config = ActorCriticConfig {
        inputs: 5,
        hidden: 4,
        actions: 2,
        kind,
        clip,
        rule: bohp::rules::Rule::Clipped,
        fanout,
        init_eta: 0.3,
        init: Default::default(),
    };
    let mut model = config.init(seed, device);
    model.alpha = bump(&model.alpha, 0, 0.5);
    model
}

/// burn autodiff's gradient of `objective` against central finite differences, in f64, for
/// every neuromodulated and plastic kind, with the clip far (no saturation) and near (many
/// traces saturated: the gradient through a saturated entry is 0 on both sides).
#[test]
fn actor_critic_gradients_equal_finite_differences() {
    let (_, xs, ad) = inputs(5);
    let mut saw_saturation = false;
    for kind in [
        RlModelKind::Plastic,
        RlModelKind::Simple,
        RlModelKind::Retroactive,
    ] {
        for (clip, fanout) in [(10.0, false), (0.02, false), (0.02, true), (10.0, true)] {
            if fanout && !kind.modulated() {
                continue;
            }
            let model = small_network(kind, clip, fanout, 3, &ad);
            let (loss, saturated) = objective(&model, &xs);
            saw_saturation |= saturated > 0.2;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let reference = autodiff_groups(&model, &grads);
            let plain = |m: &ActorCritic| value_of(objective(m, &xs).0);
            let h = 1e-6;
            // (parameter, its group in `autodiff_groups`, entries checked)
            let mut checks = vec![("alpha", 3, vec![0, 5, 15]), ("w", 1, vec![0, 5, 15])];
            if kind.modulated() {
                checks.push(("w_m", 8, vec![0, 3]));
            }
            if kind != RlModelKind::Simple {
                checks.push(("eta", 12, vec![0]));
            }
            for (name, group, indices) in checks {
                for index in indices {
                    let analytic = reference[group].as_ref().expect("trained")[index];
                    let fd = (plain(&bumped(&model, name, index, h))
                        - plain(&bumped(&model, name, index, -h)))
                        / (2.0 * h);
                    let err = (analytic - fd).abs() / fd.abs().max(1e-3);
                    assert!(
                        err < 1e-6,
                        "{kind:?} clip {clip} fanout {fanout} {name}[{index}]: autodiff {analytic} vs finite differences {fd}"
                    );
                }
            }
        }
    }
    assert!(saw_saturation, "the small clip saturates some traces");
}

/// `model` with entry `index` of parameter `name` moved by `delta`.
fn bumped(model: &ActorCritic, name: &str, index: usize, delta: f64) -> ActorCritic {
    let mut m = model.clone();
    match name {
        "alpha" => m.alpha = bump(&model.alpha, index, delta),
        "w" => m.w = bump(&model.w, index, delta),
        "w_m" => m.w_m = bump(&model.w_m, index, delta),
        "eta" => m.eta = bump(&model.eta, index, delta),
        other => panic!("no parameter {other} in the check"),
    }
    m
}

/// Every parameter group's gradient from burn autodiff, as host vectors (groups without a
/// gradient, i.e. not trained, are `None`).
fn autodiff_groups(model: &ActorCritic, grads: &GradientsParams) -> Vec<Option<Vec<f64>>> {
    fn g<const D: usize>(p: &Param<Tensor<D>>, grads: &GradientsParams) -> Option<Vec<f64>> {
        grads
            .get::<D>(p.id)
            .map(|t| t.into_data().convert::<f64>().try_to_vec().unwrap())
    }
    vec![
        g(&model.w_in, grads),
        g(&model.w, grads),
        g(&model.b, grads),
        g(&model.alpha, grads),
        g(&model.w_pi, grads),
        g(&model.b_pi, grads),
        g(&model.w_v, grads),
        g(&model.b_v, grads),
        g(&model.w_m, grads),
        g(&model.b_m, grads),
        g(&model.fan_w, grads),
        g(&model.fan_b, grads),
        g(&model.eta, grads),
    ]
}

/// Three gradients agree to 1e-10 relative (f64) for every rule, clips saturated or not, with
/// and without fan-out: burn autodiff, the host network's hand-written reverse pass, and
/// forward mode (one Jacobian-vector product per parameter, the state's tangents carried
/// forward as in RTRL). Checked against either reference, the reverse pass with an injected
/// error is caught: `E` updated before `H`, and `M(t−1)` gating step t's update.
#[test]
fn the_host_reverse_pass_equals_autodiff_and_catches_injected_errors() {
    use bohp::rl::host::{AcParams, HostAc};
    use bohp::rules::faults::Fault;
    let (host_xs, xs, ad) = inputs(8);
    for kind in [
        RlModelKind::NonPlastic,
        RlModelKind::Plastic,
        RlModelKind::Simple,
        RlModelKind::Retroactive,
    ] {
        for (clip, fanout) in [(10.0, false), (0.02, false), (0.02, true)] {
            if fanout && !kind.modulated() {
                continue;
            }
            let model = small_network(kind, clip, fanout, 4, &ad);
            let (loss, _) = objective(&model, &xs);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let reference = autodiff_groups(&model, &grads);
            let net = HostAc::of(&model);
            // The objective's cotangents: of the logits (those of 0.3·log p₀), values, M.
            let rollout = net.forward(&host_xs, BATCH);
            let d_logits: Vec<Vec<f64>> = (0..STEPS)
                .map(|t| {
                    let p = rollout.step_probs(t);
                    (0..BATCH * 2)
                        .map(|i| 0.3 * ((i % 2 == 0) as u8 as f64 - p[i]))
                        .collect()
                })
                .collect();
            let ones = vec![vec![1.0; BATCH]; STEPS];
            let fifths = vec![vec![0.2; BATCH]; STEPS];
            // Forward mode: one Jacobian-vector product per trained parameter entry.
            let mut forward_mode = reference.clone();
            for (group, slot) in forward_mode.iter_mut().enumerate() {
                let Some(values) = slot else { continue };
                for (k, v) in values.iter_mut().enumerate() {
                    *v = net
                        .forward_mode_entry(&host_xs, BATCH, group, k, &d_logits, &ones, &fifths);
                }
            }
            let gap = |a: &AcParams, reference: &[Option<Vec<f64>>]| -> f64 {
                let mut worst: f64 = 0.0;
                for ((name, host), reference) in a.groups().into_iter().zip(reference) {
                    let Some(reference) = reference else { continue };
                    let scale = reference.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
                    for (x, y) in host.iter().zip(reference) {
                        let d = (x - y).abs() / scale;
                        assert!(d.is_finite(), "{kind:?} {name}");
                        worst = worst.max(d);
                    }
                }
                worst
            };
            let reverse = |fault: Option<Fault>| -> AcParams {
                let mut net = net.clone();
                net.fault = fault;
                let rollout = net.forward(&host_xs, BATCH);
                net.backward(&rollout, &d_logits, &ones, &fifths)
            };
            let what = format!("{kind:?} clip {clip} fanout {fanout}");
            let forward_vs_autodiff = gap(
                &AcParams::from_groups(
                    forward_mode
                        .iter()
                        .zip(net.p.groups())
                        .map(|(f, (_, g))| f.clone().unwrap_or_else(|| vec![0.0; g.len()]))
                        .collect(),
                ),
                &reference,
            );
            eprintln!("{what}: forward mode vs autodiff {forward_vs_autodiff:.1e}");
            assert!(
                forward_vs_autodiff <= 1e-10,
                "{what}: forward mode vs autodiff {forward_vs_autodiff}"
            );
            let right = reverse(None);
            for (name, reference) in [("autodiff", &reference), ("forward mode", &forward_mode)] {
                let d = gap(&right, reference);
                assert!(d <= 1e-10, "{what}: host reverse pass vs {name} {d}");
                if kind == RlModelKind::Retroactive {
                    let wrong = gap(&reverse(Some(Fault::EligibilityFirst)), reference);
                    assert!(
                        wrong > 1e-4,
                        "{what}: E updated first not caught by {name} ({wrong})"
                    );
                }
                if kind.modulated() {
                    let wrong = gap(&reverse(Some(Fault::PreviousModulation)), reference);
                    assert!(
                        wrong > 1e-4,
                        "{what}: M(t-1) not caught by {name} ({wrong})"
                    );
                }
            }
        }
    }
}

fn bandit(kind: &str, episodes: usize) -> RlConfig {
    let text = format!(
        "seed = 1\ndevice = \"flex\"\n[task]\nkind = \"bandit\"\nsteps = 50\n[model]\nkind = \"{kind}\"\nhidden = 16\n\
         [train]\nepisodes = {episodes}\nbatch = 16\nlearning_rate = 0.001\ncheckpoint_every = 5\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bandit.toml");
    std::fs::write(&path, text).unwrap();
    RlConfig::load(&path).unwrap()
}

/// A checkpoint round trip continues bit for bit (model, Adam, progress), for the actor-critic
/// (autodiff with burn's Adam, and the fused engine with its host Adam) and the LSTM agent.
#[test]
fn a2c_resumes_exactly_from_a_checkpoint() {
    for (kind, engine) in [
        ("retroactive", "autodiff"),
        ("retroactive", "fused"),
        ("lstm", "autodiff"),
    ] {
        resumes_exactly(kind, engine);
    }
}

fn resumes_exactly(kind: &str, engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(&dir.path().join("run")).unwrap();
    let mut config = bandit(kind, 12);
    config.train.engine = match engine {
        "fused" => bohp::single::config::Engine::Fused,
        _ => bohp::single::config::Engine::Autodiff,
    };
    std::fs::write(run.config_path(), config.to_toml()).unwrap();
    let mut a = RlTrainer::new(config.clone()).unwrap();
    let mut metrics = run.metrics_writer(0).unwrap();
    for _ in 0..6 {
        metrics.write(&a.step().unwrap()).unwrap();
    }
    metrics.flush().unwrap();
    a.checkpoint(&run).unwrap();
    let mut b = RlTrainer::resume(&run, config).unwrap();
    while !a.is_done() {
        let (ra, rb) = (a.step().unwrap(), b.step().unwrap());
        assert_eq!(
            ra.loss.to_bits(),
            rb.loss.to_bits(),
            "{kind} {engine}: update {}",
            ra.episode
        );
        assert_eq!(ra.reward, rb.reward);
    }
}

/// The fused engine's A2C update (each episode rolled out in the environment, the loss, the
/// reverse pass with trace checkpoints) gives burn autodiff's loss and gradient on the same
/// episodes to 1e-10 relative in f64: every kind, every rule of the library in the plastic and
/// simple kinds, clips saturated or not, fan-out, both exploration terms, episodes of 40 steps
/// (three trace segments, the last one partial).
#[test]
fn the_fused_engine_equals_autodiff_on_an_a2c_update() {
    use bohp::rl::fused::FusedAc;
    use bohp::rl::host::AcParams;
    use bohp::rl::model::Agent;
    use bohp::rng::Stream;
    let ad = init_device(Backend::Flex, Precision::F64)
        .unwrap()
        .autodiff();
    // Every kind with the published clipped trace, and the other rules of the library in the
    // plastic and simple kinds (Hebb's and Oja's rule with a learned or modulated rate).
    let cases = [
        ("non-plastic", None),
        ("plastic", None),
        ("simple", None),
        ("retroactive", None),
        ("plastic", Some("hebb")),
        ("plastic", Some("oja")),
        ("simple", Some("hebb")),
        ("simple", Some("oja")),
    ];
    for (kind, rule) in cases {
        for (clip, fanout, exploration) in [
            (10.0, false, "sum-p2"),
            (0.05, false, "entropy"),
            (0.05, true, "sum-p2"),
        ] {
            if fanout && !matches!(kind, "simple" | "retroactive") {
                continue;
            }
            let rule_line = rule
                .map(|r| format!("rule = \"{r}\"\n"))
                .unwrap_or_default();
            let text = format!(
                "seed = 4\ndtype = \"f64\"\n[task]\nkind = \"maze\"\nsteps = 40\nmaze_side = 7\n\
                 [model]\nkind = \"{kind}\"\nhidden = 6\nclip = {clip}\nfanout = {fanout}\ninit_eta = 0.3\n{rule_line}\
                 [train]\nepisodes = 1\nbatch = 3\nlearning_rate = 0.001\nexploration = \"{exploration}\"\n"
            );
            let config: RlConfig = toml::from_str(&text).unwrap();
            config.validate("test").unwrap();
            let trainer = RlTrainer::new(config.clone()).unwrap();
            let Agent::Plastic(model) = trainer.model() else {
                panic!("an actor-critic")
            };
            let (loss, reward, _) =
                trainer.rollout(&Agent::Plastic(model.clone()), Stream::Train, 0, 3, &ad);
            let loss_value = value_of(loss.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let reference = autodiff_groups(&model, &grads);
            let net = config.network();
            let fused = FusedAc::<f64>::new(&net, &AcParams::of(&model)).update(
                config.env_shape(),
                config.seed,
                Stream::Train,
                0,
                3,
                &config.train,
            );
            let what = format!("{kind} {rule:?} clip {clip} fanout {fanout} {exploration}");
            assert_eq!(
                fused.reward, reward,
                "{what}: the same episodes and actions"
            );
            let d = (fused.loss - loss_value).abs() / loss_value.abs();
            assert!(d <= 1e-10, "{what}: loss {} vs {loss_value}", fused.loss);
            let mut worst: f64 = 0.0;
            for ((name, host), reference) in fused.grads.groups().into_iter().zip(&reference) {
                let Some(reference) = reference else { continue };
                let scale = reference.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
                for (x, y) in host.iter().zip(reference) {
                    let d = (x - y).abs() / scale;
                    assert!(d <= 1e-10, "{what}: {name}: fused {x} vs autodiff {y}");
                    worst = worst.max(d);
                }
            }
            eprintln!("{what}: fused vs autodiff {worst:.1e}, loss {d:.1e}");
        }
    }
}

mod training;
