//! The workers' own threads, one step below the web tier.
//!
//! Three priorities share a busy machine (ARCHITECTURE.md, "Priorities"): the web
//! tier (webhook acknowledgements, chat answers, log pages) at faseng's own
//! niceness; the workers' control loop (claims, lease renewals, a job's log and
//! process handling, and the guards it starts, which inherit the thread's niceness)
//! at `FASENG_WORKER_NICE`; the providers and git at `FASENG_PROVIDER_NICE`, lowest.
//! With 4 workers deploying on 2 cores, the workers' own CPU per deployment (a few
//! milliseconds of faseng and of the guard's start) is as much as the web tier's for
//! dozens of webhooks; at the same niceness every acknowledgement queued behind it
//! (bench/run's "ack latency p99 at 500/s (4 workers deploying)", BENCHMARKS.md).
//!
//! Linux keeps the niceness per thread, so the workers get a tokio runtime of their
//! own whose threads lower themselves when they start. Below the web tier is not
//! below the providers: a renewal still gets the CPU before any deploy does, and a
//! niceness of 5 against 0 still has a third of a core on a machine the web tier
//! saturates, which is plenty for work that takes milliseconds a second.

use tokio::runtime::{Handle, Runtime};

/// The runtime the workers run on: their own at a lower niceness, or none (the
/// caller's).
pub(crate) struct WorkerRuntime {
    runtime: Option<Runtime>,
}

impl WorkerRuntime {
    /// A runtime whose threads (its workers and its blocking pool) run at `nice`;
    /// none when `nice` is 0 or the threads cannot be made (the workers then run on
    /// the caller's runtime at its priority, as before this module, and a warning
    /// says so).
    pub(crate) fn new(nice: u8) -> WorkerRuntime {
        if nice == 0 {
            return WorkerRuntime { runtime: None };
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let built = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("faseng-workers")
            .on_thread_start(move || lower_this_thread(nice))
            .enable_all()
            .build();
        match built {
            Ok(runtime) => WorkerRuntime {
                runtime: Some(runtime),
            },
            Err(e) => {
                tracing::warn!(error = %e, nice, "cannot start the workers' own threads; they run at faseng's priority");
                WorkerRuntime { runtime: None }
            }
        }
    }

    /// Where the workers' tasks go. Must be called within a tokio runtime.
    pub(crate) fn handle(&self) -> Handle {
        match &self.runtime {
            Some(r) => r.handle().clone(),
            None => Handle::current(),
        }
    }
}

impl Drop for WorkerRuntime {
    /// Kept, not shut down: the store's pool is shared with the web tier, and a
    /// connection a worker opened is registered with this runtime's I/O driver; shut
    /// down, it would fail every query the web tier or the status sender still sends
    /// on it (faseng drops its engine before its senders finish). Its threads are idle
    /// once the workers have ended, and the engine lives as long as the process.
    fn drop(&mut self) {
        if let Some(r) = self.runtime.take() {
            std::mem::forget(r);
        }
    }
}

/// Lowers the calling thread to `nice` with the providers' own mechanism (only ever
/// lowered; a failure leaves the thread at faseng's priority, as the workers ran before).
fn lower_this_thread(nice: u8) {
    crate::priority::Priority {
        nice,
        io: crate::priority::IoClass::Unchanged,
    }
    .apply_to_self();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn niceness_here() -> i32 {
        // SAFETY: getpriority takes plain integers and touches no memory.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_workers_run_lowered_and_the_caller_keeps_its_priority() {
        let own = niceness_here();
        let runtime = WorkerRuntime::new(7);
        let on = runtime.handle();
        let theirs = on.spawn(async { niceness_here() }).await.unwrap();
        assert_eq!(theirs, own.max(7), "a worker thread's niceness");
        let blocking = on
            .spawn(async { tokio::task::spawn_blocking(niceness_here).await.unwrap() })
            .await
            .unwrap();
        assert_eq!(blocking, own.max(7), "the blocking pool's niceness");
        assert_eq!(niceness_here(), own, "the caller's thread is not lowered");
        // Dropped inside the caller's runtime without a panic, and what it started
        // keeps running (a pooled connection may be registered with it).
        let on_after = on.clone();
        drop(runtime);
        assert_eq!(on_after.spawn(async { 1 }).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn niceness_zero_runs_on_the_callers_runtime() {
        let runtime = WorkerRuntime::new(0);
        assert!(runtime.runtime.is_none());
        let own = niceness_here();
        assert_eq!(
            runtime
                .handle()
                .spawn(async { niceness_here() })
                .await
                .unwrap(),
            own
        );
    }
}
