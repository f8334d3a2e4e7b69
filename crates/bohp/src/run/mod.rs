//! Run directories: the resolved config, `metrics.csv`, checkpoints (model record, optimizer
//! state, progress) and the final model.
//!
//! ```text
//! <run>/config.toml            the resolved config (defaults written out)
//! <run>/metrics.csv            one row per update (the family's columns, episode first)
//! <run>/train.log              the log
//! <run>/checkpoint/model.bpk   model record (burnpack)
//! <run>/checkpoint/optimizer.bpk  burn's Adam state (burnpack), when burn's optimizer trains
//! <run>/checkpoint/host_optimizer.bin  the optimizer's state, when it runs on the host
//! <run>/checkpoint/state.json  next episode, precision, file checksums (config.toml's too)
//! <run>/model.bpk              the final model, once the run has finished
//! <run>/summary.json           frozen-phase and final measures, once the run has finished
//! <run>/lock                   the pid of the process training the run, while it trains
//! <run>/checksums.json         CRC-32 of config.toml, metrics.csv, summary.json, model.bpk;
//!                              written last when the run finishes ([`verify`])
//! ```
//!
//! Every file is written to a temporary name and renamed into place, and a checkpoint directory
//! is replaced only once its successor is complete, so an interruption at any moment leaves the
//! last complete checkpoint readable.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use crate::device::Precision;
use crate::error::{Error, Result};
use crate::single::network::PlasticNet;
use crate::single::tasks::Measures;

pub mod lock;
pub mod verify;

/// A run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
    /// While training: when this session started, and the seconds trained before it (the
    /// checkpoints record their sum).
    clock: Option<(std::time::Instant, f64)>,
}

/// What a checkpoint records besides the model and optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointState {
    /// The first episode not yet run: training continues from here.
    pub next_episode: usize,
    /// Precision of the saved tensors.
    pub dtype: Precision,
    /// CRC-32 of `model.bpk`.
    pub model_crc32: u32,
    /// CRC-32 of `optimizer.bpk` (absent when the optimizer runs on the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer_crc32: Option<u32>,
    /// CRC-32 of `host_optimizer.bin`, when the optimizer runs on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_optimizer_crc32: Option<u32>,
    /// The bohp version that wrote it.
    pub bohp_version: String,
    /// Adam's host state as written by bohp 0.1 checkpoints (now in `host_optimizer.bin`, exactly);
    /// read, never written.
    #[serde(default, skip_serializing)]
    pub host_adam: Option<crate::host_optim::HostAdam>,
    /// CRC-32 of the run's `config.toml` when the checkpoint was written: a resume refuses a
    /// config edited since (absent in checkpoints of older bohp versions, which are not
    /// checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_crc32: Option<u32>,
    /// CRC-32 of `metrics.csv`'s header and its `next_episode` rows when the checkpoint was
    /// written: a resume refuses a state or metrics edited since (absent in checkpoints of
    /// older bohp versions, which are not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_crc32: Option<u32>,
    /// Seconds spent training up to this checkpoint, over every session of the run (absent in
    /// checkpoints of older bohp versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
}

/// The end-of-run summary written to `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Task name.
    pub task: String,
    /// Episodes (updates) run.
    pub episodes: usize,
    /// Independent episodes per update.
    pub batch: usize,
    /// Mean measures over the frozen phase (absent without one).
    pub frozen: Option<Measures>,
    /// Mean measures over the last 100 episodes.
    pub last_100: Measures,
    /// Seconds the run spent training, over all its sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
    /// That session's peak resident memory (MiB), when the OS reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
}

/// A row of a family's `metrics.csv`: one update's measures, its index first.
pub trait MetricsRecord: Serialize + serde::de::DeserializeOwned + Copy {
    /// The update's index (0-based).
    fn episode(&self) -> usize;
}

impl MetricsRecord for MetricsRow {
    fn episode(&self) -> usize {
        self.episode
    }
}

/// A checkpoint's contents, as a family's trainer hands them to [`RunDir::write_checkpoint`].
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The model record (burnpack bytes).
    pub model: Vec<u8>,
    /// burn's optimizer state (burnpack bytes), when burn's optimizer trains.
    pub optimizer: Option<Vec<u8>>,
    /// The optimizer's state, when it runs on the host.
    pub host_optimizer: Option<crate::host_optim::HostOptimizer>,
    /// The first update not yet run.
    pub next_episode: usize,
    /// Precision of the saved tensors.
    pub dtype: Precision,
}

