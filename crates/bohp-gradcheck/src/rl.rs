//! `bohp gradcheck` for the neuromodulated actor-critic (`configs/{bandit,cue,maze}.toml`).
//!
//! A2C samples its actions, so the check first records a batch of episodes
//! ([`bohp::rl::replay::Replay`]: observations, actions, rewards, drawn as the trainer draws
//! them); on the replay the A2C loss (advantage held fixed in the policy term, as in training)
//! is a deterministic function of the parameters. Its gradient is then computed four ways:
//!
//! - the reference: the host network's hand-written reverse pass (f64, [`HostAc::backward`]),
//!   built on the rule library's per-connection partials;
//! - burn autodiff on the config's device and dtype (the model every autodiff run trains);
//! - the fused engine (f64), on the same episodes rolled out by itself: its loss must equal the
//!   replay's (it then took the same actions) and its gradient the reference;
//! - forward mode (one Jacobian-vector product per checked entry, the state's tangents carried
//!   forward as in RTRL) and central finite differences (Ridders), both on [`RL_ENTRIES`]
//!   evenly spaced entries of every trained group.
//!
//! `--recursion` injects a known-wrong derivative into the reference
//! ([`bohp::rules::faults`]): `eligibility-first` (retroactive), `previous-modulation`
//! (neuromodulated kinds), `gradient-through-clip` (clipped traces), and the rules' own
//! faults when `model.rule` is hebb or oja.

use bohp::device::init_device;
use bohp::rl::config::RlConfig;
use bohp::rl::fused::FusedAc;
use bohp::rl::host::{AcParams, HostAc, HostState, Rollout};
use bohp::rl::model::{ActorCritic, ActorCriticConfig, Agent, RlModelKind};
use bohp::rl::replay::{Replay, ReplayLoss};
use bohp::rl::train::replay_loss;
use bohp::rng::Stream;
use bohp::rules::Rule;
use bohp::rules::faults::Fault;
use burn::optim::GradientsParams;

use crate::check::{
    CheckOptions, CheckRun, Checked, Comparison, Recursion, Report, Tolerances, producer,
};
use crate::compare::{
    GroupAgreement, NONSMOOTH_FLOOR, RECURRENT_FD_STEP, agreement_at, agreement_groups, derivative,
    evenly_spaced, floor, host,
};
use crate::dump::{Dump, dump_rl};

/// Entries per trained parameter group that forward mode and finite differences check
/// (evenly spaced; every entry of a smaller group).
pub const RL_ENTRIES: usize = 8;

/// Whether the network's loss has kinks (a clipped trace): finite differences then take small
/// steps and may leave entries unresolved.
fn nonsmooth(net: &ActorCriticConfig) -> bool {
    match net.kind {
        RlModelKind::Retroactive => true,
        RlModelKind::Plastic | RlModelKind::Simple => net.rule == Rule::Clipped,
        RlModelKind::NonPlastic | RlModelKind::Lstm => false,
    }
}

/// The known-wrong derivative `recursion` asks for, if it applies to `net`.
fn fault_for(net: &ActorCriticConfig, recursion: Recursion) -> bohp::Result<Option<Fault>> {
    let kind = net.kind;
    let single = matches!(kind, RlModelKind::Plastic | RlModelKind::Simple);
    let applies = match recursion {
        Recursion::Correct => return Ok(None),
        Recursion::Fault(Fault::EligibilityFirst) => kind == RlModelKind::Retroactive,
        Recursion::Fault(Fault::PreviousModulation) => kind.modulated(),
        Recursion::Fault(Fault::GradientThroughClip) => nonsmooth(net),
        Recursion::Fault(Fault::RateOnOldTrace) => single && net.rule == Rule::Hebb,
        Recursion::Fault(Fault::OjaDecayDropped) => single && net.rule == Rule::Oja,
        Recursion::PaperWeighting | Recursion::DoubleTanh | Recursion::NewTrace => false,
    };
    match recursion {
        Recursion::Fault(fault) if applies => Ok(Some(fault)),
        _ => Err(bohp::Error::Unsupported(format!(
            "--recursion {}: does not apply to model.kind = \"{}\" with rule {} (reinforcement-learning configs take eligibility-first with retroactive, previous-modulation with simple or retroactive, gradient-through-clip with a clipped trace, rate-on-old-trace with rule hebb, oja-decay-dropped with rule oja)",
            recursion.name(),
            kind.name(),
            net.rule
        ))),
    }
}

