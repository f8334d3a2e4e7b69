//! The 2018 paper's few-shot network: a convolutional embedding (four 3×3 stride-2
//! convolutions, tanh: 31 → 15 → 7 → 3 → 1) and a plastic output layer
//! `y = x·(w + α ⊙ H)` whose trace follows a rule of the rule library with a learned η
//! (`model.rule`): Oja's by default, as in the paper, `H ← H + η·post·(pre − H·post)`.
//!
//! An episode: during each support step the embedding `x` is the presynaptic activity and the
//! image's label (one-hot over the output units) the postsynaptic one, so that `H` stores the
//! support set; the query's embedding then gives the logits `x_q·(w + α ⊙ H)`, a softmax over
//! the episode's classes. With `α = 0` (the control) the output cannot depend on the support
//! set.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor};

use super::config::OmniglotModelConfig;
use super::data::SIDE;
use crate::layer::{gaussian, param};
use crate::rng::{Stream, stream_rng};
use crate::rules::{Modulation, Rate, Retroactive, RuleSpec};

/// Convolutions of the embedding.
pub(crate) const CONVS: usize = 4;

/// The network.
#[derive(Module, Debug)]
pub struct FewShotNet {
    /// The four convolutions.
    pub convs: Vec<Conv2d>,
    /// Batch normalization after each convolution (`model.batch_norm`), or none.
    pub norms: Vec<BatchNorm>,
    /// Fixed output weights `[C, outputs]`.
    pub w: Param<Tensor<2>>,
    /// Plasticity coefficients `[C, outputs]` (0 and frozen in the control).
    pub alpha: Param<Tensor<2>>,
    /// The rule's rate η `[1]`.
    pub eta: Param<Tensor<1>>,
    /// The modulator's weights `[C, 1]` (with `model.modulation`; none otherwise, so that the
    /// records of unmodulated networks are unchanged).
    pub w_m: Option<Param<Tensor<2>>>,
    /// The modulator's bias `[1]`.
    pub b_m: Option<Param<Tensor<1>>>,
    /// The plastic layer's rule (Oja's by default).
    pub rule: RuleSpec,
    /// How the modulator gates the update.
    pub modulation: Modulation,
}

/// A batch of episodes as tensors.
#[derive(Debug, Clone)]
pub struct EpisodeBatch {
    /// Every image, `[B·(S + Q), 1, SIDE, SIDE]`: each episode's S support images, then its
    /// Q queries.
    pub images: Tensor<4>,
    /// The support labels on the output units, one-hot, `[B, S, outputs]`.
    pub support: Tensor<3>,
    /// 0 on the units of the episode's classes, −10⁴ elsewhere, `[B, outputs]`.
    pub mask: Tensor<2>,
    /// Each query's unit, `[B·Q]` (episode-major).
    pub target: Tensor<1, Int>,
    /// Episodes.
    pub batch: usize,
    /// Support images per episode.
    pub shots_total: usize,
    /// Queries per episode.
    pub queries: usize,
}

impl FewShotNet {
    /// The network of `config`: burn's initialization for the convolutions (drawn from the
    /// device's generator, seeded with `seed`), `w` ~ N(0, 0.01²) from the run's `Init` stream,
    /// `α = init_alpha` (0 and frozen without plasticity), η = `init_eta`.
    pub fn new(config: &OmniglotModelConfig, seed: u64, device: &Device) -> FewShotNet {
        let (channels, outputs, plastic) = (config.channels, config.outputs, config.plastic);
        let modulated = config.modulation != Modulation::None;
        let init_eta = config.init_eta;
        device.seed(seed);
        let convs = (0..CONVS)
            .map(|k| {
                Conv2dConfig::new([if k == 0 { 1 } else { channels }, channels], [3, 3])
                    .with_stride([2, 2])
                    .init(device)
            })
            .collect();
        let norms = if config.batch_norm {
            (0..CONVS)
                .map(|_| BatchNormConfig::new(channels).init(device))
                .collect()
        } else {
            Vec::new()
        };
        let mut rng = stream_rng(seed, Stream::Init, 0);
        let w = param(
            gaussian(&mut rng, channels * outputs, 0.01),
            [channels, outputs],
            device,
        );
        let alpha_values = if plastic {
            vec![config.init_alpha; channels * outputs]
        } else {
            vec![0.0; channels * outputs]
        };
        let alpha = param(alpha_values, [channels, outputs], device);
        FewShotNet {
            convs,
            norms,
            w,
            alpha: if plastic {
                alpha
            } else {
                alpha.set_require_grad(false)
            },
            // η is the rule's rate, or the eligibility trace's; with simple modulation `M` is
            // the rate and η unused.
            eta: if plastic && config.modulation != Modulation::Simple {
                param(vec![init_eta], [1], device)
            } else {
                param(vec![init_eta], [1], device).set_require_grad(false)
            },
            // The modulator starts at `M = init_eta` whatever the image (`w_M = 0`,
            // `b_M = atanh(init_eta)`): the unmodulated network's rate, for learning to vary.
            w_m: modulated.then(|| param(vec![0.0; channels], [channels, 1], device)),
            b_m: modulated.then(|| param(vec![init_eta.min(0.999).atanh()], [1], device)),
            rule: config.rule(),
            modulation: config.modulation,
        }
    }

