//! The networks of the paper's tasks: a plastic layer, with a non-plastic softmax readout for
//! the labelled tasks.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;

use crate::layer::{HebbTrace, PlasticLayer, PlasticLayerConfig, gaussian, param};

/// A non-plastic linear readout `z = y v + c` (logits of the softmax).
#[derive(Module, Debug)]
pub struct Readout {
    /// Weights `v`, `[n_hidden, n_classes]`.
    pub v: Param<Tensor<2>>,
    /// Biases `c`, `[n_classes]`.
    pub c: Param<Tensor<1>>,
}

/// A plastic layer, optionally followed by a trained, non-plastic readout.
///
/// - completion: the plastic layer's tanh outputs are the network's outputs;
/// - one-shot and reversal: `x → plastic tanh hidden → readout logits → softmax`.
#[derive(Module, Debug)]
pub struct PlasticNet {
    /// The plastic layer (input → output or hidden).
    pub plastic: PlasticLayer,
    /// The readout, for the labelled tasks.
    pub readout: Option<Readout>,
}

/// Sizes and options of a [`PlasticNet`].
#[derive(Debug, Clone)]
pub struct PlasticNetConfig {
    /// The plastic layer.
    pub layer: PlasticLayerConfig,
    /// Number of readout classes, or `None` for no readout.
    pub classes: Option<usize>,
}

impl PlasticNetConfig {
    /// Initializes the network from `rng`: `w, α, b ~ N(0, init_std²)`, readout weights
    /// `|N(0, init_std²)|` and readout biases `N(0, init_std²)`, as in the original code.
    pub fn init(&self, rng: &mut impl Rng, device: &Device) -> PlasticNet {
        let plastic = self.layer.init(rng, device);
        let readout = self.classes.map(|classes| {
            let hidden = self.layer.n_out;
            let std = self.layer.init_std;
            let v = gaussian(rng, hidden * classes, std)
                .into_iter()
                .map(f64::abs)
                .collect();
            Readout {
                v: param(v, [hidden, classes], device),
                c: param(gaussian(rng, classes, std), [classes], device),
            }
        });
        PlasticNet { plastic, readout }
    }
}

/// A parameter's values on the host, row-major.
fn host<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f64> {
    p.val()
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("parameters are float tensors")
}

impl PlasticNet {
    /// Every parameter by name (`w`, `alpha`, `b`, with a modulator `w_m`, `b_m`, then
    /// `readout.v`, `readout.c`), with its values copied to the host as f64, row-major.
    pub fn parameter_values(&self) -> Vec<(&'static str, Vec<f64>)> {
        let mut out = vec![
            ("w", host(&self.plastic.w)),
            ("alpha", host(&self.plastic.alpha)),
            ("b", host(&self.plastic.b)),
        ];
        if let (Some(w_m), Some(b_m)) = (&self.plastic.w_m, &self.plastic.b_m) {
            out.push(("w_m", host(w_m)));
            out.push(("b_m", host(b_m)));
        }
        if let Some(readout) = &self.readout {
            out.push(("readout.v", host(&readout.v)));
            out.push(("readout.c", host(&readout.c)));
        }
        out
    }

    /// The loss gradients in `grads` (from burn's backward pass) of each parameter, named and
    /// laid out as [`PlasticNet::parameter_values`] gives the values; zeros for a parameter
    /// without a gradient (not trained).
    pub fn gradient_values(&self, grads: &burn::optim::GradientsParams) -> Vec<Vec<f64>> {
        fn of<const D: usize>(
            p: &Param<Tensor<D>>,
            grads: &burn::optim::GradientsParams,
        ) -> Vec<f64> {
            match grads.get::<D>(p.id) {
                Some(g) => g.into_data().convert::<f64>().iter::<f64>().collect(),
                None => vec![0.0; p.val().shape().num_elements()],
            }
        }
        let mut out = vec![
            of(&self.plastic.w, grads),
            of(&self.plastic.alpha, grads),
            of(&self.plastic.b, grads),
        ];
        if let (Some(w_m), Some(b_m)) = (&self.plastic.w_m, &self.plastic.b_m) {
            out.push(of(w_m, grads));
            out.push(of(b_m, grads));
        }
        if let Some(readout) = &self.readout {
            out.push(of(&readout.v, grads));
            out.push(of(&readout.c, grads));
        }
        out
    }