/// The gradient groups of the actor-critic from burn autodiff, in [`AcParams`]'s order (zeros
/// for a group without a gradient).
fn autodiff_params(model: &ActorCritic, grads: &GradientsParams) -> AcParams {
    AcParams::from_groups(vec![
        host(grads, &model.w_in),
        host(grads, &model.w),
        host(grads, &model.b),
        host(grads, &model.alpha),
        host(grads, &model.w_pi),
        host(grads, &model.b_pi),
        host(grads, &model.w_v),
        host(grads, &model.b_v),
        host(grads, &model.w_m),
        host(grads, &model.b_m),
        host(grads, &model.fan_w),
        host(grads, &model.fan_b),
        host(grads, &model.eta),
    ])
}

/// The trained groups of `p` as `(name, values)`.
pub fn trained_groups<'a>(p: &'a AcParams, trained: &[bool]) -> Vec<(&'static str, &'a [f64])> {
    p.groups()
        .into_iter()
        .zip(trained)
        .filter(|(_, t)| **t)
        .map(|((name, v), _)| (name, v.as_slice()))
        .collect()
}

/// The evenly spaced entries checked in each trained group.
fn sampled_indices(p: &AcParams, trained: &[bool]) -> Vec<Vec<usize>> {
    trained_groups(p, trained)
        .iter()
        .map(|(_, v)| evenly_spaced(v.len(), RL_ENTRIES))
        .collect()
}

/// A gradient set of `NaN` but at `indices` of each trained group, filled by `entry(group,
/// index)` (the group's position among all groups).
fn sampled(
    shape: &AcParams,
    trained: &[bool],
    indices: &[Vec<usize>],
    mut entry: impl FnMut(usize, usize) -> f64,
) -> AcParams {
    let mut out = AcParams::from_groups(
        shape
            .groups()
            .iter()
            .map(|(_, v)| vec![f64::NAN; v.len()])
            .collect(),
    );
    let positions: Vec<usize> = (0..trained.len()).filter(|&g| trained[g]).collect();
    for (k, &group) in positions.iter().enumerate() {
        for &i in &indices[k] {
            let value = entry(group, i);
            out.groups_mut()[group].1[i] = value;
        }
    }
    out
}

/// One checked batch: the replay, the host forward pass, and the loss with its cotangents.
struct Recorded {
    replay: Replay,
    rollout: Rollout,
    last: HostState,
    loss: ReplayLoss,
}

fn record(config: &RlConfig, net: &HostAc, episodes: usize) -> Recorded {
    let (replay, rollout, last) = Replay::record(config, net, Stream::Eval, 0, episodes);
    let loss = replay.loss(&rollout, &config.train, None);
    Recorded {
        replay,
        rollout,
        last,
        loss,
    }
}

/// The reference gradient (the host reverse pass, with `fault` injected if any).
fn reference(net: &HostAc, c: &Recorded, fault: Option<Fault>) -> AcParams {
    let mut net = net.clone();
    net.fault = fault;
    let zeros = vec![vec![0.0; c.replay.batch]; c.replay.steps()];
    net.backward(&c.rollout, &c.loss.d_logits, &c.loss.d_values, &zeros)
}

