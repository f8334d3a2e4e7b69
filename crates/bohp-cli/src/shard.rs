//! Splitting a reproduction across machines: `--shard K/N` trains every N-th run of the plan
//! (one slice per machine, job or Slurm array task), `--merge DIR...` gathers the slices'
//! finished run directories into one output directory, where the usual summary and figures are
//! written. The runs themselves are deterministic (each seed's random streams are its own), so
//! a merged reproduction equals an unsharded one.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};

/// `--shard K/N`: the K-th of N slices (1 ≤ K ≤ N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// K, from 1.
    pub index: usize,
    /// N.
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("`{s}`: expected K/N with 1 <= K <= N, e.g. 2/8");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether run `job` (its position in the plan's fixed order, from 0) is this slice's:
    /// runs are dealt round-robin, so slices get near-equal shares of every task and variant.
    pub fn takes(&self, job: usize) -> bool {
        job % self.count == self.index - 1
    }
}

/// Checks `--shard` and `--merge` together: at most one of them.
pub fn check_flags(shard: Option<Shard>, merge: &[PathBuf]) -> Result<()> {
    if shard.is_some() && !merge.is_empty() {
        bail!("--shard and --merge: a slice trains, a merge gathers; give one of them");
    }
    for dir in merge {
        if !dir.is_dir() {
            bail!(
                "--merge {}: not a directory (expected the --out of a finished slice)",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Where `out/rel` of a merge comes from: kept if it already is a finished run, otherwise
/// the first of `from` whose `rel` is (`finished` says, and errors on a run of another
/// config). A run that no slice finished is an error naming it; an unfinished run in `out` is
/// left alone and named. Reads only: a merge plans every run before it writes any
/// ([`apply_merges`]), so a merge that fails writes nothing.
pub fn plan_merge(
    rel: &Path,
    from: &[PathBuf],
    out: &Path,
    finished: &dyn Fn(&Path) -> Result<bool>,
) -> Result<Option<(PathBuf, PathBuf)>> {
    let target = out.join(rel);
    if finished(&target)? {
        return Ok(None);
    }
    if target.exists() {
        bail!(
            "{}: an unfinished run in the merge's output; finish it (run its slice again) or \
             remove it",
            target.display()
        );
    }
    for dir in from {
        let source = dir.join(rel);
        if finished(&source)? {
            return Ok(Some((source, target)));
        }
    }
    let dirs: Vec<String> = from.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "{}: no finished run in any --merge directory ({}); run its slice to the end first",
        rel.display(),
        dirs.join(", ")
    )
}

/// Copies each planned run (source, target) of [`plan_merge`]: next to its target, then
/// renamed into place, so that an interrupted merge leaves no half run (run the merge again to
/// complete it).
pub fn apply_merges(planned: &[(PathBuf, PathBuf)]) -> Result<()> {
    for (source, target) in planned {
        let parent = target.parent().expect("a run directory has a parent");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
        let partial = parent.join(format!(
            ".{}.merging",
            target.file_name().expect("named").to_string_lossy()
        ));
        if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .with_context(|| format!("{}: cannot remove", partial.display()))?;
        }
        copy_dir(source, &partial)?;
        std::fs::rename(&partial, target)
            .with_context(|| format!("{}: cannot create", target.display()))?;
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("{}: cannot create", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("{}", from.display()))? {
        let entry = entry?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&path, &dest)?;
        } else {
            std::fs::copy(&path, &dest)
                .with_context(|| format!("copying {} to {}", path.display(), dest.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_deal_every_run_once() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        for count in 1..6 {
            for job in 0..20 {
                let takers = (1..=count)
                    .filter(|&index| Shard { index, count }.takes(job))
                    .count();
                assert_eq!(takers, 1, "job {job} of {count} slices");
            }
        }
    }
}
