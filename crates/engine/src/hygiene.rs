//! Restart hygiene: before a faseng claims anything, it makes sure that what a dead
//! faseng of the same host left (guards, their providers, job folders) is gone.
//!
//! A guard stops its provider by itself when faseng dies (its pipe closes), so a
//! guard outliving faseng means something is stuck (a stopped or wedged guard). Pids
//! and start times identify processes only within one boot, so only runners recorded
//! on this host (`/etc/machine-id`) and this boot (`boot_id`) are touched, and only
//! when the faseng that recorded them is no longer the process that started then.

use std::path::Path;
use std::sync::Arc;

use chima_store::{DeploymentState, Outcome, Runner, Store, StoreError};

use crate::EngineConfig;
use crate::guard::{self, GuardStatus};

/// What the sweep did, for the log line at start.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Deployments of a dead faseng of this host, ended `errored`.
    pub ended: Vec<i64>,
    /// Guards (with their providers) that were still there and were killed.
    pub guards_killed: usize,
    /// Job folders, spill files and status files removed.
    pub removed: usize,
}

/// This process, as recorded with a claim.
pub fn runner_here() -> Runner {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let pid = std::process::id();
    Runner {
        host: read("/etc/machine-id")
            .or_else(|| read("/proc/sys/kernel/hostname"))
            .unwrap_or_default(),
        boot: read("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
        pid,
        pid_start: guard::start_time(pid).unwrap_or(0),
        guard_pid: None,
        guard_start: None,
    }
}

/// Ends what dead predecessors on this host left running, kills their guards, and
/// removes the job folders of ended deployments from the work folder.
pub async fn sweep(store: &Arc<dyn Store>, cfg: &EngineConfig) -> Result<Swept, StoreError> {
    let me = runner_here();
    let mut swept = Swept::default();
    for r in store.running_runners().await? {
        let left = &r.runner;
        let here = !me.host.is_empty() && left.host == me.host && left.boot == me.boot;
        if !here || left.pid == me.pid || guard::alive(left.pid, left.pid_start) {
            continue;
        }
        if let (Some(pid), Some(start)) = (left.guard_pid, left.guard_start) {
            let killed = tokio::task::spawn_blocking(move || guard::kill_left_guard(pid, start))
                .await
                .unwrap_or(false);
            swept.guards_killed += usize::from(killed);
        }
        let why = format!(
            "worker lost: faseng (pid {}) on this host died mid-deploy; a restarted faseng made sure its provider is gone",
            left.pid
        );
        match store
            .finish(r.id, &r.worker_id, Outcome::errored(why))
            .await
        {
            Ok(_) => swept.ended.push(r.id),
            Err(e) if e.is_unavailable() => return Err(e),
            Err(e) => tracing::debug!(deployment = r.id, error = %e, "already ended"),
        }
    }
    sweep_folder(store, &cfg.workdir, &mut swept).await?;
    Ok(swept)
}

/// Guards' status files of dead fasengs, and job folders and spill files of ended
/// deployments.
async fn sweep_folder(
    store: &Arc<dyn Store>,
    workdir: &Path,
    swept: &mut Swept,
) -> Result<(), StoreError> {
    let Ok(entries) = std::fs::read_dir(workdir) else {
        return Ok(()); // not made yet: nothing was left
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        // A guard's status file; or, when the guard died between removing the old
        // version and renaming the new one in (`GuardStatus::write`), only the
        // new one under its temporary name.
        let status_file = name.contains("-guard-")
            && (name.ends_with(".json")
                || (name.ends_with(".tmp") && !path.with_extension("json").exists()));
        if status_file {
            let status_path = path.with_extension("json");
            // Half written (or being written by a guard of a live faseng that
            // shares the folder): left alone.
            let Some(status) = GuardStatus::read(&status_path) else {
                continue;
            };
            if guard::alive(status.parent_pid, status.parent_start) {
                continue; // another faseng sharing the folder, alive
            }
            if !status.ended {
                let (pid, start) = (status.guard_pid, status.guard_start);
                let killed =
                    tokio::task::spawn_blocking(move || guard::kill_left_guard(pid, start))
                        .await
                        .unwrap_or(false);
                swept.guards_killed += usize::from(killed);
            }
            swept.removed += usize::from(std::fs::remove_file(&path).is_ok());
            let _ = std::fs::remove_file(GuardStatus::tmp_path(&status_path));
            continue;
        }
        let Some((id, owner)) = job_id(&name) else {
            continue;
        };
        // The folder belongs to the process in its name. Another live process (a
        // faseng or chima on another database may share the folder) keeps its own;
        // a dead one's is garbage whatever its database says. Our own pid may be a
        // predecessor's, reused: then our store decides.
        let ended = if owner != std::process::id() {
            !Path::new(&format!("/proc/{owner}")).exists()
        } else {
            match store.get_deployment(id).await? {
                None => true,
                Some(d) => d.state.is_terminal() || d.state == DeploymentState::Queued,
            }
        };
        if !ended {
            continue;
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => swept.removed += 1,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a job's leftovers")
            }
        }
    }
    Ok(())
}