/// Runs the reinforcement-learning check for `config` (its environment, network kind, rule,
/// sizes, seed, device and dtype; the parameters are the config's initial ones), on episodes of
/// the evaluation stream.
pub fn check_rl(config: &RlConfig, options: CheckOptions) -> bohp::Result<(Report, Option<Dump>)> {
    let net = config.network();
    if net.kind == RlModelKind::Lstm {
        return Err(bohp::Error::Unsupported(
            "gradcheck checks the recurrent actor-critic kinds; the LSTM baseline has no hand-derived gradient to check (model.kind = \"lstm\")".into(),
        ));
    }
    let fault = fault_for(&net, options.recursion)?;
    let trained = net.trainable();
    let values = net.init_values(config.seed);
    let host_net = HostAc::new(&net, values.clone());
    let checked = record(config, &host_net, options.episodes);
    let loss_reference = checked.loss.loss;
    let reference_grads = reference(&host_net, &checked, fault);
    let spec = if net.kind == RlModelKind::Retroactive {
        format!("retroactive(±{})", net.clip)
    } else if net.kind.plastic() {
        net.rule_spec().to_string()
    } else {
        "none".to_string()
    };
    let mut tolerances = Tolerances::for_precision(config.dtype);
    // The A2C loss sums a few hundred steps' terms per episode, so its magnitude is large
    // against single parameters' gradients (published initialization: α ~ 0.001): the finite
    // differences' cancellation, about 1e-12·|L| here, resolves entries down to
    // 1e-5·max(1, |L|), not 1e-6 (measured: configs/maze-small-hebb.toml, α entries of 2e-4
    // agree to 2e-10 absolute).
    tolerances.finite_difference_floor = NONSMOOTH_FLOOR;

    // burn autodiff on the replay.
    let device = init_device(config.device, config.dtype)?.autodiff();
    let model = net.from_values(&values, &device);
    let agent = Agent::Plastic(model.clone());
    let loss = replay_loss(&agent, &checked.replay, &config.train, &device);
    let loss_autodiff = loss
        .clone()
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("f64")[0];
    let Agent::Plastic(model) = agent else {
        unreachable!("an actor-critic")
    };
    let ad = autodiff_params(
        &model,
        &GradientsParams::from_grads(loss.backward(), &model),
    );
    let ad_floor = floor(loss_reference, tolerances.autodiff_floor);
    let mut comparisons = vec![Comparison {
        name: "autodiff vs host".into(),
        tolerance: tolerances.autodiff_vs_reference,
        floor: ad_floor,
        rows: agreement_groups(
            &trained_groups(&ad, &trained),
            &trained_groups(&reference_grads, &trained),
            ad_floor,
        ),
        note: None,
    }];

    // The fused engine on the same episodes (its own rollout: same actions iff same loss).
    let fused = FusedAc::<f64>::new(&net, &values).update(
        config.env_shape(),
        config.seed,
        Stream::Eval,
        0,
        options.episodes,
        &config.train,
    );
    let engine_floor = floor(loss_reference, 1e-8);
    let fused_loss_gap = (fused.loss - loss_reference).abs() / loss_reference.abs().max(1.0);
    comparisons.push(Comparison {
        name: "fused vs host".into(),
        tolerance: tolerances.engine_vs_reference,
        floor: engine_floor,
        rows: {
            let mut rows = agreement_groups(
                &trained_groups(&fused.grads, &trained),
                &trained_groups(&reference_grads, &trained),
                engine_floor,
            );
            rows.push(GroupAgreement {
                group: "loss".into(),
                count: 1,
                max_abs: (fused.loss - loss_reference).abs(),
                max_rel: fused_loss_gap,
                cosine: 1.0,
                unresolved: 0,
            });
            rows
        },
        note: Some("the fused engine rolls the episodes out itself: its loss equals the replay's only if it took the same actions".into()),
    });

    // Forward mode and finite differences on sampled entries.
    let indices = sampled_indices(&values, &trained);
    let counts: Vec<String> = trained_groups(&values, &trained)
        .iter()
        .zip(&indices)
        .map(|((n, v), i)| format!("{n} {} of {}", i.len(), v.len()))
        .collect();
    let note = format!("entries checked: {}", counts.join(", "));
    let no_modulation = vec![vec![0.0; checked.replay.batch]; checked.replay.steps()];
    let forward = sampled(&values, &trained, &indices, |g, i| {
        host_net.forward_mode_entry(
            &checked.replay.observations,
            checked.replay.batch,
            g,
            i,
            &checked.loss.d_logits,
            &checked.loss.d_values,
            &no_modulation,
        )
    });
    comparisons.push(Comparison {
        name: "forward mode vs host".into(),
        tolerance: tolerances.engine_vs_reference,
        floor: engine_floor,
        rows: agreement_at(
            &trained_groups(&forward, &trained),
            &trained_groups(&reference_grads, &trained),
            &indices,
            engine_floor,
        ),
        note: Some(note.clone()),
    });
    let fd = options.finite_differences.then(|| {
        finite_differences(
            &host_net,
            &checked,
            &config.train,
            &trained,
            &indices,
            nonsmooth(&net),
        )
    });
    if let Some(fd) = &fd {
        let fd_floor = floor(loss_reference, tolerances.finite_difference_floor);
        comparisons.push(Comparison {
            name: "host vs central finite differences".into(),
            tolerance: tolerances.reference_vs_finite_differences,
            floor: fd_floor,
            rows: agreement_at(
                &trained_groups(&reference_grads, &trained),
                &trained_groups(fd, &trained),
                &indices,
                fd_floor,
            ),
            note: Some(note),
        });
    }
    let shape = config.env_shape();
    let what = Checked::of(
        "reinforcement",
        config.task.kind.name(),
        spec,
        net.kind.name(),
        "host",
    );
    let run = CheckRun::of(
        &options,
        shape.steps,
        (config.device, config.dtype, config.seed),
    );
    let report = Report::new(
        (what, run),
        (loss_reference, loss_autodiff),
        (comparisons, tolerances),
    );
    let dump = options.dump.then(|| {
        let one = record(config, &host_net, 1);
        let mut gradients = vec![("host".to_string(), reference(&host_net, &one, fault), None)];
        let model = net.from_values(&values, &device);
        let loss = replay_loss(
            &Agent::Plastic(model.clone()),
            &one.replay,
            &config.train,
            &device,
        );
        gradients.push((
            "autodiff".to_string(),
            autodiff_params(
                &model,
                &GradientsParams::from_grads(loss.backward(), &model),
            ),
            None,
        ));
        if options.finite_differences {
            let fd = finite_differences(
                &host_net,
                &one,
                &config.train,
                &trained,
                &indices,
                nonsmooth(&net),
            );
            gradients.push(("finite_differences".to_string(), fd, Some(indices.clone())));
        }
        dump_rl(
            producer(&report),
            config,
            &host_net,
            &one.replay,
            &one.rollout,
            &one.last,
            &one.loss,
            &trained,
            &gradients,
        )
    });
    Ok((report, dump))
}

