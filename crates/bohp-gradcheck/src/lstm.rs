//! The LSTM baseline's check (`configs/*-lstm.toml`): it has no plastic connection and no
//! hand-derived recursion, so burn's autodiff gradient of its training loss is compared with
//! central finite differences (Ridders) of the same loss, in f64, on evenly spaced entries of
//! every parameter group (each gate's input and hidden transforms, their biases, the readout).

use bohp::device::{Precision, init_device};
use bohp::recurrent::config::{RecurrentConfig, RecurrentModelKind};
use bohp::recurrent::model::LstmNet;
use bohp::recurrent::train::lstm_loss;
use bohp::rng::Stream;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::check::{CheckOptions, CheckRun, Checked, Comparison, Recursion, Report, Tolerances};
use crate::compare::{floor, sampled_agreement, scalar};
use crate::dump::Dump;

/// Entries per parameter group that the LSTM's finite differences check.
pub const LSTM_FD_ENTRIES: usize = 8;

/// Every float parameter of `model` in visiting order: its path, its autodiff gradient and its
/// values.
fn groups(model: &LstmNet, grads: &GradientsParams) -> Vec<(String, Vec<f64>, Vec<f64>)> {
    struct Groups<'a> {
        grads: &'a GradientsParams,
        path: Vec<String>,
        out: Vec<(String, Vec<f64>, Vec<f64>)>,
    }
    impl ModuleVisitor for Groups<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }

        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }

        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let floats = |t: Tensor<D>| -> Vec<f64> {
                t.into_data().convert::<f64>().iter::<f64>().collect()
            };
            let values = floats(param.val());
            let grad = match self.grads.get::<D>(param.id) {
                Some(g) => floats(g),
                None => vec![0.0; values.len()],
            };
            self.out.push((self.path.join("."), grad, values));
        }
    }
    let mut visitor = Groups {
        grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut visitor);
    visitor.out
}

/// `model` with entry `index` of its `group`-th float parameter (visiting order) set to `value`.
fn with_entry(model: &LstmNet, group: usize, index: usize, value: f64) -> LstmNet {
    struct Set {
        group: usize,
        index: usize,
        value: f64,
        seen: usize,
    }
    impl ModuleMapper for Set {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let k = self.seen;
            self.seen += 1;
            if k != self.group {
                return param;
            }
            let (index, value) = (self.index, self.value);
            param.map(|t| {
                let (shape, device) = (t.shape(), t.device());
                let mut v: Vec<f64> = t.into_data().convert::<f64>().iter::<f64>().collect();
                v[index] = value;
                Tensor::from_data(TensorData::new(v, shape), &device)
            })
        }
    }
    model.clone().map(&mut Set {
        group,
        index,
        value,
        seen: 0,
    })
}

/// Runs the LSTM check for `config` (its task, sizes, seed and device; the parameters are the
/// config's initial ones, drawn as training draws them), on episodes of the evaluation stream.
pub fn check_lstm(
    config: &RecurrentConfig,
    options: CheckOptions,
) -> bohp::Result<(Report, Option<Dump>)> {
    assert_eq!(config.model.kind, RecurrentModelKind::Lstm);
    let refuse = |what: String| Err(bohp::Error::Unsupported(what));
    if options.recursion != Recursion::Correct {
        return refuse(format!(
            "--recursion {}: the LSTM baseline has no hand-derived recursion to inject a mistake into (model.kind = \"lstm\")",
            options.recursion.name()
        ));
    }
    if config.dtype != Precision::F64 {
        return refuse(
            "the LSTM baseline is checked against finite differences only, which need --dtype f64 (model.kind = \"lstm\")".into(),
        );
    }
    if !options.finite_differences {
        return refuse(
            "--no-finite-differences: the LSTM baseline is checked against finite differences only (model.kind = \"lstm\")".into(),
        );
    }
    if options.dump {
        return refuse(
            "--dump: the LSTM baseline has no plastic connection or trace to dump (model.kind = \"lstm\")".into(),
        );
    }
    let device = init_device(config.device, config.dtype)?;
    // burn's default initializers draw from the device's generator, as in training.
    device.seed(config.seed);
    let ad = device.clone().autodiff();
    let model = LstmNet::new(config.size(), config.lstm_hidden(), &ad);
    let task = config.task()?;
    let batch = task.batch(config.seed, Stream::Eval, 0, options.episodes, task.size);
    let loss = lstm_loss(&model, &task, &batch, &ad);
    let loss_autodiff = scalar(loss.clone().detach());
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let frozen = model.clone().no_grad();
    let loss_at = |m: &LstmNet| scalar(lstm_loss(m, &task, &batch, &ad));
    let loss_reference = loss_at(&frozen);
    let tolerances = Tolerances::for_precision(Precision::F64);
    let scale = floor(loss_reference, tolerances.finite_difference_floor);
    let groups = groups(&model, &grads);
    assert!(!groups.is_empty(), "an LSTM has parameters");
    let rows = sampled_agreement(&groups, LSTM_FD_ENTRIES, scale, |g, i, x| {
        loss_at(&with_entry(&frozen, g, i, x))
    });
    let comparisons = vec![Comparison {
        name: "autodiff vs central finite differences".into(),
        tolerance: tolerances.reference_vs_finite_differences,
        floor: scale,
        rows,
        note: Some(format!(
            "the LSTM baseline has no hand-derived gradient: {LSTM_FD_ENTRIES} entries per group, finite differences of the training loss"
        )),
    }];
    let what = Checked::of(
        "recurrent",
        task.kind.name(),
        "none (LSTM baseline)",
        "lstm",
        "finite differences",
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
    Ok((report, None))
}
