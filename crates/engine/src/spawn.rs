//! Starting a job's processes (git, the guard, a provider) without copying faseng.
//!
//! Why this exists: the standard library starts a child with `posix_spawn` (glibc
//! clones with `CLONE_VM | CLONE_VFORK`: the child borrows the parent's memory until
//! it execs) unless the command needs code run between fork and exec (`pre_exec`, a
//! uid or gid) or names its program by a bare name while setting a `PATH` of its own.
//! Then it falls back to `fork()`, which copies faseng's page tables on the tokio
//! thread that asked (milliseconds for a process with tens of MB mapped, more on a
//! virtual machine) and makes faseng take copy-on-write faults until the child execs.
//! Every git and provider start did that, because the lower CPU and I/O priority was
//! set in a `pre_exec` hook: the web tier paid for the workers' spawns (bench/run's
//! "ack latency p99 at 500/s (4 workers deploying)").
//!
//! So the priority comes from the thread that spawns instead: one thread per
//! [`Priority`], whose niceness and I/O class are lowered once when it starts.
//! Linux keeps both per thread and copies them to a child the thread creates, so
//! every child starts lowered with no code between fork and exec. The program is
//! resolved against the command's own `PATH` here, so that the standard library
//! need not fall back for that reason either. A command that sets a uid and gid
//! (`FASENG_RUN_AS`) still forks: only root may switch users, and that needs the hook.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, mpsc};

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::priority::Priority;

/// One spawn asked of a spawner thread.
struct Job {
    cmd: Command,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// The spawner threads, one per priority asked for (in practice one).
fn spawners() -> &'static Mutex<HashMap<Priority, mpsc::Sender<Box<Job>>>> {
    static SPAWNERS: OnceLock<Mutex<HashMap<Priority, mpsc::Sender<Box<Job>>>>> = OnceLock::new();
    SPAWNERS.get_or_init(Mutex::default)
}

/// Starts `cmd` at `priority`: its children (and theirs) run at that niceness and
/// I/O class. Must be called within a tokio runtime (the child's pipes are
/// registered with it).
pub(crate) async fn spawn(mut cmd: Command, priority: Priority) -> io::Result<Child> {
    if priority == Priority::UNCHANGED {
        return cmd.spawn();
    }
    let (reply, answer) = oneshot::channel();
    let job = Box::new(Job {
        cmd,
        runtime: tokio::runtime::Handle::current(),
        reply,
    });
    match send(priority, job) {
        Ok(()) => answer.await.unwrap_or_else(|_| {
            Err(io::Error::other(
                "the thread that starts job processes stopped",
            ))
        }),
        // No spawner thread (it could not be started): the hook between fork and
        // exec sets the priority instead, as before this module.
        Err(job) => {
            let mut cmd = job.cmd;
            priority.set_in_std(cmd.as_std_mut());
            cmd.spawn()
        }
    }
}

/// Hands `job` to `priority`'s spawner thread, starting it if needed; the job
/// back if no thread can take it.
fn send(priority: Priority, job: Box<Job>) -> Result<(), Box<Job>> {
    let Ok(mut spawners) = spawners().lock() else {
        return Err(job);
    };
    let job = match spawners.get(&priority) {
        Some(tx) => match tx.send(job) {
            Ok(()) => return Ok(()),
            // The thread ended (it cannot, short of a panic): start another.
            Err(mpsc::SendError(job)) => job,
        },
        None => job,
    };
    let (tx, rx) = mpsc::channel::<Box<Job>>();
    let started = std::thread::Builder::new()
        .name(format!("faseng-spawn-nice{}", priority.nice))
        .spawn(move || {
            // This thread only: Linux's niceness and I/O priority are per thread.
            priority.apply_to_self();
            while let Ok(job) = rx.recv() {
                let Job {
                    mut cmd,
                    runtime,
                    reply,
                } = *job;
                let _entered = runtime.enter();
                let _ = reply.send(cmd.spawn());
            }
        });
    if started.is_err() {
        return Err(job);
    }
    match tx.send(job) {
        Ok(()) => {
            spawners.insert(priority, tx);
            Ok(())
        }
        Err(mpsc::SendError(job)) => Err(job),
    }
}

