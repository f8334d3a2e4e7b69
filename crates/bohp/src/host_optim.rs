//! Optimizers on the host, for trainers that keep their parameters there (the analytic and fused
//! engines, and any run with the original 2016 procedure): the whole update then runs without
//! a tensor operation, instead of burn's optimizer taking a few dozen small tensor operations
//! per update.
//!
//! [`HostAdam`] is burn 0.22.1's `Adam` (`burn_optim::optim::adam`) operation for operation,
//! including its f32 scalars (β's, ε and the bias corrections are computed in f32), so that in
//! f64 a run trained with it equals one trained with burn's optimizer to rounding (tested).
//! [`Original`] is the original BOHP code's procedure (`train.optimizer = "original"`).
//! [`HostOptimizer`] is either, with its exact byte format for checkpoints.

use serde::{Deserialize, Serialize};

/// Adam's ε in every family (PyTorch's default, as in the peer scripts; burn's default is 1e-5).
pub const ADAM_EPSILON: f32 = 1e-8;

const MAGIC: &str = "bohp-host-adam/1";
const ORIGINAL_MAGIC: &str = "bohp-host-original/1";

/// The byte format of host optimizer states: a first line naming the format, a JSON line with
/// the settings and sizes, then the groups' f64 values little-endian.
fn encode<'a>(
    magic: &str,
    header: &serde_json::Value,
    groups: impl Iterator<Item = &'a Vec<f64>>,
) -> Vec<u8> {
    let mut bytes = format!("{magic}\n{header}\n").into_bytes();
    for x in groups.flatten() {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes
}

/// Reads [`encode`]'s format: the header, and the groups of the lengths `sizes(header)` gives.
fn decode<H: serde::de::DeserializeOwned>(
    bytes: &[u8],
    magic: &str,
    what: &str,
    sizes: impl Fn(&H) -> Vec<usize>,
) -> std::result::Result<(H, Vec<Vec<f64>>), String> {
    let mut lines = bytes.splitn(3, |&b| b == b'\n');
    if lines.next() != Some(magic.as_bytes()) {
        return Err(format!("not {what} (expected a first line `{magic}`)"));
    }
    let header: H = lines
        .next()
        .and_then(|h| serde_json::from_slice(h).ok())
        .ok_or("a corrupt header line")?;
    let body = lines.next().unwrap_or_default();
    let sizes = sizes(&header);
    let count: usize = sizes.iter().sum();
    if body.len() != count * 8 {
        return Err(format!(
            "holds {} bytes of state, expected {} ({count} values)",
            body.len(),
            count * 8
        ));
    }
    let mut values = body
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")));
    let groups = sizes
        .iter()
        .map(|&n| values.by_ref().take(n).collect())
        .collect();
    Ok((header, groups))
}

/// Adam's state for a list of parameter groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostAdam {
    /// β₁ (f32, as in burn).
    pub beta1: f32,
    /// β₂.
    pub beta2: f32,
    /// ε.
    pub epsilon: f32,
    /// Updates taken.
    pub time: i32,
    /// First moments, per group.
    pub m: Vec<Vec<f64>>,
    /// Second moments, per group.
    pub v: Vec<Vec<f64>>,
}

impl HostAdam {
    /// Fresh state for groups of `sizes` elements.
    pub fn new(beta1: f32, beta2: f32, epsilon: f32, sizes: &[usize]) -> HostAdam {
        HostAdam {
            beta1,
            beta2,
            epsilon,
            time: 0,
            m: sizes.iter().map(|n| vec![0.0; *n]).collect(),
            v: sizes.iter().map(|n| vec![0.0; *n]).collect(),
        }
    }

    /// Whether the state fits groups of `sizes` elements.
    pub fn fits(&self, sizes: &[usize]) -> bool {
        self.m.len() == sizes.len()
            && self.v.len() == sizes.len()
            && self.m.iter().zip(sizes).all(|(m, n)| m.len() == *n)
            && self.v.iter().zip(sizes).all(|(v, n)| v.len() == *n)
    }

