//! Who needs a mirror, and removing the mirrors no one needs.
//!
//! A job pins its commit as `refs/deploys/<job>` in each mirror it reads; the
//! pin is live while the job's process is alive and, for this process, while
//! the job runs ([`Pins`]). Eviction keeps the mirrors under
//! `FASENG_MIRROR_MAX_GB` and never takes one with a live pin or a held lock.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::mirror::{open_lock, stamp};

/// The pins of the jobs this process runs: job name to the mirrors that hold
/// its `refs/deploys/<job>`. A pin of this process that is not here belongs
/// to a job that has ended, and may go.
#[derive(Debug, Clone, Default)]
pub struct Pins(Arc<Mutex<HashMap<String, Vec<PathBuf>>>>);

impl Pins {
    pub(super) fn add(&self, job: &str, mirror: &Path) {
        if let Ok(mut pins) = self.0.lock() {
            let held = pins.entry(job.to_string()).or_default();
            if !held.iter().any(|m| m == mirror) {
                held.push(mirror.to_path_buf());
            }
        }
    }

    fn holds(&self, job: &str) -> bool {
        self.0.lock().map(|p| p.contains_key(job)).unwrap_or(true)
    }

    pub(super) fn take(&self, job: &str) -> Vec<PathBuf> {
        self.0
            .lock()
            .ok()
            .and_then(|mut p| p.remove(job))
            .unwrap_or_default()
    }
}

/// Removes job `job`'s pin from the mirror at `path` when it is a loose ref
/// file and not also in `packed-refs`: `true` when nothing of it is left.
pub(super) fn remove_loose(path: &Path, job: &str) -> bool {
    let name = format!("refs/deploys/{job}");
    let packed = std::fs::read_to_string(path.join("packed-refs"))
        .map(|p| {
            p.lines()
                .any(|l| l.split_once(' ').is_some_and(|(_, r)| r.trim() == name))
        })
        .unwrap_or(false);
    if packed {
        return false;
    }
    match std::fs::remove_file(path.join("refs/deploys").join(job)) {
        Ok(()) => true,
        // Dropped already (another process's maintenance found its job over).
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// The job names pinned in the mirror at `path`: its loose `refs/deploys/*`
/// and, should anyone have packed them, those in `packed-refs`.
pub(super) fn pinned(path: &Path) -> Vec<String> {
    let mut jobs: Vec<String> = std::fs::read_dir(path.join("refs/deploys"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    if let Ok(packed) = std::fs::read_to_string(path.join("packed-refs")) {
        jobs.extend(packed.lines().filter_map(|l| {
            l.split_once(" refs/deploys/")
                .map(|(_, job)| job.trim().to_string())
        }));
    }
    // A pin both loose and packed is one pin.
    jobs.sort_unstable();
    jobs.dedup();
    jobs
}

/// Whether the job a pin names may still read the mirror: a job of another
/// process that is alive (`job-<id>-<pid>`), or one this process runs.
pub(super) fn live(job: &str, pins: &Pins) -> bool {
    let pid = job
        .strip_prefix("job-")
        .and_then(|rest| rest.split_once('-'))
        .and_then(|(_, pid)| pid.parse::<u32>().ok());
    match pid {
        Some(pid) if pid != std::process::id() => Path::new(&format!("/proc/{pid}")).exists(),
        _ => pins.holds(job),
    }
}

/// Bytes under `path`, not following symlinks.
fn size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|d| d.flatten().map(|e| size(&e.path())).sum())
        .unwrap_or(0)
}

/// Keeps the mirrors in `root` under `max_bytes` together: removes the least
/// recently used first, never `keep`, one whose lock another holds, or one a
/// live job has pinned. Leftovers of discarded mirrors go first. Returns the
/// mirrors removed. Blocking: run it off the async threads.
pub(super) fn evict(root: &Path, max_bytes: u64, pins: &Pins, keep: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut mirrors = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains(".broken-") || name.contains(".evicted-") {
            let _ = std::fs::remove_dir_all(&path);
            continue;
        }
        let Some(key) = name.strip_suffix(".git") else {
            continue;
        };
        let lock_path = root.join(format!("{key}.lock"));
        let used = std::fs::metadata(&lock_path)
            .or_else(|_| std::fs::metadata(&path))
            .map(|m| m.mtime())
            .unwrap_or(0);
        mirrors.push((used, size(&path), path, lock_path));
    }
    let mut total: u64 = mirrors.iter().map(|m| m.1).sum();
    let mut removed = Vec::new();
    mirrors.sort_by_key(|m| m.0);
    for (_, bytes, path, lock_path) in mirrors {
        if total <= max_bytes {
            break;
        }
        if path == keep {
            continue;
        }
        let Ok(file) = open_lock(&lock_path) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // a fetch or another eviction is at it
        }
        if pinned(&path).iter().any(|job| live(job, pins)) {
            continue;
        }
        let aside = path.with_extension(format!("evicted-{}", stamp()));
        if std::fs::rename(&path, &aside).is_ok() {
            if let Err(e) = std::fs::remove_dir_all(&aside) {
                tracing::warn!(path = %aside.display(), error = %e, "cannot remove an evicted mirror");
            }
            total = total.saturating_sub(bytes);
            removed.push(path);
        }
        drop(file);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loose_pin_is_removed_and_a_packed_one_is_left_to_git() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path();
        std::fs::create_dir_all(m.join("refs/deploys")).unwrap();
        let sha = "0123456789012345678901234567890123456789";
        std::fs::write(m.join("refs/deploys/job-1"), format!("{sha}\n")).unwrap();
        std::fs::write(m.join("refs/deploys/job-2"), format!("{sha}\n")).unwrap();
        std::fs::write(
            m.join("packed-refs"),
            format!("# pack-refs with: peeled\n{sha} refs/deploys/job-2\n"),
        )
        .unwrap();
        assert!(remove_loose(m, "job-1"));
        assert!(!m.join("refs/deploys/job-1").exists());
        // Packed too: only git removes it from both.
        assert!(!remove_loose(m, "job-2"));
        assert!(m.join("refs/deploys/job-2").exists());
        // Gone already: nothing left to do.
        assert!(remove_loose(m, "job-3"));
        assert_eq!(pinned(m), vec!["job-2".to_string()]);
    }
}