/// The program `name` would run with `path` as its `PATH` (and `dir` as its
/// working directory, for relative entries): `name` itself when it holds a `/`
/// or is found nowhere (the spawn then reports it as not found).
///
/// A command given a full path is started with `posix_spawn`; given a bare name
/// and a `PATH` of its own, the standard library forks (see the module's text).
pub(crate) fn resolve(name: &OsStr, path: Option<&OsStr>, dir: Option<&Path>) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let bare = PathBuf::from(name);
    if name.is_empty() || name.as_bytes().contains(&b'/') {
        return bare;
    }
    let Some(path) = path else {
        return bare;
    };
    for entry in std::env::split_paths(path) {
        // An empty entry means the working directory, as a relative one is from it.
        let entry = if entry.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            entry
        };
        let candidate = match dir {
            Some(dir) if entry.is_relative() => dir.join(&entry).join(name),
            _ => entry.join(name),
        };
        if is_executable(&candidate) {
            return candidate;
        }
    }
    bare
}

/// A file exec would run: a regular file with an execute bit.
pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The value of `PATH` among `vars`.
pub(crate) fn path_in<'a, K, V>(vars: impl IntoIterator<Item = &'a (K, V)>) -> Option<OsString>
where
    K: AsRef<OsStr> + 'a,
    V: AsRef<OsStr> + 'a,
{
    vars.into_iter()
        .filter(|(k, _)| k.as_ref() == "PATH")
        .last()
        .map(|(_, v)| v.as_ref().to_os_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::priority::IoClass;

    fn own_niceness() -> String {
        let out = std::process::Command::new("nice").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[tokio::test]
    async fn children_start_at_the_priority_and_the_caller_keeps_its_own() {
        let before = own_niceness();
        let priority = Priority {
            nice: 13,
            io: IoClass::Idle,
        };
        for _ in 0..2 {
            let mut cmd = Command::new(resolve(
                "sh".as_ref(),
                std::env::var_os("PATH").as_deref(),
                None,
            ));
            cmd.args(["-c", "echo \"$(nice) $(ionice -p $$)\""])
                .stdout(std::process::Stdio::piped());
            let out = spawn(cmd, priority)
                .await
                .unwrap()
                .wait_with_output()
                .await
                .unwrap();
            let expected = format!("{} idle", before.parse::<i32>().unwrap().max(13));
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
        }
        // The test's own thread (and so the web tier's, in faseng) is not lowered.
        assert_eq!(own_niceness(), before);
    }

    #[tokio::test]
    async fn a_missing_program_is_reported_as_not_found() {
        let cmd = Command::new(resolve(
            "no-such-program-here".as_ref(),
            Some("/nonexistent:/usr/bin".as_ref()),
            None,
        ));
        let err = spawn(cmd, Priority::default()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn programs_are_found_as_exec_would_find_them() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        let not_exec = bin.join("plain");
        std::fs::write(&not_exec, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = OsString::from(format!("/nonexistent:{}", bin.display()));
        assert_eq!(resolve("tool".as_ref(), Some(&path), None), tool);
        // Relative entries are from the command's working directory.
        assert_eq!(
            resolve("tool".as_ref(), Some("bin".as_ref()), Some(dir.path())),
            dir.path().join("bin").join("tool")
        );
        // Not executable, not found, or already a path: left as given.
        assert_eq!(
            resolve("plain".as_ref(), Some(&path), None),
            PathBuf::from("plain")
        );
        assert_eq!(
            resolve("nothing".as_ref(), Some(&path), None),
            PathBuf::from("nothing")
        );
        assert_eq!(
            resolve("script/deploy".as_ref(), Some(&path), None),
            PathBuf::from("script/deploy")
        );
        assert_eq!(
            path_in(&[("HOME", "/h"), ("PATH", "/a:/b")]),
            Some(OsString::from("/a:/b"))
        );
    }
}