    /// The embedding of images `[M, 1, SIDE, SIDE]`: `[M, C]`.
    pub fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        let [m, _, h, w] = images.dims();
        debug_assert_eq!((h, w), (SIDE, SIDE));
        let mut x = images;
        for (k, conv) in self.convs.iter().enumerate() {
            x = conv.forward(x);
            if let Some(norm) = self.norms.get(k) {
                x = norm.forward(x);
            }
            x = x.tanh();
        }
        let [_, c, ..] = x.dims();
        x.reshape([m, c])
    }

    /// The plastic layer after the support steps: `w + α ⊙ H`, `[B, C, outputs]`, from the
    /// support embeddings `[B, S, C]` and their one-hot labels `[B, S, outputs]`.
    pub fn weights(&self, support_emb: Tensor<3>, support: Tensor<3>) -> Tensor<3> {
        let [b, s, c] = support_emb.dims();
        let outputs = support.dims()[2];
        let device = support_emb.device();
        let mut hebb: Tensor<3> = Tensor::zeros([b, c, outputs], &device);
        // The eligibility trace exists only under retroactive modulation.
        let mut elig: Option<Tensor<3>> = (self.modulation == Modulation::Retroactive)
            .then(|| Tensor::zeros([b, c, outputs], &device));
        let eta = Rate::Learned(self.eta.val().reshape([1, 1, 1]));
        for step in 0..s {
            let emb = support_emb.clone().slice([0..b, step..step + 1, 0..c]);
            let pre = emb.clone().reshape([b, c, 1]);
            let post = support
                .clone()
                .slice([0..b, step..step + 1, 0..outputs])
                .reshape([b, 1, outputs]);
            match (self.modulation, &self.w_m, &self.b_m) {
                (Modulation::Simple | Modulation::Retroactive, Some(w_m), Some(b_m)) => {
                    // M = tanh(x·w_M + b_M), one per episode and support step.
                    let m = (emb.reshape([b, c]).matmul(w_m.val()) + b_m.val().unsqueeze::<2>())
                        .tanh()
                        .reshape([b, 1, 1]);
                    let m = Rate::Modulated(m);
                    if self.modulation == Modulation::Simple {
                        hebb = self.rule.tensor(hebb, pre, post, &m);
                    } else {
                        let e = elig.take().expect("an eligibility trace");
                        let (h, e) = Retroactive {
                            bound: self.rule.clip,
                        }
                        .tensor(hebb, e, pre, post, &m, &eta);
                        (hebb, elig) = (h, Some(e));
                    }
                }
                _ => hebb = self.rule.tensor(hebb, pre, post, &eta),
            }
        }
        self.w.val().unsqueeze::<3>() + self.alpha.val().unsqueeze::<3>() * hebb
    }

    /// The logits `[B·Q, outputs]` of the episodes' queries (each episode's mask added), every
    /// query read from the same plastic weights after its episode's support steps.
    pub fn logits(&self, episodes: &EpisodeBatch) -> Tensor<2> {
        let (b, s, q) = (episodes.batch, episodes.shots_total, episodes.queries);
        let emb = self.embed(episodes.images.clone());
        let c = emb.dims()[1];
        let emb = emb.reshape([b, s + q, c]);
        let support_emb = emb.clone().slice([0..b, 0..s, 0..c]);
        let query = emb.slice([0..b, s..s + q, 0..c]);
        let weights = self.weights(support_emb, episodes.support.clone());
        let outputs = weights.dims()[2];
        let mask = episodes.mask.clone().reshape([b, 1, outputs]);
        (query.matmul(weights) + mask).reshape([b * q, outputs])
    }

    /// The mean cross-entropy of the queries, and each query's predicted unit.
    pub fn loss(&self, episodes: &EpisodeBatch) -> (Tensor<1>, Tensor<1, Int>) {
        let logits = self.logits(episodes);
        let b = episodes.batch * episodes.queries;
        let predicted = logits.clone().argmax(1).reshape([b]);
        let log_p = log_softmax(logits, 1);
        let taken = log_p.gather(1, episodes.target.clone().reshape([b, 1]));
        (taken.mean().neg().reshape([1]), predicted)
    }
}
