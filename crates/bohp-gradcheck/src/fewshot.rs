//! `bohp gradcheck` for the 2018 few-shot network (`configs/omniglot*.toml`).
//!
//! The loss of a batch of training episodes (the config's ways, shots and queries, drawn from
//! the evaluation stream of the training alphabets, no augmentation) is differentiated by burn
//! autodiff on the config's device and dtype, and checked in two parts:
//!
//! - **the plastic layer** against a host reference (f64): from the embeddings, the support
//!   steps' traces by the rule library (`H ← f(H, pre = embedding, post = label, η)`), the
//!   queries' logits `x_q·(w + α ⊙ H) + mask`, the mean cross-entropy, and a hand-written
//!   reverse pass through the rule's partials ([`bohp::rules::vjp`]); the gradients of `w`, `α`
//!   and `η` compared, and the reference against central finite differences;
//! - **the convolutional embedding** (every convolution's weight and bias, and batch
//!   normalization's scale and shift when on) against central finite differences of the loss
//!   computed by the burn model itself, on [`FEWSHOT_ENTRIES`] evenly spaced entries per group
//!   (only with `--dtype f64`: finite differences of an f32 loss resolve nothing).
//!
//! `--recursion` injects a rule's known-wrong derivative into the host reference
//! (`rate-on-old-trace` with hebb, `oja-decay-dropped` with oja, `gradient-through-clip` with
//! clipped).

use bohp::device::Precision;
use bohp::omniglot::config::OmniglotConfig;
use bohp::omniglot::model::{EpisodeBatch, FewShotNet};
use bohp::omniglot::train::OmniglotTrainer;
use bohp::rules::faults::{Fault, Faulty, FaultyRetroactive};
use bohp::rules::retroactive::{Local2, TwoTraceKernel};
use bohp::rules::{Local, Modulation, Retroactive, Rule, RuleKernel, RuleSpec};
use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::check::{
    CheckOptions, CheckRun, Checked, Comparison, Recursion, Report, Tolerances, producer,
};
use crate::compare::{
    NONSMOOTH_FLOOR, RECURRENT_FD_STEP, agreement_at, agreement_groups, derivative, evenly_spaced,
    floor, host, sampled_agreement, scalar, view,
};
use crate::dump::{Dump, dump_fewshot};

/// Entries per parameter group of the embedding (and of `w`, `α`) that finite differences
/// check (evenly spaced; every entry of a smaller group).
pub const FEWSHOT_ENTRIES: usize = 8;

/// The plastic layer's inputs on the host: one batch's embeddings, labels, mask and targets.
#[derive(Debug, Clone)]
pub struct LayerInputs {
    /// Episodes `B`, support steps `S`, queries `Q`, channels `C`, output units `O`.
    pub sizes: (usize, usize, usize, usize, usize),
    /// Embeddings `[B, S + Q, C]` (support first).
    pub embeddings: Vec<f64>,
    /// Support labels, one-hot, `[B, S, O]`.
    pub support: Vec<f64>,
    /// `[B, O]`: 0 on the episode's classes, −10⁴ elsewhere.
    pub mask: Vec<f64>,
    /// Each query's unit, `[B·Q]`.
    pub target: Vec<usize>,
}

/// The plastic layer's parameters on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerParams {
    /// `[C, O]`.
    pub w: Vec<f64>,
    /// `[C, O]`.
    pub alpha: Vec<f64>,
    /// `[1]`.
    pub eta: Vec<f64>,
    /// The modulator's weights `[C]` (empty without modulation).
    pub w_m: Vec<f64>,
    /// The modulator's bias `[1]` (empty without modulation).
    pub b_m: Vec<f64>,
}

impl LayerParams {
    /// Every group, in order: `w`, `alpha`, `eta`, `w_m`, `b_m`.
    pub fn groups(&self) -> Vec<(&'static str, &[f64])> {
        vec![
            ("w", self.w.as_slice()),
            ("alpha", self.alpha.as_slice()),
            ("eta", self.eta.as_slice()),
            ("w_m", self.w_m.as_slice()),
            ("b_m", self.b_m.as_slice()),
        ]
    }

