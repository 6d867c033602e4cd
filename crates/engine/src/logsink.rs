//! Writing a job's output to the store as it comes: redacted, in order, in
//! batches (one transaction per batch, not per line), flushed at least every
//! 100 ms so that a live log page lags by no more than that.
//!
//! When the database does not answer, nothing is dropped: lines wait in memory
//! (up to 16 MiB), then the oldest spill to a file beside the job's checkout, and
//! all are written in order once the database answers again (the fencing issue:
//! an outage shorter than the lease loses no line).

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
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
    /// `spill`: the file lines go to when the database is away and memory holds too
    /// many (see [`Backlog`]).
    pub fn start(
        store: Arc<dyn Store>,
        deployment_id: i64,
        redactor: Redactor,
        spill: Option<PathBuf>,
    ) -> Self {
        // Bounded: a provider that prints faster than the store takes lines
        // blocks on its pipe instead of filling memory.
        let (tx, rx) = mpsc::channel(BATCH_LINES);
        let task = tokio::spawn(write_batches(store, deployment_id, redactor, rx, spill));
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
    spill: Option<PathBuf>,
) -> u64 {
    let mut written = 0u64;
    // One batch is being stored while the next is gathered: the provider keeps
    // printing during the round trip. Never more than one in flight, so the
    // batches (and their sequence numbers) stay in order. The backlog travels
    // with the task that stores.
    let mut backlog = Some(Backlog::new(spill));
    let mut storing: Option<JoinHandle<(u64, Backlog)>> = None;
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
            let (n, b) = joined(previous, id).await;
            written += n;
            backlog = Some(b);
        }
        let store = store.clone();
        let mut b = backlog.take().unwrap_or_else(|| Backlog::new(None));
        storing = Some(tokio::spawn(async move {
            b.push(id, batch);
            let n = b.flush(&store, id).await;
            (n, b)
        }));
    }
    if let Some(previous) = storing {
        let (n, b) = joined(previous, id).await;
        written += n;
        backlog = Some(b);
    }
    // The job is over; what an outage held back is written once the database
    // answers again, or given up (with an error naming how many) after a while.
    if let Some(mut b) = backlog {
        let give_up = tokio::time::Instant::now() + CLOSE_PATIENCE;
        let mut wait = Duration::from_millis(200);
        while !b.is_empty() {
            written += b.flush(&store, id).await;
            if b.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= give_up {
                tracing::error!(
                    deployment = id,
                    lines = b.len(),
                    "log lines not stored: the database did not answer in time"
                );
                break;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        b.discard();
    }
    written
}

/// How long a closed job's held-back lines wait for the database.
const CLOSE_PATIENCE: Duration = Duration::from_secs(10 * 60);

/// Lines held in memory while the database cannot take them; beyond this many
/// bytes the oldest go to the spill file.
const MEMORY_BYTES: usize = 16 * 1024 * 1024;

async fn joined(task: JoinHandle<(u64, Backlog)>, id: i64) -> (u64, Backlog) {
    match task.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(deployment = id, error = %e, "storing log lines panicked; lines lost");
            (0, Backlog::new(None))
        }
    }
}

/// Where a job's held-back lines spill: next to its checkout in faseng's private
/// work folder (the checkout itself may belong to the provider's user).
pub(crate) fn spill_path(job_dir: &Path) -> Option<PathBuf> {
    let name = job_dir.file_name()?.to_string_lossy().into_owned();
    Some(job_dir.with_file_name(format!("{name}.log-spill")))
}

/// Lines not yet stored, oldest first: those in the spill file come before those
/// in memory.
struct Backlog {
    memory: VecDeque<NewLogLine>,
    memory_bytes: usize,
    spill: Option<PathBuf>,
    /// Lines in the spill file not yet stored, and where the first of them starts.
    spilled: usize,
    spill_read: u64,
    /// Whether the last attempt failed (warn once per outage).
    failing: bool,
    /// Bytes held in memory before the oldest spill ([`MEMORY_BYTES`]).
    limit: usize,
}

impl Backlog {
    fn new(spill: Option<PathBuf>) -> Backlog {
        Backlog {
            memory: VecDeque::new(),
            memory_bytes: 0,
            spill,
            spilled: 0,
            spill_read: 0,
            failing: false,
            limit: MEMORY_BYTES,
        }
    }

    fn len(&self) -> usize {
        self.memory.len() + self.spilled
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds lines behind those held; moves the oldest in memory to the spill
    /// file when memory holds too much.
    fn push(&mut self, id: i64, lines: Vec<NewLogLine>) {
        for l in lines {
            self.memory_bytes += l.line.len() + 64;
            self.memory.push_back(l);
        }
        if self.memory_bytes <= self.limit {
            return;
        }
        let Some(path) = self.spill.clone() else {
            // Nowhere to spill (no work folder): keep them in memory.
            return;
        };
        let mut out = Vec::new();
        let mut moved = 0usize;
        while self.memory_bytes > self.limit / 2 {
            let Some(l) = self.memory.pop_front() else {
                break;
            };
            self.memory_bytes = self.memory_bytes.saturating_sub(l.line.len() + 64);
            if serde_json::to_writer(&mut out, &l).is_ok() {
                out.push(b'\n');
                moved += 1;
            }
        }
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(&out));
        match appended {
            Ok(()) => {
                self.spilled += moved;
                tracing::warn!(deployment = id, lines = moved, path = %path.display(), "log lines spilled to disk while the database is away");
            }
            Err(e) => {
                tracing::error!(deployment = id, lines = moved, error = %e, "cannot spill log lines; they are lost");
            }
        }
    }

