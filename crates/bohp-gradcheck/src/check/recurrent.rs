//! The recurrent network's check: RTRL (or the fused engine above RTRL's size), autodiff and
//! finite differences of the host loss on sampled entries.

use super::*;

/// The recurrent network's gradient groups as `(name, values)`: `w`, and `alpha`, `eta` when
/// trained (`eta` is not with simple modulation), `w_m`, `b_m` with a modulator.
pub fn recurrent_groups<'a>(
    g: &'a HostGrads,
    net: &HostRnn<f64>,
) -> Vec<(&'static str, &'a [f64])> {
    let mut out = vec![("w", g.w.as_slice())];
    if net.plastic {
        out.push(("alpha", g.alpha.as_slice()));
        let simple = net
            .modulator
            .as_ref()
            .is_some_and(|m| m.modulation == Modulation::Simple);
        if !simple {
            out.push(("eta", std::slice::from_ref(&g.eta)));
        }
        if net.modulator.is_some() {
            out.push(("w_m", g.modulator.0.as_slice()));
            out.push(("b_m", std::slice::from_ref(&g.modulator.1)));
        }
    }
    out
}

/// The trained value `index` of group `group` (as [`recurrent_groups`] names them).
fn recurrent_value<'a>(net: &'a mut HostRnn<f64>, group: &str, index: usize) -> &'a mut f64 {
    match group {
        "w" => &mut net.w[index],
        "alpha" => &mut net.alpha[index],
        "eta" => &mut net.eta,
        "w_m" => &mut net.modulator.as_mut().expect("a modulator").w[index],
        _ => &mut net.modulator.as_mut().expect("a modulator").b,
    }
}

/// The gradient entry `index` of group `group` (as [`recurrent_groups`] names them).
fn grad_slot<'a>(g: &'a mut HostGrads, group: &str, index: usize) -> &'a mut f64 {
    match group {
        "w" => &mut g.w[index],
        "alpha" => &mut g.alpha[index],
        "eta" => &mut g.eta,
        "w_m" => &mut g.modulator.0[index],
        _ => &mut g.modulator.1,
    }
}

/// The loss of `ep` by the fused engine's forward pass (f64): `(1/B) Σ_b Σ_j (y_j(T) - t_j)²`.
pub fn recurrent_loss(net: &HostRnn<f64>, ep: &HostEpisodes<'_, f64>) -> f64 {
    let ys = net.forward(ep);
    let (n, bn) = (net.n, ep.batch * net.n);
    let last = &ys[(ep.steps - 1) * bn..];
    let n_t = ep.targets.len() / ep.batch;
    let mut loss = 0.0;
    for b in 0..ep.batch {
        for j in 0..n_t {
            loss += (last[b * n + j] - ep.targets[b * n_t + j]).powi(2);
        }
    }
    loss / ep.batch as f64
}