    fn group_mut(&mut self, g: usize) -> &mut Vec<f64> {
        match g {
            0 => &mut self.w,
            1 => &mut self.alpha,
            2 => &mut self.eta,
            3 => &mut self.w_m,
            _ => &mut self.b_m,
        }
    }

    fn zeros_like(&self) -> LayerParams {
        let z = |v: &Vec<f64>| vec![0.0; v.len()];
        LayerParams {
            w: z(&self.w),
            alpha: z(&self.alpha),
            eta: z(&self.eta),
            w_m: z(&self.w_m),
            b_m: z(&self.b_m),
        }
    }
}

/// The plastic layer's rule and modulation, and which of [`LayerParams::groups`] it trains.
#[derive(Debug, Clone, Copy)]
pub struct Layer {
    /// The rule (`H`'s; the retroactive `H` is clipped at `rule.clip`).
    pub rule: RuleSpec,
    /// The modulator, if any.
    pub modulation: Modulation,
    /// Whether the layer is plastic (else only `w` is trained).
    pub plastic: bool,
}

impl Layer {
    /// Which groups are trained.
    pub fn trained(&self) -> [bool; 5] {
        let modulated = self.plastic && self.modulation != Modulation::None;
        [
            true,
            self.plastic,
            self.plastic && self.modulation != Modulation::Simple,
            modulated,
            modulated,
        ]
    }

    /// `M = tanh(x·w_M + b_M)` of one embedding (NaN without modulation).
    fn modulation_of(&self, p: &LayerParams, x: &[f64]) -> f64 {
        if self.modulation == Modulation::None {
            return f64::NAN;
        }
        (p.b_m[0] + x.iter().zip(&p.w_m).map(|(a, b)| a * b).sum::<f64>()).tanh()
    }
}

/// The traces of one forward pass: per support step, `H` and `E` after it (`[B, C, O]`) and
/// `M` (`[B]`).
type Traces = (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<Vec<f64>>);

/// The host reference's forward pass: the loss, the logits `[B·Q, O]` and the traces.
pub fn layer_forward(layer: Layer, p: &LayerParams, x: &LayerInputs) -> (f64, Vec<f64>, Traces) {
    let (b, s, q, c, o) = x.sizes;
    let (rule, eta) = (layer.rule, p.eta[0]);
    let retro = Retroactive { bound: rule.clip };
    let mut hebb = vec![0.0; b * c * o];
    let mut elig = vec![0.0; b * c * o];
    let (mut hs, mut es, mut ms) = (Vec::with_capacity(s), Vec::with_capacity(s), Vec::new());
    for step in 0..s {
        let mut m_step = vec![f64::NAN; b];
        for e in 0..b {
            let pre = &x.embeddings[(e * (s + q) + step) * c..][..c];
            let post = &x.support[(e * s + step) * o..][..o];
            let m = layer.modulation_of(p, pre);
            m_step[e] = m;
            for i in 0..c {
                for j in 0..o {
                    let idx = (e * c + i) * o + j;
                    match layer.modulation {
                        Modulation::None => {
                            hebb[idx] = rule.local(hebb[idx], pre[i], post[j], eta).value
                        }
                        Modulation::Simple => {
                            hebb[idx] = rule.local(hebb[idx], pre[i], post[j], m).value
                        }
                        Modulation::Retroactive => {
                            let l = retro.local2(hebb[idx], elig[idx], pre[i], post[j], m, eta);
                            hebb[idx] = l.h;
                            elig[idx] = l.e.value;
                        }
                    }
                }
            }
        }
        hs.push(hebb.clone());
        es.push(elig.clone());
        ms.push(m_step);
    }
    let mut logits = vec![0.0; b * q * o];
    let mut loss = 0.0;
    for e in 0..b {
        for k in 0..q {
            let xq = &x.embeddings[(e * (s + q) + s + k) * c..][..c];
            let z = &mut logits[(e * q + k) * o..][..o];
            for j in 0..o {
                z[j] = x.mask[e * o + j]
                    + (0..c)
                        .map(|i| {
                            xq[i]
                                * (p.w[i * o + j] + p.alpha[i * o + j] * hebb[(e * c + i) * o + j])
                        })
                        .sum::<f64>();
            }
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            loss += lse - z[x.target[e * q + k]];
        }
    }
    (loss / (b * q) as f64, logits, (hs, es, ms))
}

