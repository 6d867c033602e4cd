//! What the cases share: a handler that records the lines it gets, a config pointing at
//! the fake Slack, deadlines instead of sleeps.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chima_config::Secret;
use chima_slack::{Handler, Incoming, SlackApi, SlackConfig};
use chima_testkit::slack::{self as fake, FakeSlack};
use tokio::sync::{Semaphore, mpsc};

/// Generous: a loaded 2-core machine only makes the tests slower, never red.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub const SIGNING_SECRET: &str = "testkit-signing-secret-0123456789abcdef";

/// A config for the fake, with both tokens and a signing secret.
pub fn config(slack: &FakeSlack) -> SlackConfig {
    SlackConfig {
        api_url: slack.url.clone(),
        bot_token: Secret::new(fake::BOT_TOKEN),
        app_token: Some(Secret::new(fake::APP_TOKEN)),
        signing_secret: Some(Secret::new(SIGNING_SECRET)),
    }
}

pub fn api(slack: &FakeSlack) -> SlackApi {
    SlackApi::new(&config(slack)).expect("a client for the fake Slack")
}

/// Records every line; optionally holds each call until the test lets it go.
pub struct Recorder {
    tx: mpsc::UnboundedSender<Incoming>,
    gate: Option<Arc<Semaphore>>,
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, incoming: Incoming) {
        if let Some(gate) = &self.gate
            && let Ok(permit) = gate.acquire().await
        {
            permit.forget();
        }
        let _ = self.tx.send(incoming);
    }
}

/// The lines the handler got.
pub struct Lines {
    rx: mpsc::UnboundedReceiver<Incoming>,
}

impl Lines {
    /// Drops every line already received (after waiting a moment for stragglers).
    pub async fn drain(mut self) -> Lines {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        while self.rx.try_recv().is_ok() {}
        self
    }

    /// The next line, or a failed test after [`PATIENCE`].
    pub async fn next(&mut self, what: &str) -> Incoming {
        match tokio::time::timeout(PATIENCE, self.rx.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("the handler is gone while waiting for {what}"),
            Err(_) => panic!("timed out after {PATIENCE:?} waiting for {what}"),
        }
    }

    /// No line is waiting (after the caller made sure anything sent before had time to
    /// arrive, e.g. by receiving a later marker line).
    pub async fn assert_empty(&mut self, why: &str) {
        // Handler tasks spawned before the marker's have run by now, unless the machine
        // is very slow: give them a moment more.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(line) = self.rx.try_recv() {
            panic!("{why}: unexpected line {line:?}");
        }
    }
}

/// A handler and the lines it records.
pub fn recorder() -> (Arc<dyn Handler>, Lines) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(Recorder { tx, gate: None }), Lines { rx })
}

/// A handler that blocks in `handle` until the semaphore gets permits.
pub fn gated_recorder() -> (Arc<dyn Handler>, Lines, Arc<Semaphore>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    (
        Arc::new(Recorder {
            tx,
            gate: Some(Arc::clone(&gate)),
        }),
        Lines { rx },
        gate,
    )
}

/// Runs `check` until it returns `Some`, or fails the test after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
