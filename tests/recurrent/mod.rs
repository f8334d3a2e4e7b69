//! Recurrent plastic networks: RTRL vs autodiff vs the fused engine, the memorisation tasks
//! and their baselines, the CIFAR-10 reader, and the CLI with image figures.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use bohp::device::{Backend, Precision, init_device};
use bohp::engines::fused::{EpisodeBatch, HostGrads, HostRnn, sqrt_interval};
use bohp::learner::{Learner, Outcome, train};
use bohp::recurrent::config::RecurrentConfig;
use bohp::recurrent::images::{CIFAR_RECORD, PIXELS, read_cifar10};
use bohp::recurrent::train::RecurrentTrainer;
use bohp::rules::faults::Fault;
use bohp::rules::{Rule, RuleSpec};
use bohp::run::RunDir;
use bohp::single::config::Engine;
use bohp_gradcheck::check::{
    AnyConfig, CheckOptions, RECURRENT_FD_ENTRIES, Recursion, check_any, check_recurrent,
    recurrent_finite_differences,
};
use bohp_gradcheck::rtrl::{autodiff_grads, relative_differences, rtrl_grads};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::backend_matrix;
use crate::common::{repo_root, run_bohp};

/// The clipped rule's bound in these cases: small enough that some traces saturate.
const CLIP: f64 = 0.25;

/// A random network and batch with non-trivial dynamics: recurrent weights of gain ~0.9,
/// strong plasticity, inputs on some steps only, optional clamping of a few neurons.
struct Case {
    net: HostRnn<f64>,
    steps: usize,
    batch: usize,
    inputs: Vec<f64>,
    clamp: Option<Vec<f64>>,
    targets: Vec<f64>,
}

fn case(
    n: usize,
    steps: usize,
    rule: Rule,
    shared: bool,
    clamp: bool,
    plastic: bool,
    seed: u64,
) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut normal = |std: f64| std * rng.sample::<f64, _>(StandardNormal);
    let gain = 0.9 / (n as f64).sqrt();
    let w: Vec<f64> = (0..n * n).map(|_| normal(gain)).collect();
    let alpha: Vec<f64> = if shared {
        vec![0.6]
    } else {
        (0..n * n).map(|_| normal(0.6)).collect()
    };
    let batch = 2;
    let mut inputs = vec![0.0; steps * batch * n];
    let mut mask = vec![0.0; steps * batch * n];
    for t in 0..steps {
        if t % 10 < 4 {
            for k in 0..batch * n {
                inputs[t * batch * n + k] = normal(1.0);
                // Clamp the first two neurons while inputs are on.
                if clamp && k % n < 2 {
                    mask[t * batch * n + k] = 1.0;
                    inputs[t * batch * n + k] = inputs[t * batch * n + k].tanh();
                }
            }
        }
    }
    let targets: Vec<f64> = (0..batch * (n - 1))
        .map(|_| if normal(1.0) > 0.0 { 0.5 } else { -0.5 })
        .collect();
    Case {
        net: HostRnn {
            n,
            w,
            alpha,
            eta: 0.2,
            rule: RuleSpec { rule, clip: CLIP },
            plastic,
            modulator: None,
        },
        steps,
        batch,
        inputs,
        clamp: clamp.then_some(mask),
        targets,
    }
}

impl Case {
    fn episodes(&self) -> EpisodeBatch<'_, f64> {
        EpisodeBatch {
            steps: self.steps,
            batch: self.batch,
            inputs: &self.inputs,
            clamp: self.clamp.as_deref(),
            targets: &self.targets,
        }
    }

    /// The fraction of trace entries (over every step and episode) at the clip.
    fn saturated_fraction(&self) -> f64 {
        let n = self.net.n;
        let ys = self.net.forward(&self.episodes());
        let (mut at_bound, mut total) = (0usize, 0usize);
        for b in 0..self.batch {
            let mut h = vec![0.0; n * n];
            let mut y_prev = vec![0.0; n];
            for t in 0..self.steps {
                let y = &ys[(t * self.batch + b) * n..(t * self.batch + b + 1) * n];
                for (ij, hv) in h.iter_mut().enumerate() {
                    *hv = self
                        .net
                        .rule
                        .local(*hv, y_prev[ij / n], y[ij % n], self.net.eta)
                        .value;
                    at_bound += usize::from(hv.abs() >= self.net.rule.clip);
                    total += 1;
                }
                y_prev = y.to_vec();
            }
        }
        at_bound as f64 / total as f64
    }
}

