//! Writing a job's output to the store as it comes: redacted, in order, in
//! batches (one transaction per batch, not per line), flushed at least every
//! 100 ms so that a live log page lags by no more than that.

use std::sync::Arc;
use std::time::Duration;

use chima_store::{NewLogLine, Store, Stream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::process::LineSender;
use crate::redact::Redactor;

/// Most lines written in one batch. Large, so that while one batch is being
/// stored the next can take everything a fast provider prints meanwhile: with
/// 2,000 the channel filled during each write and the provider then woke up
/// line by line (bench/run: 51,000 lines/s with 2,000, BENCHMARKS.md has the rest).
const BATCH_LINES: usize = 20_000;
/// Longest a line waits before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The writing end of a job's log. Clone [`LogSink::sender`] for each source;
/// [`LogSink::close`] waits until everything sent has been stored.
pub struct LogSink {
    tx: LineSender,
    task: JoinHandle<u64>,
}

impl LogSink {
    pub fn start(store: Arc<dyn Store>, deployment_id: i64, redactor: Redactor) -> Self {
        // Bounded: a provider that prints faster than the store takes lines
        // blocks on its pipe instead of filling memory.
        let (tx, rx) = mpsc::channel(BATCH_LINES);
        let task = tokio::spawn(write_batches(store, deployment_id, redactor, rx));
        LogSink { tx, task }
    }

    pub fn sender(&self) -> LineSender {
        self.tx.clone()
    }

    /// Writes one line from the engine itself (checkout progress, the result).
    pub async fn note(&self, line: impl Into<String>) {
        let _ = self.tx.send((Stream::Stderr, line.into())).await;
    }

    /// Waits until every line sent so far is stored; returns how many lines
    /// were written.
    pub async fn close(self) -> u64 {
        drop(self.tx);
        self.task.await.unwrap_or(0)
    }
}

async fn write_batches(
    store: Arc<dyn Store>,
    id: i64,
    redactor: Redactor,
    mut rx: mpsc::Receiver<(Stream, String)>,
) -> u64 {
    let mut written = 0u64;
    // One batch is being stored while the next is gathered: the provider keeps
    // printing during the round trip. Never more than one in flight, so the
    // batches (and their sequence numbers) stay in order.
    let mut storing: Option<JoinHandle<u64>> = None;
    loop {
        let first = rx.recv().await;
        let Some((stream, line)) = first else { break };
        // Grown as lines come: most batches are a few lines (a flush every 100 ms).
        let mut batch: Vec<NewLogLine> = Vec::new();
        batch.push(NewLogLine {
            stream,
            line: redactor.redact(&line),
            at: chrono::Utc::now(),
        });
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH_LINES {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((stream, line))) => batch.push(NewLogLine {
                    stream,
                    line: redactor.redact(&line),
                    at: chrono::Utc::now(),
                }),
                Ok(None) | Err(_) => break,
            }
        }
        if let Some(previous) = storing.take() {
            written += previous.await.unwrap_or(0);
        }
        let store = store.clone();
        storing = Some(tokio::spawn(
            async move { flush(&store, id, &mut batch).await },
        ));
    }
    if let Some(previous) = storing {
        written += previous.await.unwrap_or(0);
    }
    written
}

/// Stores a batch, retrying a few times: a log line lost to a passing
/// database hiccup is a line nobody can read when the deploy fails.
async fn flush(store: &Arc<dyn Store>, id: i64, batch: &mut Vec<NewLogLine>) -> u64 {
    if batch.is_empty() {
        return 0;
    }
    let n = batch.len() as u64;
    for attempt in 1..=5u32 {
        match store.append_logs(id, batch).await {
            Ok(_) => {
                batch.clear();
                return n;
            }
            Err(e) => {
                tracing::warn!(deployment = id, attempt, error = %e, "storing log lines failed");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
        }
    }
    tracing::error!(
        deployment = id,
        lines = n,
        "log lines dropped after 5 attempts"
    );
    batch.clear();
    0
}
