//! A job's own file system work, below the control plane.
//!
//! Every deployment makes a folder, a private `HOME` for git and a repository's
//! `.git` (a dozen directories and files), and removes them all when it ends. On
//! ext4 each of those is an inode allocated or freed under the file system's
//! journal, and allocating one right after many were freed is slow: the kernel
//! skips recently freed inodes (`recently_deleted`), reading inode table blocks as
//! it goes. `perf record -a` over bench/run's paced phase with 4 workers deploying
//! found `mkdir`, `openat` and `unlink` at 19% of the CPU of faseng's two tokio
//! threads, the same threads that answer webhooks (BENCHMARKS.md, item 17): a
//! webhook waited while its thread made a job's directories.
//!
//! So that work runs here: on a thread of its own for each call, at the priority
//! the job's processes get (`FASENG_PROVIDER_NICE`, `FASENG_PROVIDER_IO`), as the
//! git that fills the tree does. A thread per call rather than a pool: the calls
//! are a few per deployment and each costs far more than starting a thread, and no
//! job's removal of a large tree holds up another job's checkout.

use std::io;

use tokio::sync::oneshot;

use crate::priority::Priority;

/// Runs `work` on a thread at `priority` and returns what it returns. When no
/// thread can be started, it runs on tokio's blocking pool at faseng's own
/// priority, as before this module.
pub(crate) async fn below<T, F>(priority: Priority, work: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    // The closure comes back when the thread cannot start, to run elsewhere.
    let (hand, take) = std::sync::mpsc::sync_channel::<F>(1);
    let started = std::thread::Builder::new()
        .name("faseng-jobfs".into())
        .spawn(move || {
            // This thread only: Linux keeps niceness and I/O priority per thread.
            priority.apply_to_self();
            if let Ok(work) = take.recv() {
                let _ = reply.send(work());
            }
        });
    if started.is_err() {
        return tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| io::Error::other(format!("the file system task failed: {e}")));
    }
    hand.send(work)
        .map_err(|_| io::Error::other("the job's file system thread ended at once"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the job's file system thread stopped (a panic)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::priority::IoClass;

    /// The niceness of the calling thread (`/proc/thread-self/stat`, field 19).
    fn thread_niceness() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 1..];
        after_name
            .split_whitespace()
            .nth(16)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn work_runs_at_the_priority_and_the_caller_keeps_its_own() {
        let before = thread_niceness();
        let priority = Priority {
            nice: 12,
            io: IoClass::BestEffort(7),
        };
        let inside = below(priority, thread_niceness).await.unwrap();
        assert_eq!(inside, before.max(12), "the work ran lowered");
        assert_eq!(
            thread_niceness(),
            before,
            "the caller's thread is unchanged"
        );

        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("a/b");
        let path = made.clone();
        below(priority, move || std::fs::create_dir_all(&path))
            .await
            .unwrap()
            .unwrap();
        assert!(made.is_dir(), "the work's effect is there when it returns");
    }

    #[tokio::test]
    async fn a_panic_in_the_work_is_an_error_not_a_hang() {
        let result = below(Priority::default(), || -> u8 { panic!("boom") }).await;
        let err = result.unwrap_err();
        assert!(err.to_string().contains("stopped"), "{err}");
    }
}
