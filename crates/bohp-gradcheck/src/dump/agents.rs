//! Dumps of an actor-critic episode and of a few-shot episode.

use super::*;

/// One reinforcement-learning episode (batch 1) as a dump: every parameter, the observations,
/// actions, rewards, returns, advantages, the policy, values, `M(t)`, the activities and
/// traces, the loss, and the trained groups' gradients by each method (`indices` on sampled
/// ones).
#[allow(clippy::too_many_arguments)]
pub fn dump_rl(
    produced_by: Producer,
    config: &RlConfig,
    net: &HostAc,
    replay: &Replay,
    rollout: &Rollout,
    last: &HostState,
    loss: &ReplayLoss,
    trained: &[bool],
    gradients: &[MethodGrads<AcParams>],
) -> Dump {
    assert_eq!(replay.batch, 1, "a dump holds one episode");
    let (ni, n, na) = net.sizes;
    let steps = replay.steps();
    let shapes = ac_shapes(net);
    let parameters = net
        .p
        .groups()
        .into_iter()
        .zip(&shapes)
        .map(|((name, v), shape)| (name.to_string(), Array::full(shape.clone(), v.clone())))
        .collect();
    // The traces after step t: the next step's old traces, and the final state for the last.
    let after = |second: bool, last: &[f64]| -> Vec<f64> {
        (0..steps)
            .flat_map(|t| {
                if t + 1 < steps {
                    let (h, e) = rollout.traces(t + 1);
                    if second { e.to_vec() } else { h.to_vec() }
                } else {
                    last.to_vec()
                }
            })
            .collect()
    };
    let hebb = after(false, &last.hebb);
    let elig = after(true, &last.elig);
    let train = &config.train;
    let returns = replay.returns(train.discount());
    let kind = net.kind;
    let trace = match kind {
        RlModelKind::Plastic => format!(
            "H_ij <- f(H_ij, pre = h_i(t-1), post = h_j(t), eta) with f: {}; H(0) = 0",
            net.rule.equation()
        ),
        RlModelKind::Simple => format!(
            "H_ij <- f(H_ij, pre = h_i(t-1), post = h_j(t), rate = M_j(t)) with f: {}; M_j = M(t){}; H(0) = 0",
            net.rule.equation(),
            if net.fanout {
                " * fan_w_j + fan_b_j"
            } else {
                ""
            }
        ),
        RlModelKind::Retroactive => format!(
            "{} with pre = h_i(t-1), post = h_j(t), M_j = M(t){}, c = {}; H(0) = E(0) = 0",
            bohp::rules::Retroactive::EQUATION,
            if net.fanout {
                " * fan_w_j + fan_b_j"
            } else {
                ""
            },
            net.clip
        ),
        RlModelKind::NonPlastic | RlModelKind::Lstm => {
            "none: non-plastic (alpha = 0, not trained; H stays 0)".to_string()
        }
    };
    Dump {
        schema: SCHEMA,
        produced_by,
        task: config.task.kind.name().to_string(),
        conventions: Conventions {
            step: "h(t) = tanh(x(t) . W_in + h(t-1) . (W + alpha * H) + b), h(0) = 0, H the trace before \
                   this step's update (row vectors; x(t) = observation t); logits = h(t) . w_pi + b_pi, \
                   p = softmax(logits), V = h(t) . w_v + b_v, M(t) = tanh(h(t) . w_m + b_m); then the trace update",
            trace,
            loss: "(1/B) sum_t [ -log p_t(a_t) * A_t + value_coef * (R_t - V_t)^2 + exploration_coef * X(p_t) ], \
                   R_t = r_t + discount * R_{t+1} (f32), A_t = R_t - V_t held fixed (no gradient), \
                   X = sum_a p_a^2 (sum-p2) or sum_a p_a log p_a (entropy)",
        },
        gamma: None,
        parameters,
        inputs: Array::full(vec![steps, ni], replay.observations.concat()),
        clamp: None,
        targets: None,
        outputs: Array::full(
            vec![steps, n],
            (0..steps)
                .flat_map(|t| rollout.activity(t).to_vec())
                .collect(),
        ),
        logits: None,
        traces: Array::full(vec![steps, n, n], hebb),
        few_shot: None,
        rl: Some(RlEpisode {
            actions: replay.actions.iter().map(|a| a[0]).collect(),
            rewards: replay.rewards.iter().map(|r| f64::from(r[0])).collect(),
            returns: returns.iter().map(|r| f64::from(r[0])).collect(),
            advantages: loss.advantages.iter().map(|a| a[0]).collect(),
            probabilities: Array::full(vec![steps, na], rollout.probs.concat()),
            values: rollout.values.iter().map(|v| v[0]).collect(),
            modulation: rollout.modulation.iter().map(|m| m[0]).collect(),
            eligibility: (kind == RlModelKind::Retroactive)
                .then(|| Array::full(vec![steps, n, n], elig)),
            discount: train.discount(),
            value_coef: train.value_coef(),
            exploration_coef: train.exploration_coef(),
            exploration: match train.exploration() {
                bohp::rl::config::Exploration::SumP2 => "sum-p2".into(),
                bohp::rl::config::Exploration::Entropy => "entropy".into(),
            },
        }),
        modulation: None,
        loss: loss.loss,
        gradients: gradients
            .iter()
            .map(|(method, g, indices)| {
                let mut k = 0;
                let groups = g
                    .groups()
                    .into_iter()
                    .zip(&shapes)
                    .zip(trained)
                    .filter(|(_, t)| **t)
                    .map(|(((name, values), shape), _)| {
                        let array = match indices {
                            Some(idx) => Array {
                                shape: shape.clone(),
                                values: idx[k].iter().map(|&i| values[i]).collect(),
                                indices: Some(idx[k].clone()),
                            },
                            None => Array::full(shape.clone(), values.clone()),
                        };
                        k += 1;
                        (name.to_string(), array)
                    })
                    .collect();
                (method.clone(), groups)
            })
            .collect(),
    }
}