    /// Writes what it holds, oldest first, in batches; stops at the first failure
    /// (the lines stay). Returns how many were stored.
    async fn flush(&mut self, store: &Arc<dyn Store>, id: i64) -> u64 {
        let mut n = 0u64;
        while self.spilled > 0 {
            let Some((chunk, next)) = self.read_spill(id) else {
                break;
            };
            if chunk.is_empty() {
                self.spilled = 0;
                break;
            }
            if !self.store(store, id, &chunk).await {
                return n;
            }
            n += chunk.len() as u64;
            self.spilled = self.spilled.saturating_sub(chunk.len());
            self.spill_read = next;
        }
        if self.spilled == 0 && self.spill_read > 0 {
            self.discard();
        }
        while !self.memory.is_empty() {
            let take = self.memory.len().min(BATCH_LINES);
            let chunk: Vec<NewLogLine> = self.memory.iter().take(take).cloned().collect();
            if !self.store(store, id, &chunk).await {
                return n;
            }
            for l in self.memory.drain(..take) {
                self.memory_bytes = self.memory_bytes.saturating_sub(l.line.len() + 64);
            }
            n += take as u64;
        }
        n
    }

    async fn store(&mut self, store: &Arc<dyn Store>, id: i64, lines: &[NewLogLine]) -> bool {
        match store.append_logs(id, lines).await {
            Ok(_) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!(deployment = id, "storing log lines works again");
                }
                true
            }
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(deployment = id, error = %e, held = self.len(), "storing log lines failed; holding them until the database answers");
                }
                false
            }
        }
    }

    /// Up to a batch of spilled lines from where the stored ones end, and the
    /// offset after them.
    fn read_spill(&self, id: i64) -> Option<(Vec<NewLogLine>, u64)> {
        use std::io::{BufRead, Seek, SeekFrom};
        let path = self.spill.as_ref()?;
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(deployment = id, error = %e, "cannot read spilled log lines; they are lost");
                return Some((Vec::new(), 0));
            }
        };
        f.seek(SeekFrom::Start(self.spill_read)).ok()?;
        let mut reader = std::io::BufReader::new(f);
        let mut out = Vec::new();
        let mut pos = self.spill_read;
        let mut buf = String::new();
        while out.len() < BATCH_LINES {
            buf.clear();
            match reader.read_line(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    pos += k as u64;
                    if let Ok(l) = serde_json::from_str::<NewLogLine>(buf.trim_end()) {
                        out.push(l);
                    }
                }
            }
        }
        Some((out, pos))
    }

    /// Removes the spill file (everything in it is stored, or given up).
    fn discard(&mut self) {
        if let Some(path) = &self.spill
            && (self.spill_read > 0 || self.spilled > 0)
        {
            let _ = std::fs::remove_file(path);
        }
        self.spilled = 0;
        self.spill_read = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: usize) -> NewLogLine {
        NewLogLine {
            stream: Stream::Stdout,
            line: format!("line {i} {}", "x".repeat(100)),
            at: chrono::Utc::now(),
        }
    }

    #[test]
    fn held_lines_spill_oldest_first_and_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job-1-1.log-spill");
        let mut b = Backlog::new(Some(path.clone()));
        b.limit = 2_000;
        for chunk in 0..10 {
            b.push(1, (chunk * 10..chunk * 10 + 10).map(line).collect());
        }
        assert_eq!(b.len(), 100, "nothing dropped");
        assert!(b.spilled > 0 && path.exists(), "the oldest went to disk");
        assert!(b.memory_bytes <= b.limit);
        // Spilled lines first, then memory: the order they came in.
        let mut seen = Vec::new();
        let mut at = b.spill_read;
        loop {
            let reader = Backlog {
                spill_read: at,
                ..Backlog::new(Some(path.clone()))
            };
            let (chunk, next) = reader.read_spill(1).unwrap();
            if chunk.is_empty() {
                break;
            }
            seen.extend(chunk.into_iter().map(|l| l.line));
            at = next;
        }
        assert_eq!(seen.len(), b.spilled);
        seen.extend(b.memory.iter().map(|l| l.line.clone()));
        let expected: Vec<String> = (0..100).map(|i| line(i).line).collect();
        assert_eq!(seen, expected);
        b.discard();
        assert!(
            !path.exists(),
            "the spill file goes once given up or stored"
        );
    }

    #[test]
    fn the_spill_file_sits_beside_the_checkout_not_in_it() {
        let p = spill_path(Path::new("/w/job-7-99")).unwrap();
        assert_eq!(p, Path::new("/w/job-7-99.log-spill"));
    }
}