/// The deployment id and the owning process in `job-<id>-<pid>` (a checkout) or
/// `job-<id>-<pid>.log-spill`.
fn job_id(name: &str) -> Option<(i64, u32)> {
    let rest = name.strip_prefix("job-")?;
    let (id, rest) = rest.split_once('-')?;
    let pid = rest.strip_suffix(".log-spill").unwrap_or(rest);
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((id.parse().ok()?, pid.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// A folder and a SQLite store in it, for a sweep.
    async fn scratch_store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = chima_store::open(&url).await.unwrap();
        (dir, store)
    }

    #[test]
    fn job_leftovers_are_recognised_and_nothing_else() {
        assert_eq!(job_id("job-12-345"), Some((12, 345)));
        assert_eq!(job_id("job-12-345.log-spill"), Some((12, 345)));
        assert_eq!(job_id("job-12-345-guard-0.json"), None);
        assert_eq!(job_id("job-x-345"), None);
        assert_eq!(job_id("jobs"), None);
        assert_eq!(job_id("job-12-"), None);
    }

    /// A folder shared with another live process on another database: its job
    /// folders stay, however this process's store sees their ids; a dead process's go.
    #[tokio::test]
    async fn only_dead_processes_job_folders_are_removed() {
        let (dir, store) = scratch_store().await;
        let work = dir.path().join("work");
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let live = work.join(format!("job-1-{}", other.id()));
        let dead = work.join("job-2-4194304"); // above Linux's pid_max
        let dead_spill = work.join("job-2-4194304.log-spill");
        std::fs::create_dir_all(&live).unwrap();
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::write(&dead_spill, "{}").unwrap();
        let mut swept = Swept::default();
        sweep_folder(&store, &work, &mut swept).await.unwrap();
        assert!(live.exists(), "a live process's checkout is left alone");
        assert!(!dead.exists() && !dead_spill.exists());
        assert_eq!(swept.removed, 2);
        let _ = other.kill();
        let _ = other.wait();
    }

    /// A dead faseng whose guard died between removing its status file and
    /// renaming the new version into place: the version under the temporary
    /// name is read, the guard it names is stopped, and the file goes.
    #[tokio::test]
    async fn a_status_left_under_its_temporary_name_is_acted_on() {
        let (dir, store) = scratch_store().await;
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let mut left = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let status = GuardStatus {
            guard_pid: left.id(),
            guard_start: guard::start_time(left.id()).unwrap(),
            parent_pid: 4_194_304, // above Linux's pid_max: dead
            parent_start: 1,
            pgid: Some(left.id()),
            ..GuardStatus::default()
        };
        let tmp = work.join("job-3-4194304-guard-0.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&status).unwrap()).unwrap();
        let mut swept = Swept::default();
        sweep_folder(&store, &work, &mut swept).await.unwrap();
        assert_eq!(swept.guards_killed, 1);
        assert!(!tmp.exists());
        assert!(
            left.wait().unwrap().signal().is_some(),
            "the guard was killed"
        );
    }

    #[test]
    fn this_process_is_alive_and_on_this_host() {
        let me = runner_here();
        assert!(guard::alive(me.pid, me.pid_start));
        assert!(!me.boot.is_empty());
    }
}