/// (rule, shared α, clamping, plasticity) combinations every check covers.
const VARIANTS: [(Rule, bool, bool, bool); 9] = [
    (Rule::Hebb, false, false, true),
    (Rule::Oja, false, false, true),
    (Rule::Hebb, true, false, true),
    (Rule::Oja, true, true, true),
    (Rule::Hebb, false, true, true),
    (Rule::Hebb, false, false, false),
    (Rule::Clipped, false, false, true),
    (Rule::Clipped, true, true, true),
    (Rule::Clipped, false, true, true),
];

fn assert_close(what: &str, a: &HostGrads, b: &HostGrads, tol: f64) {
    let rel = relative_differences(a, b);
    assert!(
        rel.iter().all(|&r| r <= tol),
        "{what}: relative differences [W, α, η] = {rel:?} exceed {tol:e}"
    );
    let scale = a.w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        scale > 1e-6,
        "{what}: the gradient must not vanish (max |dL/dW| = {scale:e})"
    );
}

#[test]
fn the_clipped_cases_saturate_some_traces() {
    for (k, &(rule, shared, clamp, plastic)) in VARIANTS.iter().enumerate() {
        if rule == Rule::Clipped {
            let c = case(10, 120, rule, shared, clamp, plastic, 10 + k as u64);
            let f = c.saturated_fraction();
            assert!(
                f > 0.02 && f < 0.98,
                "shared={shared} clamp={clamp}: {f} of the trace entries at the clip"
            );
        }
    }
}

/// RTRL (f64) against burn autodiff on every backend and precision, every rule and variant.
fn rtrl_equals_autodiff(backend: Backend, precision: Precision) {
    let device = init_device(backend, precision).unwrap().autodiff();
    // f32 rounding grows with the episode: shorter episodes and the f32 tolerance.
    let (steps, tol, loss_tol) = match precision {
        Precision::F64 => (120, 1e-10, 1e-12),
        Precision::F32 => (40, 1e-2, 1e-4),
    };
    for (k, &(rule, shared, clamp, plastic)) in VARIANTS.iter().enumerate() {
        let c = case(10, steps, rule, shared, clamp, plastic, 10 + k as u64);
        let (loss_r, rtrl) = rtrl_grads(&c.net, &c.episodes());
        let (loss_a, auto) = autodiff_grads(&c.net, &c.episodes(), &device);
        assert!(
            (loss_r - loss_a).abs() <= loss_tol * loss_r.abs().max(1.0),
            "losses {loss_r} vs {loss_a}"
        );
        assert_close(
            &format!(
                "{backend} {precision} {rule} shared={shared} clamp={clamp} plastic={plastic}"
            ),
            &rtrl,
            &auto,
            tol,
        );
    }
}

backend_matrix! {
    rtrl_autodiff => rtrl_equals_autodiff,
}

#[test]
fn fused_engine_equals_rtrl_for_every_variant_and_checkpoint_interval() {
    for (k, &(rule, shared, clamp, plastic)) in VARIANTS.iter().enumerate() {
        let c = case(9, 110, rule, shared, clamp, plastic, 40 + k as u64);
        let (loss_r, rtrl) = rtrl_grads(&c.net, &c.episodes());
        for interval in [None, Some(1), Some(2), Some(7), Some(500)] {
            let pass = c.net.loss_and_grads(&c.episodes(), interval);
            assert!((pass.loss - loss_r).abs() <= 1e-12 * loss_r.max(1.0));
            assert_close(
                &format!(
                    "fused K={interval:?} {rule} shared={shared} clamp={clamp} plastic={plastic}"
                ),
                &pass.grads,
                &rtrl,
                1e-10,
            );
        }
        // The forward pass alone gives the same last step.
        let ys = c.net.forward(&c.episodes());
        let pass = c.net.loss_and_grads(&c.episodes(), None);
        assert_eq!(&ys[(c.steps - 1) * c.batch * c.net.n..], &pass.y_last[..]);
    }
}