/// A checkpoint read back, every file checked against its checksum.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The directory it was read from (`checkpoint/`, or `checkpoint.old/`).
    pub dir: PathBuf,
    /// Its `state.json`.
    pub state: CheckpointState,
    /// The model record.
    pub model: Vec<u8>,
    /// burn's optimizer state, if the checkpoint has one.
    pub optimizer: Option<Vec<u8>>,
    /// The host optimizer's state, if the checkpoint has one.
    pub host_optimizer: Option<crate::host_optim::HostOptimizer>,
}

impl Checkpoint {
    /// The checkpoint's model record (`model.bpk`) loaded into `fresh` (a module of the run's
    /// shape), or an error naming the file.
    pub fn restore_model<M: Module>(&mut self, fresh: M) -> Result<M> {
        let bytes = std::mem::take(&mut self.model);
        record_from_bytes(fresh, bytes, &self.dir.join("model.bpk"))
    }

    /// burn's optimizer state restored into `fresh` (an optimizer of the run's shape), or an
    /// error naming the missing `optimizer.bpk` (a checkpoint of a host optimizer).
    pub(crate) fn restore_optimizer(&mut self, fresh: ModuleOptimizer) -> Result<ModuleOptimizer> {
        let path = self.dir.join("optimizer.bpk");
        let bytes = self.optimizer.take().ok_or_else(|| {
            Error::artifact(
                &path,
                "missing: the checkpoint has no burn optimizer state (it was written by an engine whose optimizer runs on the host)",
            )
        })?;
        optimizer_from_bytes(fresh, bytes, &path, self.state.dtype)
    }
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// Episode (update) index, from 0.
    pub episode: usize,
    /// Training loss, averaged over the batch.
    pub loss: f64,
    /// The paper's error measure, averaged over the batch.
    pub error: f64,
    /// The original code's error measure, averaged over the batch.
    pub error_code: f64,
    /// 1 in the frozen phase (no parameter update), else 0.
    pub frozen: u8,
}

impl MetricsRow {
    /// The row's measures.
    pub fn measures(&self) -> Measures {
        Measures {
            loss: self.loss,
            error: self.error,
            error_code: self.error_code,
        }
    }
}

/// The process's peak resident memory in MiB (Linux `VmHWM`; `None` elsewhere), of this
/// process or of `pid`.
pub fn peak_rss_mib(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, "cannot create", e))?;
    if let Err(e) = file.write_all(bytes).and_then(|_| file.sync_all()) {
        // (The partial file is of no use; the file at `path` is as it was.)
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, "cannot write", e));
    }
    fs::rename(&tmp, path).map_err(|e| Error::io(path, "cannot move into place", e))
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::artifact(path, format!("cannot read {what}: {e}")))
}

/// Loads a model record file into `template` (a model of the same shape), checking the file
/// against `crc` when given.
pub fn load_model(template: PlasticNet, path: &Path, crc: Option<u32>) -> Result<PlasticNet> {
    load_record(template, path, crc)
}

/// Loads a model record file into `template`, a module of any family of the same shape
/// (checked against `crc` when given).
pub fn load_record<M: Module>(template: M, path: &Path, crc: Option<u32>) -> Result<M> {
    let bytes = read(path, "model record")?;
    if let Some(crc) = crc
        && crc32fast::hash(&bytes) != crc
    {
        return Err(Error::artifact(
            path,
            "model record is corrupt: its checksum does not match the checkpoint's state.json",
        ));
    }
    record_from_bytes(template, bytes, path)
}

/// Loads model record bytes (read from `path`, named in errors) into `template`.
pub fn record_from_bytes<M: Module>(template: M, bytes: Vec<u8>, path: &Path) -> Result<M> {
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::artifact(path, format!("not a valid model record: {e}")))?;
    template
        .try_load_record(record.cast_to_module_dtype())
        .map_err(|e| {
            Error::artifact(
                path,
                format!("model record does not match the configured network: {e}"),
            )
        })
}

/// Restores burn optimizer state bytes (read from `path`, named in errors) into `optim`, a
/// fresh optimizer of the run's shape; `dtype` is the precision the state was saved in.
pub(crate) fn optimizer_from_bytes(
    optim: ModuleOptimizer,
    bytes: Vec<u8>,
    path: &Path,
    dtype: Precision,
) -> Result<ModuleOptimizer> {
    crate::device::align_default_device(dtype)?;
    optim
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::artifact(path, format!("not a valid optimizer state: {e}")))
}

