//! The Heroku provider's runner against the fake Platform API of
//! `chima-testkit`, over real HTTP on 127.0.0.1: the real client, the real
//! retries, the real streaming.
//!
//! Timing assertions are lower bounds only (a sleep never ends early) or very
//! generous upper bounds, so that a loaded 2-core machine does not fail them.
//!
//! This file holds the fixtures and runners the tests share; the tests are in
//! `runs`, `errors`, `source` and `stream_faults`.

mod errors;
mod runs;
mod source;
mod stream_faults;

use std::time::Duration;

use chima_config::Secret;
use chima_engine::process::Exit;
use chima_engine::providers::heroku::{self, HerokuApi, HerokuPlan, Timing};
use chima_store::Stream;
use chima_testkit::heroku::FakeHeroku;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

const APP: &str = "example-app-staging";
const SHA: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";

/// Far enough that no test reaches it by accident.
const FAR: Duration = Duration::from_secs(120);

fn plan() -> HerokuPlan {
    HerokuPlan {
        app_name: APP.to_string(),
        source_url: format!("https://api.github.com/repos/octo/example/tarball/{SHA}"),
        version: SHA.to_string(),
    }
}

fn api(fake: &FakeHeroku) -> HerokuApi {
    HerokuApi {
        base_url: format!("{}/", fake.url),
        api_key: Secret::new(fake.api_key()),
    }
}

/// Short waits, so that retries and polls do not make the suite slow.
fn fast() -> Timing {
    Timing {
        poll: Duration::from_millis(100),
        poll_cap: Duration::from_secs(1),
        poll_while_streaming: Duration::from_millis(500),
        retry_base: Duration::from_millis(50),
        max_retry_wait: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        stream_drain: Duration::from_millis(500),
    }
}

/// What a run produced: its result and every line, in order.
struct Ran {
    result: Result<Exit, String>,
    lines: Vec<(Stream, String)>,
}

impl Ran {
    fn stdout(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter(|(s, _)| *s == Stream::Stdout)
            .map(|(_, l)| l.clone())
            .collect()
    }

    fn notes(&self) -> String {
        self.lines
            .iter()
            .filter(|(s, _)| *s == Stream::Stderr)
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn run(api: &HerokuApi, timing: &Timing, deadline: Instant) -> Ran {
    let (_cancel_tx, cancel) = watch::channel(None);
    run_cancellable(api, timing, deadline, cancel).await
}

async fn run_cancellable(
    api: &HerokuApi,
    timing: &Timing,
    deadline: Instant,
    cancel: watch::Receiver<Option<String>>,
) -> Ran {
    let (tx, mut rx) = mpsc::channel(10_000);
    let collect = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(line) = rx.recv().await {
            all.push(line);
        }
        all
    });
    let result = heroku::run_with(&plan(), api, timing, tx, cancel, deadline).await;
    let lines = collect.await.expect("collector");
    Ran { result, lines }
}