#[test]
fn rtrl_equals_finite_differences_for_every_rule() {
    for (k, &(rule, shared, clamp, plastic)) in VARIANTS.iter().enumerate() {
        let mut c = case(6, 60, rule, shared, clamp, plastic, 70 + k as u64);
        if rule == Rule::Clipped {
            // A looser clip than the other tests': fewer entries sit at the bound, where a
            // finite-difference step can cross the clip's kink; still some saturate.
            c.net.rule.clip = 0.6;
            let f = c.saturated_fraction();
            assert!(
                f > 0.001,
                "shared={shared} clamp={clamp}: {f} of the trace entries at the clip"
            );
        }
        let (loss, rtrl) = rtrl_grads(&c.net, &c.episodes());
        let (fd, indices) = recurrent_finite_differences(&c.net, &c.episodes(), usize::MAX, None);
        assert_eq!(indices[0].len(), 36, "every W entry");
        let floor = bohp_gradcheck::check::Tolerances::for_rule(Precision::F64, &c.net.rule)
            .finite_difference_floor
            * loss.max(1.0);
        use bohp_gradcheck::check::recurrent_groups;
        let rows = bohp_gradcheck::compare::agreement_groups(
            &recurrent_groups(&rtrl, &c.net),
            &recurrent_groups(&fd, &c.net),
            floor,
        );
        let worst = bohp_gradcheck::compare::worst_relative(&rows);
        assert!(
            worst <= 1e-6,
            "{rule} shared={shared} clamp={clamp} plastic={plastic}: {rows:?}"
        );
        // Only the clipped rule's kinks may leave entries unresolved, and few.
        let left_out: usize = rows.iter().map(|r| r.unresolved).sum();
        let count: usize = rows.iter().map(|r| r.count).sum();
        assert!(
            if rule == Rule::Clipped {
                10 * left_out <= count
            } else {
                left_out == 0
            },
            "{rule}: {left_out} of {count} unresolved"
        );
    }
    assert_eq!(RECURRENT_FD_ENTRIES, 24);
}

#[test]
fn rtrl_detects_a_perturbed_parameter() {
    // The comparison resolves small differences: perturbing one α by 1e-6 changes the
    // gradients far beyond 1e-10.
    let c = case(8, 100, Rule::Oja, false, false, true, 5);
    let (_, rtrl) = rtrl_grads(&c.net, &c.episodes());
    let mut other = c.net.clone();
    other.alpha[3] += 1e-6;
    let pass = other.loss_and_grads(&c.episodes(), None);
    let rel = relative_differences(&pass.grads, &rtrl);
    assert!(rel.iter().any(|&r| r > 1e-9), "{rel:?}");
}

/// With a small `η` (the trained networks' 0.01-0.02) the default pass walks the traces
/// backwards by the rule's inverse (Hebb, Oja): two traces held whatever the episode's length,
/// and the gradients of RTRL to 1e-10 (f64); the clipped rule, which no inverse undoes, keeps
/// its checkpoints and agrees as well.
#[test]
fn walking_the_traces_backwards_equals_rtrl_and_holds_two_traces() {
    for (k, &(rule, shared, clamp, plastic)) in VARIANTS.iter().enumerate() {
        let mut c = case(9, 110, rule, shared, clamp, plastic, 40 + k as u64);
        c.net.eta = 0.02;
        let (loss_r, rtrl) = rtrl_grads(&c.net, &c.episodes());
        let pass = c.net.loss_and_grads(&c.episodes(), None);
        let what = format!("{rule} shared={shared} clamp={clamp} plastic={plastic}");
        assert!(
            (pass.loss - loss_r).abs() <= 1e-12 * loss_r.max(1.0),
            "{what}"
        );
        assert_close(&what, &pass.grads, &rtrl, 1e-10);
        if plastic {
            let walks = rule != Rule::Clipped;
            assert_eq!(
                pass.traces_held <= 3,
                walks,
                "{what}: {} traces held",
                pass.traces_held
            );
        }
    }
    // A large η would grow the rounding too much: the pass checkpoints instead.
    let c = case(9, 110, Rule::Hebb, false, false, true, 40);
    assert!(c.net.loss_and_grads(&c.episodes(), None).traces_held > 3);
}

#[test]
fn fused_checkpointing_keeps_few_traces() {
    let c = case(6, 106, Rule::Hebb, false, false, true, 3);
    let all = c.net.loss_and_grads(&c.episodes(), Some(1)).traces_held;
    let sqrt = c
        .net
        .loss_and_grads(&c.episodes(), Some(sqrt_interval(106)))
        .traces_held;
    assert!(all >= 106, "interval 1 keeps every trace ({all})");
    assert!(
        sqrt <= 2 * 11 + 4,
        "interval ⌈√106⌉ = 11 keeps ~2√T traces ({sqrt})"
    );
}

fn config(name: &str) -> RecurrentConfig {
    RecurrentConfig::load(&repo_root().join("configs").join(format!("{name}.toml"))).unwrap()
}