    /// The state as bytes, exactly: the line `bohp-host-adam/1`, a JSON line with β₁, β₂, ε,
    /// the update count and the group sizes, then every first moment and every second moment
    /// as little-endian f64 ([`HostOptimizer::to_bytes`]).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::json!({
            "beta1": self.beta1,
            "beta2": self.beta2,
            "epsilon": self.epsilon,
            "time": self.time,
            "sizes": self.m.iter().map(Vec::len).collect::<Vec<_>>(),
        });
        encode(MAGIC, &header, self.m.iter().chain(&self.v))
    }

    /// Reads [`HostAdam::to_bytes`]'s format; the error says what is wrong.
    pub(crate) fn from_bytes(bytes: &[u8]) -> std::result::Result<HostAdam, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Header {
            beta1: f32,
            beta2: f32,
            epsilon: f32,
            time: i32,
            sizes: Vec<usize>,
        }
        let (header, mut groups): (Header, _) =
            decode(bytes, MAGIC, "a host Adam state", |h: &Header| {
                h.sizes.iter().chain(&h.sizes).copied().collect()
            })?;
        let v = groups.split_off(header.sizes.len());
        Ok(HostAdam {
            beta1: header.beta1,
            beta2: header.beta2,
            epsilon: header.epsilon,
            time: header.time,
            m: groups,
            v,
        })
    }

    /// One update with learning rate `lr` of the groups whose `trainable` flag is set.
    pub fn step(
        &mut self,
        lr: f64,
        params: &mut [Vec<f64>],
        grads: &[Vec<f64>],
        trainable: &[bool],
    ) {
        self.time += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let factor1 = f64::from(1.0f32 - b1);
        let factor2 = f64::from(1.0f32 - b2);
        let bias_correction2_sqrt = (1.0f32 - b2.powi(self.time)).sqrt();
        let combined = f64::from(bias_correction2_sqrt / (1.0f32 - b1.powi(self.time)));
        let eps = f64::from(self.epsilon * bias_correction2_sqrt);
        let (b1, b2) = (f64::from(b1), f64::from(b2));
        for (g, (((p, grad), m), v)) in params
            .iter_mut()
            .zip(grads)
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
            .enumerate()
        {
            if !trainable[g] {
                continue;
            }
            for i in 0..p.len() {
                m[i] = m[i] * b1 + grad[i] * factor1;
                v[i] = v[i] * b2 + (grad[i] * grad[i]) * factor2;
                let update = (m[i] * combined) / (v[i].sqrt() + eps);
                p[i] -= update * lr;
            }
        }
    }
}

/// The original BOHP code's training procedure (reference §5): RMSprop with a running mean of
/// the squared loss gradient, `mem ← mem + rate·(g² − mem)`, the step `lr·g / (√mem + ε)`
/// clipped to `±max_change` per parameter and update, and L1/L2 penalties on every trained
/// parameter taken as plain gradient steps of `l1·|θ| + l2·θ²/2`, outside the RMS
/// normalization: `θ ← θ − clip(lr·g/(√mem + ε)) − lr·(l1·sign(θ) + l2·θ)`. (Inside it, the
/// penalty's gradient would be divided by the loss gradient's small RMS at initialization and
/// drive every parameter to 0: measured, reversal then stays at chance.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Original {
    /// Rate of the squared-gradient running mean (the original 0.01).
    pub rate: f64,
    /// Largest change of one parameter in one update (the original `MAXDW`).
    pub max_change: f64,
    /// L1 penalty coefficient.
    pub l1: f64,
    /// L2 penalty coefficient.
    pub l2: f64,
    /// ε added to `√mem` (1e-8).
    pub epsilon: f64,
    /// Running means of `g²`, per group.
    pub mem: Vec<Vec<f64>>,
}

impl Original {
    /// Fresh state (`mem = 0`) for groups of `sizes` elements.
    pub fn new(rate: f64, max_change: f64, l1: f64, l2: f64, sizes: &[usize]) -> Original {
        Original {
            rate,
            max_change,
            l1,
            l2,
            epsilon: 1e-8,
            mem: sizes.iter().map(|n| vec![0.0; *n]).collect(),
        }
    }