/// The host reference's gradients of every group (reverse mode through the rule's partials,
/// with `fault` in them if any).
pub fn layer_backward(
    layer: Layer,
    fault: Option<Fault>,
    p: &LayerParams,
    x: &LayerInputs,
) -> (f64, LayerParams) {
    let (b, s, q, c, o) = x.sizes;
    let (rule, eta) = (layer.rule, p.eta[0]);
    let (loss, logits, (hs, es, ms)) = layer_forward(layer, p, x);
    let local = |h: f64, pre: f64, post: f64, rate: f64| -> Local<f64> {
        match fault {
            Some(fault) => Faulty { spec: rule, fault }.local(h, pre, post, rate),
            None => rule.local(h, pre, post, rate),
        }
    };
    let retro = Retroactive { bound: rule.clip };
    let local2 = |h: f64, e: f64, pre: f64, post: f64, m: f64| -> Local2<f64> {
        match fault {
            Some(fault) => FaultyRetroactive {
                kernel: retro,
                fault,
            }
            .local2(h, e, pre, post, m, eta),
            None => retro.local2(h, e, pre, post, m, eta),
        }
    };
    let mut g = p.zeros_like();
    let inv = 1.0 / (b * q) as f64;
    for e in 0..b {
        let last = &hs[s - 1][e * c * o..][..c * o];
        // dL/dH after the support steps, from every query.
        let mut dh = vec![0.0; c * o];
        let mut de = vec![0.0; c * o];
        for k in 0..q {
            let z = &logits[(e * q + k) * o..][..o];
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
            let xq = &x.embeddings[(e * (s + q) + s + k) * c..][..c];
            for j in 0..o {
                let dz = inv * ((z[j] - max).exp() / sum - (j == x.target[e * q + k]) as u8 as f64);
                for i in 0..c {
                    let idx = i * o + j;
                    g.w[idx] += xq[i] * dz;
                    g.alpha[idx] += xq[i] * dz * last[idx];
                    dh[idx] += xq[i] * dz * p.alpha[idx];
                }
            }
        }
        // Back through the support steps.
        for step in (0..s).rev() {
            let pre = &x.embeddings[(e * (s + q) + step) * c..][..c];
            let post = &x.support[(e * s + step) * o..][..o];
            let m = ms[step][e];
            let mut dm = 0.0;
            for i in 0..c {
                for j in 0..o {
                    let idx = i * o + j;
                    let old = |t: &[Vec<f64>]| {
                        if step == 0 {
                            0.0
                        } else {
                            t[step - 1][e * c * o + idx]
                        }
                    };
                    match layer.modulation {
                        Modulation::None | Modulation::Simple => {
                            let rate = if layer.modulation == Modulation::None {
                                eta
                            } else {
                                m
                            };
                            let l = local(old(&hs), pre[i], post[j], rate);
                            if layer.modulation == Modulation::None {
                                g.eta[0] += dh[idx] * l.d_rate;
                            } else {
                                dm += dh[idx] * l.d_rate;
                            }
                            dh[idx] *= l.d_h;
                        }
                        Modulation::Retroactive => {
                            let l = local2(old(&hs), old(&es), pre[i], post[j], m);
                            let (gh, ge) = (dh[idx], de[idx]);
                            dm += gh * l.dh_m;
                            g.eta[0] += gh * l.dh_eta + ge * l.e.d_rate;
                            de[idx] = gh * l.dh_e + ge * l.e.d_h;
                            dh[idx] = gh * l.dh_h;
                        }
                    }
                }
            }
            if layer.modulation != Modulation::None {
                let du = dm * (1.0 - m * m);
                g.b_m[0] += du;
                for (gw, xi) in g.w_m.iter_mut().zip(pre) {
                    *gw += du * xi;
                }
            }
        }
    }
    (loss, g)
}