fn train_to_end(config: RecurrentConfig) -> bohp::recurrent::train::RecurrentSummary {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(&dir.path().join("run")).unwrap();
    let mut trainer = RecurrentTrainer::new(config).unwrap();
    match train(&run, &mut trainer, &mut (), &AtomicBool::new(false)).unwrap() {
        Outcome::Finished(summary) => summary,
        Outcome::Interrupted { .. } => panic!("not interrupted"),
    }
}

/// The 2018 paper's claim on the 50-bit task, same budget (400 updates of 16 episodes) for
/// all: the plastic network recalls the erased bits; the non-plastic RNN of the same size and
/// an LSTM with as many parameters cannot (chance is 0.5).
#[test]
fn plastic_network_memorises_50_bit_patterns_and_baselines_do_not() {
    let plastic = train_to_end(config("memorisation-50"));
    let non_plastic = train_to_end(config("memorisation-50-nonplastic"));
    let lstm = train_to_end(config("memorisation-50-lstm"));
    assert!(
        plastic.eval_error < 0.04,
        "plastic held-out error {}",
        plastic.eval_error
    );
    assert!(
        non_plastic.eval_error > 0.4,
        "non-plastic held-out error {}",
        non_plastic.eval_error
    );
    assert!(
        lstm.eval_error > 0.4,
        "LSTM held-out error {}",
        lstm.eval_error
    );
    assert!(
        lstm.params >= plastic.params,
        "the LSTM has at least the plastic network's parameters"
    );
}

#[test]
fn fused_and_autodiff_training_agree_in_f64() {
    // Ten updates of the 50-bit task, both engines from the same initial values: the same
    // parameters to rounding, hence the same losses.
    let mut a = config("memorisation-50");
    a.dtype = Precision::F64;
    a.train.episodes = 10;
    a.train.batch = 2;
    a.train.eval_episodes = 4;
    engines_agree("memorisation-50", a);
    // And with a modulator, simple and retroactive (the fused engine keeps E beside H).
    for modulation in [
        bohp::rules::Modulation::Simple,
        bohp::rules::Modulation::Retroactive,
    ] {
        let mut m = config("memorisation-50-retroactive");
        m.model.modulation = modulation;
        m.train.engine = Engine::Fused;
        m.dtype = Precision::F64;
        m.train.episodes = 10;
        m.train.batch = 2;
        m.train.eval_episodes = 4;
        engines_agree(&format!("memorisation-50, {modulation} modulation"), m);
    }
}

