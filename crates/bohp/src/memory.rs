//! Fail fast on sizes: the least memory a config needs, checked against the memory this
//! machine has available, before anything is allocated.
//!
//! The estimate is a lower bound: it counts only what a run must hold at once (the trained
//! parameters with Adam's two moments, and one trace per step and episode that backpropagation
//! keeps, or the fused engine's checkpointed traces), so a config it refuses cannot run, and
//! one it accepts may still need more. Sizes are computed in `f64` so that absurd values do
//! not overflow.

/// One part of an estimate: the config field that sets its size, and its bytes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Term {
    /// The field that makes this part large (named in the error).
    pub field: &'static str,
    /// What the part is, in words.
    pub what: String,
    /// Bytes.
    pub bytes: f64,
}

/// The least memory a config needs, by part.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Estimate {
    /// The parts.
    pub terms: Vec<Term>,
}

impl Estimate {
    /// Adds a part.
    pub fn add(&mut self, field: &'static str, what: impl Into<String>, bytes: f64) {
        self.terms.push(Term {
            field,
            what: what.into(),
            bytes,
        });
    }

    /// Total bytes.
    pub fn total(&self) -> f64 {
        self.terms.iter().map(|t| t.bytes).sum()
    }

    /// Checks the estimate against `available` bytes: `Err((field, message))` naming the field
    /// of the largest part, with the estimate stated, when it does not fit.
    pub fn check(&self, available: f64) -> Result<(), (&'static str, String)> {
        let total = self.total();
        if total <= available {
            return Ok(());
        }
        let largest = self
            .terms
            .iter()
            .max_by(|a, b| a.bytes.total_cmp(&b.bytes))
            .expect("an estimate that exceeds the memory has a part");
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| format!("{} {}", t.what, gib(t.bytes)))
            .collect();
        Err((
            largest.field,
            format!(
                "expected a size that fits in memory: this config needs at least {} ({}), and this machine has {} available",
                gib(total),
                parts.join(" + "),
                gib(available)
            ),
        ))
    }
}

/// `bytes` as GiB (or MiB below one GiB), for messages.
pub(crate) fn gib(bytes: f64) -> String {
    let g = bytes / (1u64 << 30) as f64;
    if g >= 1e5 {
        format!("{g:.2e} GiB")
    } else if g >= 1.0 {
        format!("{g:.1} GiB")
    } else {
        format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
    }
}

/// A `/proc/meminfo` entry in bytes.
fn meminfo(key: &str) -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.split(':').next() == Some(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// The memory available to a new allocation now: `MemAvailable` of `/proc/meminfo` (Linux),
/// or `None` where the OS does not say (the check is then skipped).
pub(crate) fn available_bytes() -> Option<f64> {
    meminfo("MemAvailable")
}

/// Checks a config whose least memory is `estimate(overrides)`: on failure, the field named is
/// the first of `candidates` (a field and an estimate with that field back at its default)
/// whose reset alone makes the config fit, else the largest part's field.
pub(crate) fn check_sizes(
    estimate: &Estimate,
    candidates: &[(&'static str, Estimate)],
    available: f64,
) -> Result<(), (&'static str, String)> {
    match estimate.check(available) {
        Ok(()) => Ok(()),
        Err((largest, message)) => {
            let field = candidates
                .iter()
                .find(|(_, e)| e.total() <= available)
                .map_or(largest, |(f, _)| *f);
            Err((field, message))
        }
    }
}

/// A field the memory check may name, with its value and how to set it back to its default
/// (a field without a default, such as the actor-critic's `model.hidden`, is set to a
/// documented ordinary size).
pub(crate) struct Shrink<'a, C> {
    /// The config field.
    pub field: &'static str,
    /// Its value, for the message.
    pub value: String,
    /// Sets it to its default.
    pub reset: &'a dyn Fn(&mut C),
}

/// Checks `config`, whose least memory is `estimate(config)`, against `available` bytes: on
/// failure the error names the first of `shrinks` whose reset alone makes the config fit
/// (else the largest part's field) with its value, and states the estimate.
pub(crate) fn check_config<C: Clone>(
    config: &C,
    estimate: impl Fn(&C) -> Estimate,
    shrinks: &[Shrink<'_, C>],
    bad: &dyn Fn(&str, String, &str) -> crate::error::Error,
    available: f64,
) -> crate::error::Result<()> {
    let candidates: Vec<(&'static str, Estimate)> = shrinks
        .iter()
        .map(|s| {
            let mut c = config.clone();
            (s.reset)(&mut c);
            (s.field, estimate(&c))
        })
        .collect();
    check_sizes(&estimate(config), &candidates, available).map_err(|(field, expected)| {
        let value = shrinks
            .iter()
            .find(|s| s.field == field)
            .map_or_else(String::new, |s| s.value.clone());
        bad(field, value, &expected)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_part_is_named_with_the_estimate() {
        let mut e = Estimate::default();
        e.add(
            "model.hidden",
            "parameters and Adam state",
            3.0 * (1u64 << 30) as f64,
        );
        e.add("train.batch", "traces", 1.0 * (1u64 << 30) as f64);
        assert!(e.check(5.0 * (1u64 << 30) as f64).is_ok());
        let (field, message) = e.check(2.0 * (1u64 << 30) as f64).unwrap_err();
        assert_eq!(field, "model.hidden");
        assert!(
            message.contains("at least 4.0 GiB") && message.contains("2.0 GiB available"),
            "{message}"
        );
    }

    #[test]
    fn available_memory_is_read_in_bytes_on_linux() {
        if cfg!(target_os = "linux") {
            let available = available_bytes().expect("Linux reports MemAvailable");
            let total = meminfo("MemTotal").expect("Linux reports MemTotal");
            // In bytes (not kB): a machine that builds this crate has more than 1 GiB.
            assert!(total > (1u64 << 30) as f64, "{total}");
            assert!(
                available > 0.0 && available <= total,
                "{available} of {total}"
            );
        }
    }

    #[test]
    fn the_field_whose_reset_fits_is_named() {
        let gb = (1u64 << 30) as f64;
        let mut big = Estimate::default();
        big.add("model.hidden", "parameters", 1.0 * gb);
        big.add("train.batch", "traces", 9.0 * gb);
        let mut small_hidden = Estimate::default();
        small_hidden.add("model.hidden", "parameters", 0.1 * gb);
        small_hidden.add("train.batch", "traces", 0.9 * gb);
        // The traces are the largest part, but they are large because of `model.hidden`.
        let (field, _) =
            check_sizes(&big, &[("model.hidden", small_hidden)], 4.0 * gb).unwrap_err();
        assert_eq!(field, "model.hidden");
        let (field, _) = check_sizes(&big, &[], 4.0 * gb).unwrap_err();
        assert_eq!(field, "train.batch");
    }
}