/// The batch's plastic-layer inputs on the host, from the burn model's embeddings.
pub fn layer_inputs(model: &FewShotNet, batch: &EpisodeBatch) -> LayerInputs {
    let emb = model.embed(batch.images.clone());
    let c = emb.dims()[1];
    let [b, s, o] = batch.support.dims();
    let to_f64 = |d: TensorData| d.convert::<f64>().try_to_vec::<f64>().expect("floats");
    LayerInputs {
        sizes: (b, s, batch.queries, c, o),
        embeddings: to_f64(emb.into_data()),
        support: to_f64(batch.support.clone().into_data()),
        mask: to_f64(batch.mask.clone().into_data()),
        target: batch
            .target
            .clone()
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("ints")
            .into_iter()
            .map(|t| t as usize)
            .collect(),
    }
}

fn values<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f64> {
    p.val()
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("floats")
}

fn layer_params(model: &FewShotNet) -> LayerParams {
    LayerParams {
        w: values(&model.w),
        alpha: values(&model.alpha),
        eta: values(&model.eta),
        w_m: model.w_m.as_ref().map(values).unwrap_or_default(),
        b_m: model.b_m.as_ref().map(values).unwrap_or_default(),
    }
}

/// The plastic layer's gradients from burn autodiff (zeros for a group without one).
fn autodiff_layer(model: &FewShotNet, grads: &GradientsParams) -> LayerParams {
    LayerParams {
        w: host(grads, &model.w),
        alpha: host(grads, &model.alpha),
        eta: host(grads, &model.eta),
        w_m: model
            .w_m
            .as_ref()
            .map(|p| host(grads, p))
            .unwrap_or_default(),
        b_m: model
            .b_m
            .as_ref()
            .map(|p| host(grads, p))
            .unwrap_or_default(),
    }
}

/// `p` with entry `index` set to `value`.
fn set<const D: usize>(p: &Param<Tensor<D>>, index: usize, value: f64) -> Param<Tensor<D>> {
    p.clone().map(|t| {
        let (shape, device, grad) = (t.shape(), t.device(), t.is_require_grad());
        let mut v: Vec<f64> = t.into_data().convert::<f64>().try_to_vec().expect("floats");
        v[index] = value;
        Tensor::from_data(TensorData::new(v, shape), &device).set_require_grad(grad)
    })
}

/// The embedding's parameter groups: `(name, autodiff gradient, values)` and a setter.
type Setter = Box<dyn Fn(&FewShotNet, usize, f64) -> FewShotNet>;

fn embedding_groups(
    model: &FewShotNet,
    grads: &GradientsParams,
) -> Vec<(String, Vec<f64>, Vec<f64>, Setter)> {
    let mut out: Vec<(String, Vec<f64>, Vec<f64>, Setter)> = Vec::new();
    for (k, conv) in model.convs.iter().enumerate() {
        out.push((
            format!("conv{k}.weight"),
            host(grads, &conv.weight),
            values(&conv.weight),
            Box::new(move |m: &FewShotNet, i, v| {
                let mut m = m.clone();
                m.convs[k].weight = set(&m.convs[k].weight, i, v);
                m
            }),
        ));
        if let Some(bias) = &conv.bias {
            out.push((
                format!("conv{k}.bias"),
                host(grads, bias),
                values(bias),
                Box::new(move |m: &FewShotNet, i, v| {
                    let mut m = m.clone();
                    let b = m.convs[k].bias.as_ref().expect("a bias");
                    m.convs[k].bias = Some(set(b, i, v));
                    m
                }),
            ));
        }
    }
    for (k, norm) in model.norms.iter().enumerate() {
        out.push((
            format!("norm{k}.gamma"),
            host(grads, &norm.gamma),
            values(&norm.gamma),
            Box::new(move |m: &FewShotNet, i, v| {
                let mut m = m.clone();
                m.norms[k].gamma = set(&m.norms[k].gamma, i, v);
                m
            }),
        ));
        out.push((
            format!("norm{k}.beta"),
            host(grads, &norm.beta),
            values(&norm.beta),
            Box::new(move |m: &FewShotNet, i, v| {
                let mut m = m.clone();
                m.norms[k].beta = set(&m.norms[k].beta, i, v);
                m
            }),
        ));
    }
    out
}