/// One few-shot episode (batch 1) as a dump: the plastic layer from its inputs on (the
/// embeddings), its parameters, traces, logits, loss and gradients by each method.
#[allow(clippy::too_many_arguments)]
pub fn dump_fewshot(
    produced_by: Producer,
    layer: crate::fewshot::Layer,
    params: &crate::fewshot::LayerParams,
    x: &crate::fewshot::LayerInputs,
    logits: &[f64],
    traces: &FewShotTraces,
    loss: f64,
    gradients: &[(String, crate::fewshot::LayerParams)],
) -> Dump {
    let (b, s, q, c, o) = x.sizes;
    assert_eq!(b, 1, "a dump holds one episode");
    let shapes = [vec![c, o], vec![c, o], vec![1], vec![c, 1], vec![1]];
    let arrays = |p: &crate::fewshot::LayerParams, all: bool| -> BTreeMap<String, Array> {
        p.groups()
            .into_iter()
            .zip(&shapes)
            .zip(layer.trained())
            .filter(|((_, v), t)| !v.is_empty() && (all || *t))
            .map(|(((n, v), shape), _)| (n.to_string(), Array::full(shape.clone(), v.to_vec())))
            .collect()
    };
    let (hs, es, ms) = traces;
    let modulated = layer.modulation != bohp::rules::Modulation::None;
    let trace = match layer.modulation {
        bohp::rules::Modulation::None => format!("f: {} (rate eta)", layer.rule.equation()),
        bohp::rules::Modulation::Simple => {
            format!(
                "f: {} with rate M_s = tanh(x_s . w_m + b_m)",
                layer.rule.equation()
            )
        }
        bohp::rules::Modulation::Retroactive => format!(
            "{} with M_s = tanh(x_s . w_m + b_m), c = {}",
            bohp::rules::Retroactive::EQUATION,
            layer.rule.clip
        ),
    };
    Dump {
        schema: SCHEMA,
        produced_by,
        task: "omniglot".into(),
        conventions: Conventions {
            step: "support step s: H <- f(H, pre = x_s (the image's embedding, [C]), post = label_s (one-hot, [O])), H(0) = 0; \
                   then every query: logits = x_q . (w + alpha * H) + mask",
            trace,
            loss: "mean over the queries of -log softmax(logits)[target]",
        },
        gamma: None,
        parameters: arrays(params, true),
        inputs: Array::full(vec![s, c], x.embeddings[..s * c].to_vec()),
        clamp: None,
        targets: None,
        outputs: Array::full(vec![q, o], logits.to_vec()),
        logits: None,
        traces: Array::full(vec![s, c, o], hs.concat()),
        few_shot: Some(FewShotEpisode {
            support_labels: Array::full(vec![s, o], x.support.clone()),
            queries: Array::full(vec![q, c], x.embeddings[s * c..].to_vec()),
            mask: x.mask.clone(),
            targets: x.target.clone(),
            modulation: modulated.then(|| ms.iter().map(|m| m[0]).collect()),
            eligibility: (layer.modulation == bohp::rules::Modulation::Retroactive)
                .then(|| Array::full(vec![s, c, o], es.concat())),
        }),
        rl: None,
        modulation: None,
        loss,
        gradients: gradients
            .iter()
            .map(|(method, g)| (method.clone(), arrays(g, false)))
            .collect(),
    }
}