    /// One update with learning rate `lr` of the groups whose `trainable` flag is set.
    pub fn step(
        &mut self,
        lr: f64,
        params: &mut [Vec<f64>],
        grads: &[Vec<f64>],
        trainable: &[bool],
    ) {
        for (g, ((p, grad), mem)) in params
            .iter_mut()
            .zip(grads)
            .zip(self.mem.iter_mut())
            .enumerate()
        {
            if !trainable[g] {
                continue;
            }
            for i in 0..p.len() {
                mem[i] += self.rate * (grad[i] * grad[i] - mem[i]);
                let change = lr * grad[i] / (mem[i].sqrt() + self.epsilon);
                let sign = if p[i] == 0.0 { 0.0 } else { p[i].signum() };
                let penalty = lr * (self.l1 * sign + self.l2 * p[i]);
                p[i] -= change.clamp(-self.max_change, self.max_change) + penalty;
            }
        }
    }
}

/// A host optimizer's state.
#[derive(Debug, Clone, PartialEq)]
pub enum HostOptimizer {
    /// Adam (`train.optimizer = "adam"`).
    Adam(HostAdam),
    /// The original 2016 procedure (`train.optimizer = "original"`).
    Original(Original),
}

impl HostOptimizer {
    /// One update with learning rate `lr` of the groups whose `trainable` flag is set.
    pub fn step(
        &mut self,
        lr: f64,
        params: &mut [Vec<f64>],
        grads: &[Vec<f64>],
        trainable: &[bool],
    ) {
        match self {
            HostOptimizer::Adam(a) => a.step(lr, params, grads, trainable),
            HostOptimizer::Original(o) => o.step(lr, params, grads, trainable),
        }
    }

