//! Property-based tests of the config readers of every family (issue 27): a shipped config
//! with one key set to a random value (of the wrong type, out of range, huge), an unknown key
//! added, or the text cut short, is either accepted or refused with an error that names the
//! file (and, for a value, the key) — never a panic, never a silent default.

use std::path::Path;

use proptest::prelude::*;

use crate::common::shipped_config_path;

/// One shipped config of each family.
const CONFIGS: [&str; 5] = ["one-shot", "memorisation-50", "maze", "bandit", "omniglot"];

/// `(section, key)` pairs of `text`'s `key = value` lines.
fn keys(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if let Some((key, value)) = line.split_once(" = ")
            && !line.starts_with('#')
            // (A value over several lines, such as a multi-line array, is not replaced.)
            && (!value.starts_with('[') || value.contains(']'))
        {
            out.push((section.clone(), key.trim().to_string()));
        }
    }
    out
}

/// `text` with `section.key`'s value replaced by `value`.
fn with_value(text: &str, section: &str, key: &str, value: &str) -> String {
    let mut current = String::new();
    text.lines()
        .map(|line| {
            let t = line.trim();
            if t.starts_with('[') {
                current = t.trim_matches(|c| c == '[' || c == ']').to_string();
            }
            match t.split_once(" = ") {
                Some((k, _)) if current == section && k.trim() == key && !t.starts_with('#') => {
                    format!("{key} = {value}")
                }
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Values of every TOML type, and numbers at and beyond every range.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        (0u64..20).prop_map(|e| format!("{}", 10u128.pow(e as u32))),
        any::<f64>().prop_map(|v| {
            if v.is_finite() {
                format!("{v:?}")
            } else if v.is_nan() {
                "nan".into()
            } else if v > 0.0 {
                "inf".into()
            } else {
                "-inf".into()
            }
        }),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("true".to_string()),
        "[a-z-]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("[1, 2]".to_string()),
        Just("{ a = 1 }".to_string()),
    ]
}

/// The config at `path` through the registry: `Ok`, or the error's text.
fn check(path: &Path) -> Result<(), String> {
    bohp::registry::Registry::builtin()
        .of_file(path)
        .and_then(|family| family.check(path))
        .map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_random_value_is_accepted_or_refused_by_name(
        which in 0..CONFIGS.len(),
        pick in any::<prop::sample::Index>(),
        value in value(),
    ) {
        let base = std::fs::read_to_string(shipped_config_path(CONFIGS[which])).unwrap();
        let keys = keys(&base);
        let (section, key) = pick.get(&keys);
        let text = with_value(&base, section, key, &value);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("random.toml");
        std::fs::write(&path, &text).unwrap();
        if let Err(message) = check(&path) {
            prop_assert!(message.contains("random.toml"), "{message}");
            // The key is named (as `section.key`, or the key alone in TOML's own errors), or,
            // for a task.kind no family owns, the field with the valid kinds.
            prop_assert!(message.contains(key.as_str()), "{section}.{key} = {value}: {message}");
        }
    }

    #[test]
    fn an_unknown_key_or_a_cut_text_is_refused_by_name(
        which in 0..CONFIGS.len(),
        cut in 0.0f64..1.0,
        unknown in "[a-z_]{1,10}",
    ) {
        let base = std::fs::read_to_string(shipped_config_path(CONFIGS[which])).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.toml");
        // Cut at a character boundary.
        let mut at = (base.len() as f64 * cut) as usize;
        while !base.is_char_boundary(at) {
            at -= 1;
        }
        std::fs::write(&path, &base[..at]).unwrap();
        if let Err(message) = check(&path) {
            prop_assert!(message.contains("cut.toml"), "{message}");
        }
        // An unknown key in [train] is named (unless it happens to be a real one).
        let known: Vec<String> = keys(&base).into_iter().map(|(_, k)| k).collect();
        let text = base.replacen("[train]\n", &format!("[train]\n{unknown} = 1\n"), 1);
        std::fs::write(&path, &text).unwrap();
        match check(&path) {
            Ok(()) => prop_assert!(known.contains(&unknown) || is_train_key(&unknown), "{unknown} accepted"),
            Err(message) => prop_assert!(message.contains(&unknown), "{unknown}: {message}"),
        }
    }
}

/// Whether `key` is a `[train]` key some family reads (accepted where it applies).
fn is_train_key(key: &str) -> bool {
    let text = format!("[train]\n{key} = 1\n");
    let parsed: Result<toml::Value, _> = toml::from_str(&text);
    parsed.is_ok()
        && [
            "episodes",
            "batch",
            "checkpoint_every",
            "freeze_last",
            "readback_every",
            "eval_episodes",
            "trace_checkpoint_every",
        ]
        .contains(&key)
}
