//! One training process per run directory: `<run>/lock` holds the pid of the process training
//! it, created before the first update and removed when training stops (finished, interrupted,
//! diverged or failed). A lock whose process is gone (killed) is stale and taken over.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use super::RunDir;
use crate::error::{Error, Result};

/// A held lock; dropping it removes the file (unless an outer lock of the same process holds
/// it: locks nest).
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    owned: bool,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if self.owned {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether process `pid` is running (Linux: `/proc/<pid>` exists; elsewhere every pid is
/// taken to be running, so a stale lock is removed by hand).
fn alive(pid: u32) -> bool {
    if !std::path::Path::new("/proc/self").exists() {
        return true;
    }
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl RunDir {
    /// `lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.path().join("lock")
    }

    /// Takes the run's lock for this process, or an error naming the process that holds it.
    pub fn lock(&self) -> Result<RunLock> {
        let path = self.lock_path();
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    file.write_all(std::process::id().to_string().as_bytes())
                        .and_then(|_| file.sync_all())
                        .map_err(|e| Error::io(&path, "cannot write", e))?;
                    return Ok(RunLock { path, owned: true });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    match holder {
                        // Held by this process (an outer lock, e.g. `bohp train --resume`'s
                        // around its `--extend`): nested.
                        Some(pid) if pid == std::process::id() => {
                            return Ok(RunLock { path, owned: false });
                        }
                        Some(pid) if alive(pid) => {
                            return Err(Error::artifact(
                                &path,
                                format!(
                                    "the run is being trained by process {pid}; one process per run directory (wait for it, or stop it)"
                                ),
                            ));
                        }
                        // Stale (its process is gone) or unreadable (a kill during its
                        // write): taken over.
                        _ => fs::remove_file(&path)
                            .map_err(|e| Error::io(&path, "cannot remove a stale lock", e))?,
                    }
                }
                Err(e) => return Err(Error::io(&path, "cannot create", e)),
            }
        }
        Err(Error::artifact(
            &path,
            "another process took the lock while a stale one was removed",
        ))
    }
}