/// Serializes burn optimizer state.
pub(crate) fn optimizer_bytes(optim: &ModuleOptimizer, path: &Path) -> Result<Vec<u8>> {
    Ok(optim
        .into_bytes()
        .map_err(|e| Error::artifact(path, format!("cannot serialize the optimizer: {e}")))?
        .to_vec())
}

/// Serializes a model record (of any family).
pub fn model_bytes<M: Module>(model: &M, path: &Path) -> Result<Vec<u8>> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::artifact(path, format!("cannot serialize the model: {e}")))?;
    Ok(bytes.to_vec())
}

impl RunDir {
    /// A new run directory at `path`: created if missing, refused if it exists and is not
    /// empty (nothing in it is touched). A directory holding only a `config.tmp` (a new run
    /// stopped while writing its config) counts as empty.
    pub fn create(path: &Path) -> Result<RunDir> {
        if path.exists() {
            let entries: Vec<_> = fs::read_dir(path)
                .map_err(|e| Error::io(path, "cannot read run directory", e))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()
                .map_err(|e| Error::io(path, "cannot read run directory", e))?;
            if entries.iter().any(|name| name != "config.tmp") {
                return Err(Error::RunDirExists {
                    path: path.to_path_buf(),
                });
            }
        }
        fs::create_dir_all(path).map_err(|e| Error::io(path, "cannot create run directory", e))?;
        Ok(RunDir {
            path: path.to_path_buf(),
            clock: None,
        })
    }

    /// An existing run directory (it must hold `config.toml`).
    pub fn open(path: &Path) -> Result<RunDir> {
        let run = RunDir {
            path: path.to_path_buf(),
            clock: None,
        };
        if !path.is_dir() {
            return Err(Error::artifact(
                path,
                "not a run directory: it does not exist",
            ));
        }
        if !run.config_path().is_file() {
            return Err(Error::artifact(
                path,
                "not a run directory: it has no config.toml",
            ));
        }
        Ok(run)
    }