/// Finite differences of the host reference's loss on sampled entries of every trained group
/// (`NaN` elsewhere), and the entries checked per trained group.
fn layer_finite_differences(
    layer: Layer,
    p: &LayerParams,
    x: &LayerInputs,
) -> (LayerParams, Vec<Vec<usize>>) {
    let mut out = p.zeros_like();
    for g in 0..5 {
        out.group_mut(g).fill(f64::NAN);
    }
    let smooth = layer.rule.smooth() && layer.modulation != Modulation::Retroactive;
    let step = if smooth {
        RECURRENT_FD_STEP
    } else {
        crate::compare::FD_STEP_NONSMOOTH
    };
    let scale = floor(layer_forward(layer, p, x).0, NONSMOOTH_FLOOR);
    let mut probe = p.clone();
    let mut picked = Vec::new();
    for (g, trained) in layer.trained().into_iter().enumerate() {
        if !trained {
            continue;
        }
        let indices = evenly_spaced(p.groups()[g].1.len(), FEWSHOT_ENTRIES);
        for &i in &indices {
            let theta = p.groups()[g].1[i];
            let d = derivative(theta, step, !smooth, scale, |v| {
                probe.group_mut(g)[i] = v;
                layer_forward(layer, &probe, x).0
            });
            probe.group_mut(g)[i] = theta;
            out.group_mut(g)[i] = d;
        }
        picked.push(indices);
    }
    (out, picked)
}

