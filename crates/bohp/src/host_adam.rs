//! Adam on the host, for gradient engines that compute on the host (the analytic engine): the
//! whole update then runs without a tensor operation, instead of burn's optimizer taking a few
//! dozen small tensor operations per update.
//!
//! The arithmetic is burn 0.22.1's `Adam` (`burn_optim::optim::adam`) operation for operation,
//! including its f32 scalars (β's, ε and the bias corrections are computed in f32), so that in
//! f64 a run trained with it equals one trained with burn's optimizer to rounding (tested).

use serde::{Deserialize, Serialize};

const MAGIC: &str = "bohp-host-adam/1";

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

    /// The state as bytes, exactly (a checkpoint's `host_adam.bin`): the line
    /// `bohp-host-adam/1`, a JSON line with β₁, β₂, ε, the update count and the group sizes,
    /// then every first moment and every second moment as little-endian f64.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::json!({
            "beta1": self.beta1,
            "beta2": self.beta2,
            "epsilon": self.epsilon,
            "time": self.time,
            "sizes": self.m.iter().map(Vec::len).collect::<Vec<_>>(),
        });
        let mut bytes = format!("{MAGIC}\n{header}\n").into_bytes();
        for x in self.m.iter().chain(&self.v).flatten() {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        bytes
    }

    /// Reads [`HostAdam::to_bytes`]'s format; the error says what is wrong.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<HostAdam, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Header {
            beta1: f32,
            beta2: f32,
            epsilon: f32,
            time: i32,
            sizes: Vec<usize>,
        }
        let mut lines = bytes.splitn(3, |&b| b == b'\n');
        if lines.next() != Some(MAGIC.as_bytes()) {
            return Err(format!(
                "not a host Adam state (expected a first line `{MAGIC}`)"
            ));
        }
        let header: Header = lines
            .next()
            .ok_or("no header line")
            .and_then(|h| serde_json::from_slice(h).map_err(|_| "a corrupt header line"))
            .map_err(|e| e.to_string())?;
        let body = lines.next().unwrap_or_default();
        let count: usize = header.sizes.iter().sum::<usize>() * 2;
        if body.len() != count * 8 {
            return Err(format!(
                "holds {} bytes of moments, expected {} (2 × {} values)",
                body.len(),
                count * 8,
                count / 2
            ));
        }
        let mut values = body
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")));
        let mut groups = || -> Vec<Vec<f64>> {
            header
                .sizes
                .iter()
                .map(|&n| values.by_ref().take(n).collect())
                .collect()
        };
        let m = groups();
        let v = groups();
        Ok(HostAdam {
            beta1: header.beta1,
            beta2: header.beta2,
            epsilon: header.epsilon,
            time: header.time,
            m,
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
}
