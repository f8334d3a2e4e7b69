//! One file per subcommand, and what they share: the Ctrl-C flag, run directories, logging.

pub(crate) mod bench;
pub(crate) mod eval;
pub(crate) mod export;
pub(crate) mod gradcheck;
pub(crate) mod inspect;
pub(crate) mod reproduce;
pub(crate) mod tasks;
pub(crate) mod train;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use bohp::run::RunDir;

/// Set by Ctrl-C: training stops after the current episode and writes a checkpoint.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

/// `runs/<stem>`, or the first free `runs/<stem>-N`.
pub(crate) fn default_run_dir(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let base = PathBuf::from("runs");
    let mut candidate = base.join(&stem);
    let mut n = 2;
    while candidate.exists() {
        candidate = base.join(format!("{stem}-{n}"));
        n += 1;
    }
    candidate
}

pub(crate) fn init_logging(run: &RunDir) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.log_path())
        .with_context(|| format!("{}: cannot open the log", run.log_path().display()))?;
    tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// Ctrl-C (and SIGTERM, SIGHUP) sets [`STOP`] (training stops after the current update and
/// writes a checkpoint); a second one exits at
/// once with code 130.
pub(crate) fn install_stop_handler() -> Result<()> {
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(())
}

/// The families this program knows: the library's.
pub(crate) fn registry() -> bohp::registry::Registry {
    bohp::registry::Registry::builtin()
}

/// Whether the config file at `path` belongs to the family named `name`.
pub(crate) fn is_family(path: &Path, name: &str) -> bool {
    registry().is(path, name)
}

/// The progress bar every command shows: `count` of what it counts (`updates`, `episodes`),
/// elapsed time, rate, and the time remaining spelled out (not "eta", which names the
/// plasticity rate η elsewhere), hidden with `--quiet`.
pub(crate) fn progress_bar(total: u64, unit: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let template = format!(
        "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} remaining) {{msg}}"
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(&template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}