    /// The inverse of [`PlasticNet::gradient_values`]: host gradients (laid out as
    /// [`PlasticNet::parameter_values`]) as burn gradients on `device` (without autodiff), for
    /// the trained parameters only (`α` of a non-plastic layer gets none).
    pub(crate) fn gradients_params(
        &self,
        grads: &[Vec<f64>],
        device: &Device,
    ) -> burn::optim::GradientsParams {
        fn register<const D: usize>(
            out: &mut burn::optim::GradientsParams,
            p: &Param<Tensor<D>>,
            values: &[f64],
            device: &Device,
        ) {
            let shape = p.shape();
            out.register::<D>(
                p.id,
                Tensor::from_data(TensorData::new(values.to_vec(), shape), device),
            );
        }
        let device = &device.clone().without_autodiff();
        let mut out = burn::optim::GradientsParams::new();
        register(&mut out, &self.plastic.w, &grads[0], device);
        if self.plastic.plastic {
            register(&mut out, &self.plastic.alpha, &grads[1], device);
        }
        register(&mut out, &self.plastic.b, &grads[2], device);
        let mut next = 3;
        if let (Some(w_m), Some(b_m)) = (&self.plastic.w_m, &self.plastic.b_m) {
            register(&mut out, w_m, &grads[3], device);
            register(&mut out, b_m, &grads[4], device);
            next = 5;
        }
        if let Some(readout) = &self.readout {
            register(&mut out, &readout.v, &grads[next], device);
            register(&mut out, &readout.c, &grads[next + 1], device);
        }
        out
    }

    /// The same network with new parameter values (named and laid out as
    /// [`PlasticNet::parameter_values`] gives them), keeping parameter ids and trainability.
    ///
    /// # Panics
    ///
    /// Panics if a name is unknown or a length does not match the parameter's size.
    pub fn with_parameter_values<V: AsRef<[f64]>>(mut self, values: &[(&str, V)]) -> PlasticNet {
        fn set<const D: usize>(p: Param<Tensor<D>>, values: &[f64]) -> Param<Tensor<D>> {
            p.map(|t| {
                let shape = t.shape();
                assert_eq!(shape.num_elements(), values.len(), "parameter size");
                let require_grad = t.is_require_grad();
                Tensor::from_data(TensorData::new(values.to_vec(), shape), &t.device())
                    .set_require_grad(require_grad)
            })
        }
        for (name, v) in values {
            let v = v.as_ref();
            match *name {
                "w" => self.plastic.w = set(self.plastic.w, v),
                "alpha" => self.plastic.alpha = set(self.plastic.alpha, v),
                "b" => self.plastic.b = set(self.plastic.b, v),
                "w_m" => {
                    let w_m = self.plastic.w_m.take().expect("the layer has a modulator");
                    self.plastic.w_m = Some(set(w_m, v));
                }
                "b_m" => {
                    let b_m = self.plastic.b_m.take().expect("the layer has a modulator");
                    self.plastic.b_m = Some(set(b_m, v));
                }
                "readout.v" | "readout.c" => {
                    let readout = self.readout.take().expect("the network has a readout");
                    self.readout = Some(if *name == "readout.v" {
                        Readout {
                            v: set(readout.v, v),
                            ..readout
                        }
                    } else {
                        Readout {
                            c: set(readout.c, v),
                            ..readout
                        }
                    });
                }
                other => panic!("no parameter named {other}"),
            }
        }
        self
    }

    /// Runs whole episodes from zero traces.
    ///
    /// # Shapes
    /// - `inputs`: `[steps, batch, n_in]`
    /// - returned outputs: `[steps, batch, n_out]` (tanh outputs, or readout logits)
    /// - returned trace: `[batch, n_in, n_hidden]`, the trace after the last step
    pub fn forward(&self, inputs: Tensor<3>) -> (Tensor<3>, HebbTrace) {
        let (ys, trace) = self.plastic.unroll(inputs);
        let ys: Tensor<3> = Tensor::stack(ys, 0); // [steps, batch, n_hidden]
        let outputs = match &self.readout {
            None => ys,
            Some(readout) => {
                ys.matmul(readout.v.val().unsqueeze::<3>()) + readout.c.val().unsqueeze::<3>()
            }
        };
        (outputs, trace)
    }
}