    /// This run directory with a training clock started now, after `before` seconds of
    /// earlier sessions: its checkpoints record the sum.
    pub(crate) fn timed(&self, before: f64) -> RunDir {
        RunDir {
            path: self.path.clone(),
            clock: Some((std::time::Instant::now(), before)),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.toml")
    }

    /// `metrics.csv`.
    pub(crate) fn metrics_path(&self) -> PathBuf {
        self.path.join("metrics.csv")
    }

    /// `train.log`.
    pub fn log_path(&self) -> PathBuf {
        self.path.join("train.log")
    }

    /// `checkpoint/`.
    pub(crate) fn checkpoint_dir(&self) -> PathBuf {
        self.path.join("checkpoint")
    }

    /// `model.bpk`, the final model.
    pub fn model_path(&self) -> PathBuf {
        self.path.join("model.bpk")
    }

    /// `summary.json`.
    pub fn summary_path(&self) -> PathBuf {
        self.path.join("summary.json")
    }

    /// Checks that `config.toml` is the one the checkpoint `state` was written with (its
    /// CRC-32), so that a resumed run is the run that started.
    pub(crate) fn check_config_identity(&self, state: &CheckpointState) -> Result<()> {
        let Some(expected) = state.config_crc32 else {
            return Ok(());
        };
        let path = self.config_path();
        let bytes = fs::read(&path).map_err(|e| Error::io(&path, "cannot read", e))?;
        if crc32fast::hash(&bytes) != expected {
            return Err(Error::artifact(
                &path,
                "edited since the run started: its checksum differs from the one the checkpoint recorded; \
                 a run resumes with the config it started with (restore the file, or train a new run; \
                 `bohp train --resume DIR --extend N` adds updates to a finished run)",
            ));
        }
        Ok(())
    }

    /// Writes the checkpoint `snapshot`, replacing the previous one only once the new one is
    /// complete.
    pub fn write_checkpoint(&self, snapshot: &Snapshot) -> Result<()> {
        // The identity of the run: the config file as written (a `--device` override on resume
        // changes the trainer's config, not the run's).
        let config_crc32 = fs::read(self.config_path())
            .ok()
            .map(|b| crc32fast::hash(&b));
        let metrics_crc32 = Some(self.metrics_prefix_crc(snapshot.next_episode)?);
        let dir = self.checkpoint_dir();
        let tmp = self.path.join("checkpoint.tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, "cannot remove", e))?;
        }
        fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, "cannot create", e))?;
        write_atomic(&tmp.join("model.bpk"), &snapshot.model)?;
        if let Some(bytes) = &snapshot.optimizer {
            write_atomic(&tmp.join("optimizer.bpk"), bytes)?;
        }
        let host_optimizer = snapshot.host_optimizer.as_ref().map(|a| a.to_bytes());
        if let Some(bytes) = &host_optimizer {
            write_atomic(&tmp.join("host_optimizer.bin"), bytes)?;
        }
        let state = CheckpointState {
            next_episode: snapshot.next_episode,
            dtype: snapshot.dtype,
            model_crc32: crc32fast::hash(&snapshot.model),
            optimizer_crc32: snapshot.optimizer.as_deref().map(crc32fast::hash),
            host_optimizer_crc32: host_optimizer.as_deref().map(crc32fast::hash),
            bohp_version: env!("CARGO_PKG_VERSION").to_string(),
            host_adam: None,
            config_crc32,
            metrics_crc32,
            wall_seconds: self
                .clock
                .map(|(started, before)| before + started.elapsed().as_secs_f64()),
        };
        let json = serde_json::to_vec_pretty(&state).expect("state serializes");
        write_atomic(&tmp.join("state.json"), &json)?;
        let old = self.path.join("checkpoint.old");
        if dir.exists() {
            if old.exists() {
                fs::remove_dir_all(&old).map_err(|e| Error::io(&old, "cannot remove", e))?;
            }
            fs::rename(&dir, &old).map_err(|e| Error::io(&dir, "cannot move aside", e))?;
        }
        fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, "cannot move into place", e))?;
        if old.exists() {
            fs::remove_dir_all(&old).map_err(|e| Error::io(&old, "cannot remove", e))?;
        }
        Ok(())
    }

    /// The checkpoint directory to read: `checkpoint/`, or `checkpoint.old/` if an interruption
    /// fell between the two renames of [`RunDir::write_checkpoint`].
    fn readable_checkpoint_dir(&self) -> Result<PathBuf> {
        let dir = self.checkpoint_dir();
        if dir.join("state.json").is_file() {
            return Ok(dir);
        }
        let old = self.path.join("checkpoint.old");
        if old.join("state.json").is_file() {
            return Ok(old);
        }
        Err(Error::artifact(
            &dir,
            "no checkpoint: the run has no checkpoint/state.json to resume from",
        ))
    }

    /// Whether the run was stopped before its first checkpoint (a new run writes one of its
    /// initial parameters before any update): no checkpoint, no final model, no metrics rows.
    /// Such a run is started again from update 0 on resume.
    pub fn stopped_before_first_checkpoint(&self) -> bool {
        let rows = fs::read(self.metrics_path())
            .map(|b| b.iter().filter(|&&c| c == b'\n').count() > 1)
            .unwrap_or(false);
        !self.checkpoint_dir().join("state.json").exists()
            && !self.path.join("checkpoint.old").join("state.json").exists()
            && !self.model_path().exists()
            && !rows
    }

    /// Reads the checkpoint's state.
    pub fn read_checkpoint_state(&self) -> Result<(PathBuf, CheckpointState)> {
        let dir = self.readable_checkpoint_dir()?;
        let path = dir.join("state.json");
        let bytes = read(&path, "checkpoint state")?;
        let state: CheckpointState = serde_json::from_slice(&bytes).map_err(|e| {
            Error::artifact(&path, format!("corrupt checkpoint state (expected JSON with next_episode, dtype, checksums): {e}"))
        })?;
        Ok((dir, state))
    }

    /// Reads the checkpoint, checking each file against the checksum `state.json` recorded.
    pub(crate) fn read_checkpoint(&self) -> Result<Checkpoint> {
        let (dir, state) = self.read_checkpoint_state()?;
        let checked = |name: &str, what: &str, crc: u32| -> Result<Vec<u8>> {
            let path = dir.join(name);
            let bytes = read(&path, what)?;
            if crc32fast::hash(&bytes) != crc {
                return Err(Error::artifact(
                    &path,
                    format!(
                        "{what} is corrupt: its checksum does not match the checkpoint's state.json"
                    ),
                ));
            }
            Ok(bytes)
        };
        let model = checked("model.bpk", "model record", state.model_crc32)?;
        let optimizer = state
            .optimizer_crc32
            .map(|crc| checked("optimizer.bpk", "optimizer state", crc))
            .transpose()?;
        let host_optimizer = match state.host_optimizer_crc32 {
            Some(crc) => {
                let bytes = checked("host_optimizer.bin", "host optimizer state", crc)?;
                Some(
                    crate::host_optim::HostOptimizer::from_bytes(&bytes)
                        .map_err(|e| Error::artifact(dir.join("host_optimizer.bin"), e))?,
                )
            }
            None => state
                .host_adam
                .clone()
                .map(crate::host_optim::HostOptimizer::Adam),
        };
        Ok(Checkpoint {
            dir,
            state,
            model,
            optimizer,
            host_optimizer,
        })
    }

    /// Reads `metrics.csv` (all rows).
    pub fn read_metrics<R: MetricsRecord>(&self) -> Result<Vec<R>> {
        self.read_metrics_up_to(usize::MAX)
    }

    /// Reads at most the first `limit` rows of `metrics.csv`; what follows is not parsed.
    fn read_metrics_up_to<R: MetricsRecord>(&self, limit: usize) -> Result<Vec<R>> {
        let path = self.metrics_path();
        if !path.exists() {
            return Ok(Vec::new());
        }
        let mut reader =
            csv::Reader::from_path(&path).map_err(|e| Error::artifact(&path, e.to_string()))?;
        reader
            .deserialize()
            .take(limit)
            .enumerate()
            .map(|(i, row)| {
                row.map_err(|e| {
                    Error::artifact(
                        &path,
                        format!("row {}: {e} (expected the columns its header names)", i + 2),
                    )
                })
            })
            .collect()
    }

    /// The first `next_episode` rows of `metrics.csv`, checked to be one per episode in order.
    /// Rows after them (episodes a resumed run will redo; after a kill, possibly a partly
    /// written one) are ignored.
    pub(crate) fn metrics_before<R: MetricsRecord>(&self, next_episode: usize) -> Result<Vec<R>> {
        let kept: Vec<R> = self.read_metrics_up_to(next_episode)?;
        let in_order = kept.iter().enumerate().all(|(i, r)| r.episode() == i);
        if kept.len() != next_episode || !in_order {
            return Err(Error::artifact(
                self.metrics_path(),
                format!(
                    "holds {} rows before episode {next_episode}, expected one per episode in order",
                    kept.len()
                ),
            ));
        }
        Ok(kept)
    }

    /// Opens `metrics.csv` for appending, keeping only the rows of episodes before
    /// `next_episode` (those after a checkpoint are re-run identically on resume).
    pub fn metrics_writer<R: MetricsRecord>(
        &self,
        next_episode: usize,
    ) -> Result<MetricsWriter<R>> {
        let path = self.metrics_path();
        let kept: Vec<R> = self.metrics_before(next_episode)?;
        let mut bytes = Vec::new();
        {
            let mut writer = csv::Writer::from_writer(&mut bytes);
            for row in &kept {
                writer.serialize(row).expect("writing to memory");
            }
            writer.flush().expect("writing to memory");
        }
        write_atomic(&path, &bytes)?;
        let file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, "cannot open for appending", e))?;
        Ok(MetricsWriter {
            path,
            // An empty file gets its header with the first row.
            writer: csv::WriterBuilder::new()
                .has_headers(kept.is_empty())
                .from_writer(file),
            row: std::marker::PhantomData,
        })
    }
}

/// Appends rows to `metrics.csv`.
pub struct MetricsWriter<R> {
    path: PathBuf,
    writer: csv::Writer<fs::File>,
    row: std::marker::PhantomData<R>,
}

impl<R: MetricsRecord> MetricsWriter<R> {
    /// Appends a row (buffered until [`MetricsWriter::flush`]).
    pub fn write(&mut self, row: &R) -> Result<()> {
        self.writer
            .serialize(row)
            .map_err(|e| Error::artifact(&self.path, format!("cannot write: {e}")))
    }

    /// Flushes buffered rows to disk.
    pub fn flush(&mut self) -> Result<()> {
        self.writer
            .flush()
            .map_err(|e| Error::io(&self.path, "cannot write", e))
    }
}