fn write_cifar(path: &Path, records: &[(u8, [u8; 3])]) {
    let mut bytes = Vec::new();
    for (label, rgb) in records {
        bytes.push(*label);
        for &c in rgb {
            bytes.extend(std::iter::repeat_n(c, PIXELS));
        }
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn cifar10_reader_converts_to_grey_and_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("data_batch_1.bin");
    write_cifar(
        &a,
        &[(3, [255, 255, 255]), (0, [0, 0, 0]), (9, [255, 0, 0])],
    );
    let images = read_cifar10(&a).unwrap();
    assert_eq!(images.len(), 3);
    assert!(
        images[0].iter().all(|&v| (v - 1.0).abs() < 1e-5),
        "white is +1"
    );
    assert!(images[1].iter().all(|&v| v == -1.0), "black is -1");
    let red = 0.299f32 * 2.0 - 1.0;
    assert!(
        images[2].iter().all(|&v| (v - red).abs() < 1e-5),
        "pure red has luma 0.299"
    );
    // A directory reads every *.bin in order.
    write_cifar(
        &dir.path().join("data_batch_2.bin"),
        &[(1, [128, 128, 128])],
    );
    std::fs::write(dir.path().join("readme.txt"), "not data").unwrap();
    assert_eq!(read_cifar10(dir.path()).unwrap().len(), 4);
    // Truncated file, bad label, missing file: errors name the file and what was expected.
    let bad = dir.path().join("truncated.bin");
    std::fs::write(&bad, vec![0u8; CIFAR_RECORD + 5]).unwrap();
    let e = read_cifar10(&bad).unwrap_err().to_string();
    assert!(e.contains("truncated.bin") && e.contains("3073"), "{e}");
    let bad = dir.path().join("label.bin");
    write_cifar(&bad, &[(12, [0, 0, 0])]);
    let e = read_cifar10(&bad).unwrap_err().to_string();
    assert!(
        e.contains("label.bin") && e.contains("label byte 12"),
        "{e}"
    );
    let e = read_cifar10(&dir.path().join("none.bin"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("none.bin"), "{e}");
}

#[test]
fn cli_trains_an_image_run_on_cifar_files_and_draws_the_reconstructions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    std::fs::create_dir(&data).unwrap();
    let records: Vec<(u8, [u8; 3])> = (0..6)
        .map(|k| (k as u8, [40 * k as u8, 200 - 30 * k as u8, 90]))
        .collect();
    write_cifar(&data.join("data_batch_1.bin"), &records);
    let text = std::fs::read_to_string(repo_root().join("configs/images.toml")).unwrap();
    let mut table: toml::Table = text.parse().unwrap();
    table["task"]
        .as_table_mut()
        .unwrap()
        .insert("images".into(), data.display().to_string().into());
    let train = table["train"].as_table_mut().unwrap();
    train.insert("episodes".into(), 2.into());
    train.insert("batch".into(), 1.into());
    train.insert("eval_episodes".into(), 2.into());
    let path = dir.path().join("images.toml");
    std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
    let out = dir.path().join("run");
    let o = run_bohp(&[
        "train",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    crate::common::assert_success(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("images plastic") && stdout.contains("peak memory"),
        "{stdout}"
    );
    // Image runs report the error of a blank reconstruction beside their own.
    assert!(stdout.contains("a blank half scores"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["blank_error"].is_number(), "{summary}");
    assert!(summary["wall_seconds"].as_f64().unwrap() > 0.0, "{summary}");
    // `bohp eval` loads the trained model and reproduces the run's held-out measures.
    let o = run_bohp(&["eval", out.to_str().unwrap(), "--episodes", "2", "--json"]);
    crate::common::assert_success(&o);
    let eval: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for (key, summary_key) in [
        ("error", "eval_error"),
        ("loss", "eval_loss"),
        ("blank_error", "blank_error"),
    ] {
        let (a, b) = (
            eval[key].as_f64().unwrap(),
            summary[summary_key].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 1e-9 * b.abs().max(1e-9),
            "{key}: eval {a} vs summary {b}"
        );
    }
    // Resuming a finished recurrent run has nothing to do, and says so.
    let o = run_bohp(&["train", "--resume", out.to_str().unwrap(), "--quiet"]);
    crate::common::assert_success(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("nothing to do"), "{stdout}");
    // A CIFAR file that fails to read (truncated: exists, so the config validates) fails
    // before the first update, naming the file, and leaves no run directory behind.
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    write_cifar(&broken.join("data_batch_1.bin"), &records[..2]);
    let file = broken.join("data_batch_1.bin");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
    table["task"]
        .as_table_mut()
        .unwrap()
        .insert("images".into(), broken.display().to_string().into());
    let broken_config = dir.path().join("broken.toml");
    std::fs::write(&broken_config, toml::to_string(&table).unwrap()).unwrap();
    let broken_run = dir.path().join("broken-run");
    let o = run_bohp(&[
        "train",
        broken_config.to_str().unwrap(),
        "--out",
        broken_run.to_str().unwrap(),
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("data_batch_1.bin"), "{stderr}");
    assert!(
        !broken_run.exists(),
        "a run that fails before its first update leaves no directory"
    );
    let png = std::fs::read(out.join("reconstruction.png")).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    // 6 columns (3 shown, probe, network, original) by 4 rows of 128-pixel images.
    assert!(
        info.width >= 6 * 128 && info.height >= 4 * 128,
        "{}x{}",
        info.width,
        info.height
    );
    for file in ["config.toml", "metrics.csv", "model.bpk", "summary.json"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    // A bad value in a recurrent config is named.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text.replace("[model]", "[model]\nneurons = 10")).unwrap();
    let o = run_bohp(&[
        "train",
        bad.to_str().unwrap(),
        "--out",
        dir.path().join("bad").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("model.neurons"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("bad").exists(),
        "nothing is created for a rejected config"
    );
}

/// The fused config `a` and its autodiff twin, trained side by side for 10 updates: the same
/// losses and η to 1e-9 (f64).
fn engines_agree(what: &str, a: RecurrentConfig) {
    let mut b = a.clone();
    b.train.engine = bohp::single::config::Engine::Autodiff;
    let (mut ta, mut tb) = (
        RecurrentTrainer::new(a).unwrap(),
        RecurrentTrainer::new(b).unwrap(),
    );
    for _ in 0..10 {
        let (ra, rb) = (ta.step().unwrap(), tb.step().unwrap());
        assert!(
            (ra.loss - rb.loss).abs() <= 1e-9 * ra.loss.max(1.0),
            "{what}: {} vs {}",
            ra.loss,
            rb.loss
        );
        assert!(
            (ra.eta - rb.eta).abs() <= 1e-9,
            "{what}: {} vs {}",
            ra.eta,
            rb.eta
        );
    }
}

mod checks;
mod resume;