/// Finite differences of [`recurrent_loss`] on at most `entries` evenly spaced entries of each
/// trained group (all of them when the group is smaller): a gradient set with the other
/// entries `NaN`, and the flat indices checked per group.
///
/// An entry whose extrapolation does not converge to the check's precision (Ridders' error
/// estimate above a tenth of the tolerance, [`unresolved`]: a kink of the clipped rule within
/// the step, or, in a large network over long episodes, a loss whose own rounding divided by
/// the step exceeds 1e-7 of the entry) is `NaN`, so that the comparison leaves it out and
/// counts it, unless it agrees with `reference` within 1e-6 anyway (then it is kept, and
/// checked).
pub fn recurrent_finite_differences(
    net: &HostRnn<f64>,
    ep: &HostEpisodes<'_, f64>,
    entries: usize,
    reference: Option<&HostGrads>,
) -> (HostGrads, Vec<Vec<usize>>) {
    let mut out = HostGrads {
        w: vec![f64::NAN; net.w.len()],
        alpha: vec![f64::NAN; net.alpha.len()],
        eta: f64::NAN,
        modulator: match &net.modulator {
            Some(m) => (vec![f64::NAN; m.w.len()], f64::NAN),
            None => (Vec::new(), 0.0),
        },
    };
    let mut picked = Vec::new();
    let mut probe = net.clone();
    let smooth = net.rule.smooth();
    let scale = floor(
        recurrent_loss(net, ep),
        if smooth { 1e-6 } else { NONSMOOTH_FLOOR },
    );
    // The reference's groups, in the same order as the ones differenced here.
    let reference = reference.map(|r| recurrent_groups(r, net));
    let groups: Vec<(&'static str, usize)> = recurrent_groups(&out, net)
        .iter()
        .map(|(name, v)| (*name, v.len()))
        .collect();
    for (k, (group, len)) in groups.into_iter().enumerate() {
        let indices = evenly_spaced(len, entries);
        for &i in &indices {
            let theta = *recurrent_value(&mut probe, group, i);
            let (estimate, error) =
                ridders(theta, fd_step(&net.rule, RECURRENT_FD_STEP), |value| {
                    *recurrent_value(&mut probe, group, i) = value;
                    recurrent_loss(&probe, ep)
                });
            let agrees = reference.as_ref().is_some_and(|r| {
                let r = r[k].1[i];
                (r - estimate).abs() <= 1e-6 * r.abs().max(estimate.abs()).max(scale)
            });
            let left_out = unresolved(estimate, error, scale) && !agrees;
            let g = if left_out { f64::NAN } else { estimate };
            *recurrent_value(&mut probe, group, i) = theta;
            *grad_slot(&mut out, group, i) = g;
        }
        picked.push(indices);
    }
    (out, picked)
}

/// Runs the recurrent check for `config` (its task, network, rule, seed, device and dtype; the
/// parameters are the config's initial ones), on episodes of the evaluation stream.
pub fn check_recurrent(
    config: &RecurrentConfig,
    options: CheckOptions,
) -> bohp::Result<(Report, Option<Dump>)> {
    let modulation = config
        .plastic_rnn()
        .modulated()
        .then_some(config.model.modulation);
    refuse_absent_modulation_faults(options.recursion, modulation)?;
    if config.model.kind == RecurrentModelKind::Lstm {
        return crate::lstm::check_lstm(config, options);
    }
    if matches!(
        options.recursion,
        Recursion::PaperWeighting | Recursion::DoubleTanh
    ) {
        return Err(bohp::Error::Unsupported(format!(
            "--recursion {}: applies to single-layer configs (the recurrent checks take new-trace, rate-on-old-trace, oja-decay-dropped or gradient-through-clip)",
            options.recursion.name()
        )));
    }
    let rnn = config.plastic_rnn();
    let neurons = rnn.neurons;
    let modulated = modulation.is_some();
    // Above RTRL's size the fused engine is the reference: it takes a known-wrong rule
    // (`Faulty`), but not a mistake in how the rule is used, nor a modulated rule's fault.
    if neurons > RTRL_MAX_NEURONS {
        let refused = match options.recursion {
            Recursion::NewTrace => true,
            Recursion::Fault(_) => modulated,
            _ => false,
        };
        if refused {
            return Err(bohp::Error::Unsupported(format!(
                "--recursion {}: is injected into RTRL, for networks of at most {RTRL_MAX_NEURONS} neurons (this config has {neurons}: model.neurons or task.size)",
                options.recursion.name()
            )));
        }
    }
    let task = config.task()?;
    let values = rnn.init_values(config.seed);
    let net = rnn.host::<f64>(&values);
    let batch = task.batch(config.seed, Stream::Eval, 0, options.episodes, neurons);
    let arrays = batch.to_host::<f64>();
    let ep = arrays.episodes();
    let device = init_device(config.device, config.dtype)?.autodiff();
    let tolerances = Tolerances::for_rule(config.dtype, &rnn.rule);
    let use_rtrl = neurons <= RTRL_MAX_NEURONS;
    let retro = Retroactive {
        bound: net.rule.clip,
    };
    let reference_of = |ep: &HostEpisodes<'_, f64>| -> (f64, HostGrads) {
        let mistake = match options.recursion {
            Recursion::NewTrace => Mistake::NewTrace,
            Recursion::Fault(Fault::PreviousModulation) => Mistake::PreviousModulation,
            _ => Mistake::None,
        };
        match (use_rtrl, options.recursion) {
            (true, Recursion::Fault(fault)) => rtrl_grads_with(
                &Faulty {
                    spec: net.rule,
                    fault,
                },
                &FaultyRetroactive {
                    kernel: retro,
                    fault,
                },
                &net,
                ep,
                mistake,
            ),
            (true, _) => {
                bohp::with_rule!(net.rule, |k| rtrl_grads_with(&k, &retro, &net, ep, mistake))
            }
            (false, Recursion::Fault(fault)) => {
                let pass = net.loss_and_grads_with(
                    Faulty {
                        spec: net.rule,
                        fault,
                    },
                    ep,
                    None,
                );
                (pass.loss, pass.grads)
            }
            (false, _) => {
                let pass = net.loss_and_grads(ep, None);
                (pass.loss, pass.grads)
            }
        }
    };
    let (loss_reference, reference) = reference_of(&ep);
    let reference_name = if use_rtrl { "rtrl" } else { "fused" };
    let (loss_autodiff, ad) = autodiff_grads(&net, &ep, &device);
    let ad_floor = floor(loss_reference, tolerances.autodiff_floor);
    let mut comparisons = vec![Comparison {
        name: format!("autodiff vs {reference_name}"),
        tolerance: tolerances.autodiff_vs_reference,
        floor: ad_floor,
        rows: agreement_groups(
            &recurrent_groups(&ad, &net),
            &recurrent_groups(&reference, &net),
            ad_floor,
        ),
        note: None,
    }];
    let fused = use_rtrl.then(|| net.loss_and_grads(&ep, None));
    if let Some(pass) = &fused {
        let engine_floor = floor(loss_reference, 1e-8);
        comparisons.push(Comparison {
            name: "fused vs rtrl".into(),
            tolerance: tolerances.engine_vs_reference,
            floor: engine_floor,
            rows: agreement_groups(
                &recurrent_groups(&pass.grads, &net),
                &recurrent_groups(&reference, &net),
                engine_floor,
            ),
            note: None,
        });
    }
    if options.finite_differences {
        let (fd, indices) =
            recurrent_finite_differences(&net, &ep, RECURRENT_FD_ENTRIES, Some(&reference));
        let fd_floor = floor(loss_reference, tolerances.finite_difference_floor);
        let counts: Vec<String> = recurrent_groups(&reference, &net)
            .iter()
            .zip(&indices)
            .map(|((n, v), i)| format!("{n} {} of {}", i.len(), v.len()))
            .collect();
        comparisons.push(Comparison {
            name: format!("{reference_name} vs central finite differences"),
            tolerance: tolerances.reference_vs_finite_differences,
            floor: fd_floor,
            rows: agreement_at(
                &recurrent_groups(&reference, &net),
                &recurrent_groups(&fd, &net),
                &indices,
                fd_floor,
            ),
            note: Some(format!("entries checked: {}", counts.join(", "))),
        });
    }
    let rule = match modulation {
        Some(m) => format!("{} with {} modulation", rnn.rule, m.name()),
        None => rnn.rule.to_string(),
    };
    let what = Checked::of(
        "recurrent",
        task.kind.name(),
        rule,
        config.model.plasticity.name(),
        reference_name,
    );
    let run = CheckRun::of(
        &options,
        batch.steps,
        (config.device, config.dtype, config.seed),
    );
    let report = Report::new(
        (what, run),
        (loss_reference, loss_autodiff),
        (comparisons, tolerances),
    );
    let dump = options.dump.then(|| {
        let one = task
            .batch(config.seed, Stream::Eval, 0, 1, neurons)
            .to_host::<f64>();
        let ep1 = one.episodes();
        let (loss, reference) = reference_of(&ep1);
        let (_, ad) = autodiff_grads(&net, &ep1, &device);
        let mut gradients = vec![
            (reference_name.to_string(), reference.clone(), None),
            ("autodiff".to_string(), ad, None),
        ];
        if use_rtrl {
            gradients.push(("fused".into(), net.loss_and_grads(&ep1, None).grads, None));
        }
        if options.finite_differences {
            let (fd, indices) =
                recurrent_finite_differences(&net, &ep1, RECURRENT_FD_ENTRIES, Some(&reference));
            gradients.push(("finite_differences".into(), fd, Some(indices)));
        }
        dump_recurrent(
            producer(&report),
            task.kind.name(),
            &net,
            &ep1,
            loss,
            &gradients,
        )
    });
    Ok((report, dump))
}