/// Runs the few-shot check for `config` (its data, network, rule, seed, device and dtype; the
/// parameters are the config's initial ones).
pub fn check_omniglot(
    config: &OmniglotConfig,
    options: CheckOptions,
) -> bohp::Result<(Report, Option<Dump>)> {
    let rule = config.model.rule();
    let modulation = config.model.modulation;
    let plastic = config.model.plastic;
    let layer = Layer {
        rule,
        modulation,
        plastic,
    };
    let retro = modulation == Modulation::Retroactive;
    let fault = match options.recursion {
        Recursion::Correct => None,
        Recursion::Fault(f @ Fault::RateOnOldTrace) if rule.rule == Rule::Hebb && !retro => Some(f),
        Recursion::Fault(f @ Fault::OjaDecayDropped) if rule.rule == Rule::Oja && !retro => Some(f),
        Recursion::Fault(f @ Fault::GradientThroughClip) if rule.rule == Rule::Clipped => Some(f),
        Recursion::Fault(f @ Fault::EligibilityFirst) if retro => Some(f),
        other => {
            return Err(bohp::Error::Unsupported(format!(
                "--recursion {}: does not apply to an Omniglot config with rule {rule} and modulation {modulation} (it takes rate-on-old-trace with hebb, oja-decay-dropped with oja, gradient-through-clip with clipped, eligibility-first with retroactive modulation)",
                other.name()
            )));
        }
    };
    let trainer = OmniglotTrainer::new(config.clone())?;
    let model = trainer.model().clone();
    let batch = trainer.check_batch(options.episodes);
    let (loss, _) = model.loss(&batch);
    let loss_autodiff = scalar(loss.clone());
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let inputs = layer_inputs(&model, &batch);
    let params = layer_params(&model);
    let (loss_reference, reference) = layer_backward(layer, fault, &params, &inputs);
    let ad = autodiff_layer(&model, &grads);
    let tolerances = Tolerances::for_rule(config.dtype, &rule);
    let layer_groups = |p: &LayerParams| -> Vec<(&'static str, Vec<f64>)> {
        p.groups()
            .into_iter()
            .zip(layer.trained())
            .filter(|(_, t)| *t)
            .map(|((n, v), _)| (n, v.to_vec()))
            .collect()
    };
    let (ga, gr) = (layer_groups(&ad), layer_groups(&reference));
    let (ra, rr) = (view(&ga), view(&gr));
    let ad_floor = floor(loss_reference, tolerances.autodiff_floor);
    let mut comparisons = vec![Comparison {
        name: "autodiff vs host".into(),
        tolerance: tolerances.autodiff_vs_reference,
        floor: ad_floor,
        rows: agreement_groups(&ra, &rr, ad_floor),
        note: Some(
            "the plastic layer (w, alpha, eta, and the modulator's w_m, b_m), as trained".into(),
        ),
    }];
    if options.finite_differences {
        let (fd, indices) = layer_finite_differences(layer, &params, &inputs);
        let gf = layer_groups(&fd);
        let rf = view(&gf);
        let fd_floor = floor(loss_reference, tolerances.finite_difference_floor);
        comparisons.push(Comparison {
            name: "host vs central finite differences".into(),
            tolerance: tolerances.reference_vs_finite_differences,
            floor: fd_floor,
            rows: agreement_at(&rr, &rf, &indices, fd_floor),
            note: Some(format!("entries checked: {} per group", FEWSHOT_ENTRIES)),
        });
        if config.dtype == Precision::F64 {
            // The embedding: autodiff against finite differences of the burn model's loss, on
            // a copy that requires no gradient (nothing recorded; batch normalization still
            // takes its training path, the device being an autodiff one).
            let plain = |m: &FewShotNet| scalar(m.loss(&batch).0);
            let frozen = model.clone().no_grad();
            // The burn model's loss rounds more than the host layer's (convolutions, batch
            // statistics): its finite differences resolve entries down to 1e-5·max(1, |L|).
            // An entry whose difference does not converge to the check's precision (Ridders'
            // own error estimate) is left out and counted: a convolution's bias before batch
            // normalization has a zero gradient, and its finite differences are rounding noise.
            let fd_floor = floor(loss_reference, NONSMOOTH_FLOOR);
            let (groups, setters): (Vec<_>, Vec<_>) = embedding_groups(&model, &grads)
                .into_iter()
                .map(|(name, g, v, setter)| ((name, g, v), setter))
                .unzip();
            let rows = sampled_agreement(&groups, FEWSHOT_ENTRIES, fd_floor, |g, i, x| {
                plain(&setters[g](&frozen, i, x))
            });
            comparisons.push(Comparison {
                name: "autodiff vs central finite differences".into(),
                tolerance: tolerances.reference_vs_finite_differences,
                floor: fd_floor,
                rows,
                note: Some(format!(
                    "the convolutional embedding: {FEWSHOT_ENTRIES} entries per group, finite differences of the burn model's loss"
                )),
            });
        }
    }
    let t = &config.task;
    let what = Checked::of(
        "few-shot",
        format!(
            "omniglot {}-way {}-shot, {} queries",
            t.ways, t.shots, t.queries
        ),
        match modulation {
            Modulation::None => rule.to_string(),
            Modulation::Simple => format!("{rule}, modulated rate"),
            Modulation::Retroactive => format!("retroactive(±{})", rule.clip),
        },
        if plastic { "learned" } else { "none" },
        "host",
    );
    let run = CheckRun::of(
        &options,
        t.ways * t.shots,
        (config.device, config.dtype, config.seed),
    );
    let report = Report::new(
        (what, run),
        (loss_reference, loss_autodiff),
        (comparisons, tolerances),
    );
    let dump = options.dump.then(|| {
        let one = trainer.check_batch(1);
        let x = layer_inputs(&model, &one);
        let (loss, logits, traces) = layer_forward(layer, &params, &x);
        let mut gradients = vec![(
            "host".to_string(),
            layer_backward(layer, fault, &params, &x).1,
        )];
        let (l, _) = model.loss(&one);
        let g = GradientsParams::from_grads(l.backward(), &model);
        gradients.push(("autodiff".to_string(), autodiff_layer(&model, &g)));
        dump_fewshot(
            producer(&report),
            layer,
            &params,
            &x,
            &logits,
            &traces,
            loss,
            &gradients,
        )
    });
    Ok((report, dump))
}