/// Central finite differences (Ridders) of the replay's loss, the policy term's advantage held
/// at its value at the unperturbed parameters, on `indices` of each trained group.
///
/// With clipped traces the loss is smooth only piecewise: an episode of a few hundred steps over
/// `N²` traces has so many kinks where an entry meets the clip (the published maze: 200 steps,
/// 10⁴ traces) that a step of any usable size crosses some. The differences are therefore taken
/// of the smooth piece that holds at the checked parameters: each trace entry's branch of the
/// clip (inside, at `+c`, at `-c`) held as it is there ([`HostAc::frozen`], the rule library's
/// `on_side`). At a point off the kinks (almost every point) that piece has the loss's value and
/// gradient, so the check is of the same gradient, with the ordinary step.
fn finite_differences(
    net: &HostAc,
    c: &Recorded,
    train: &bohp::rl::config::RlTrainConfig,
    trained: &[bool],
    indices: &[Vec<usize>],
    nonsmooth: bool,
) -> AcParams {
    let scale = floor(c.loss.loss, NONSMOOTH_FLOOR);
    let mut probe = net.clone();
    if nonsmooth {
        probe.frozen = Some(std::sync::Arc::new(c.rollout.sides()));
    }
    sampled(&net.p, trained, indices, |group, i| {
        let theta = net.p.groups()[group].1[i];
        let g = derivative(theta, RECURRENT_FD_STEP, nonsmooth, scale, |value| {
            probe.p.groups_mut()[group].1[i] = value;
            c.replay.loss_under(&probe, train, &c.loss.advantages)
        });
        probe.p.groups_mut()[group].1[i] = theta;
        g
    })
}