    /// The name `train.optimizer` gives it.
    pub fn name(&self) -> &'static str {
        match self {
            HostOptimizer::Adam(_) => "adam",
            HostOptimizer::Original(_) => "original",
        }
    }

    /// Whether the state fits groups of `sizes` elements.
    pub fn fits(&self, sizes: &[usize]) -> bool {
        match self {
            HostOptimizer::Adam(a) => a.fits(sizes),
            HostOptimizer::Original(o) => {
                o.mem.len() == sizes.len() && o.mem.iter().zip(sizes).all(|(m, n)| m.len() == *n)
            }
        }
    }

    /// Whether `other` is the same optimizer with the same settings (its state aside).
    pub(crate) fn same_kind(&self, other: &HostOptimizer) -> bool {
        match (self, other) {
            (HostOptimizer::Adam(a), HostOptimizer::Adam(b)) => {
                (a.beta1, a.beta2, a.epsilon) == (b.beta1, b.beta2, b.epsilon)
            }
            (HostOptimizer::Original(a), HostOptimizer::Original(b)) => {
                (a.rate, a.max_change, a.l1, a.l2, a.epsilon)
                    == (b.rate, b.max_change, b.l1, b.l2, b.epsilon)
            }
            _ => false,
        }
    }

    /// The state as bytes, exactly (a checkpoint's `host_optimizer.bin`): a first line naming
    /// the format, a JSON line with the settings and group sizes, then the state's f64 values
    /// little-endian.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        match self {
            HostOptimizer::Adam(a) => a.to_bytes(),
            HostOptimizer::Original(o) => {
                let header = serde_json::json!({
                    "rate": o.rate,
                    "max_change": o.max_change,
                    "l1": o.l1,
                    "l2": o.l2,
                    "epsilon": o.epsilon,
                    "sizes": o.mem.iter().map(Vec::len).collect::<Vec<_>>(),
                });
                encode(ORIGINAL_MAGIC, &header, o.mem.iter())
            }
        }
    }

    /// Reads [`HostOptimizer::to_bytes`]'s format; the error says what is wrong.
    pub(crate) fn from_bytes(bytes: &[u8]) -> std::result::Result<HostOptimizer, String> {
        if !bytes.starts_with(format!("{ORIGINAL_MAGIC}\n").as_bytes()) {
            return HostAdam::from_bytes(bytes).map(HostOptimizer::Adam);
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Header {
            rate: f64,
            max_change: f64,
            l1: f64,
            l2: f64,
            epsilon: f64,
            sizes: Vec<usize>,
        }
        let (header, mem): (Header, _) = decode(
            bytes,
            ORIGINAL_MAGIC,
            "the original procedure's state",
            |h: &Header| h.sizes.clone(),
        )?;
        Ok(HostOptimizer::Original(Original {
            rate: header.rate,
            max_change: header.max_change,
            l1: header.l1,
            l2: header.l2,
            epsilon: header.epsilon,
            mem,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_steps_match_the_closed_form() {
        // One parameter, constant gradient g: after t steps m̂ = g, v̂ = g², so each step moves
        // by lr · g / (|g| + ε') ≈ lr · sign(g).
        let mut adam = HostAdam::new(0.9, 0.999, 1e-8, &[1, 1]);
        let mut params = vec![vec![1.0], vec![5.0]];
        for _ in 0..3 {
            adam.step(0.1, &mut params, &[vec![2.0], vec![7.0]], &[true, false]);
        }
        assert!((params[0][0] - 0.7).abs() < 1e-5, "{params:?}"); // f32 bias corrections
        assert_eq!(params[1][0], 5.0, "a frozen group does not move");
        assert_eq!(adam.time, 3);
        assert!(adam.fits(&[1, 1]) && !adam.fits(&[2, 1]));
    }

    #[test]
    fn bytes_round_trip_exactly_and_damage_is_named() {
        let mut adam = HostAdam::new(0.9, 0.999, 1e-8, &[3, 1]);
        let mut params = vec![vec![1.0, -2.0, 0.5], vec![3.0]];
        adam.step(
            0.1,
            &mut params,
            &[vec![0.1, 1.0 / 3.0, -7e-9], vec![std::f64::consts::PI]],
            &[true, true],
        );
        let bytes = adam.to_bytes();
        assert_eq!(HostAdam::from_bytes(&bytes).unwrap(), adam);
        let short = HostAdam::from_bytes(&bytes[..bytes.len() - 8]).unwrap_err();
        assert!(short.contains("expected 64"), "{short}");
        let other = HostAdam::from_bytes(b"PK\x03\x04").unwrap_err();
        assert!(other.contains("not a host Adam state"), "{other}");
    }

    #[test]
    fn the_original_procedure_clips_each_change_and_penalizes() {
        // First step: mem = rate·g², so the raw step is lr·g/(√rate·|g|) = 10·lr·sign(g) for
        // rate 0.01, clipped to ±max_change.
        let mut o = Original::new(0.01, 0.05, 0.0, 0.0, &[2]);
        let mut params = vec![vec![1.0, -1.0]];
        o.step(0.001, &mut params, &[vec![3.0, -0.5]], &[true]);
        // 10·0.001 = 0.01 (to ε = 1e-8 in the denominator).
        assert!((params[0][0] - 0.99).abs() < 1e-7, "{params:?}");
        assert!((params[0][1] + 0.99).abs() < 1e-7, "{params:?}");
        o.step(1.0, &mut params, &[vec![3.0, -0.5]], &[true]);
        assert!(
            (params[0][0] - 0.94).abs() < 1e-9,
            "clipped to 0.05: {params:?}"
        );
        // A zero gradient with the penalties: a plain gradient step on them,
        // 2 − 0.01·(0.1·1 + 0.2·2) = 1.995.
        let mut o = Original::new(0.01, 1.0, 0.1, 0.2, &[1]);
        let mut p = vec![vec![2.0]];
        o.step(0.01, &mut p, &[vec![0.0]], &[true]);
        assert!((p[0][0] - 1.995).abs() < 1e-12, "{p:?}");
        // The state round-trips through its bytes exactly.
        let state = HostOptimizer::Original(o);
        assert_eq!(HostOptimizer::from_bytes(&state.to_bytes()).unwrap(), state);
    }
}
