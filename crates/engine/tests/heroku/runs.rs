//! Builds as they run: output streamed in order and while running, failures,
//! over-long lines, a stream that stays open, the deadline and cancels.

use std::time::Duration;

use chima_engine::process::{Exit, MAX_LINE_BYTES};
use chima_engine::providers::heroku::{self};
use chima_store::Stream;
use chima_testkit::heroku::{ACCEPT, Behaviour, FakeHeroku};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::*;

#[tokio::test]
async fn a_build_that_succeeds_streams_its_output_in_order_and_exits_0() {
    let fake = FakeHeroku::start(Behaviour::succeeds()).await;
    let api = api(&fake);
    let (tx, mut rx) = mpsc::channel(1000);
    let (_cancel_tx, cancel) = watch::channel(None);
    // The public entry point, with faseng's own timing.
    let result = heroku::run(&plan(), &api, tx, cancel, Instant::now() + FAR).await;
    let mut stdout = Vec::new();
    let mut notes = Vec::new();
    while let Some((stream, line)) = rx.recv().await {
        match stream {
            Stream::Stdout => stdout.push(line),
            Stream::Stderr => notes.push(line),
        }
    }
    assert_eq!(result, Ok(Exit::Exited(Some(0))), "notes: {notes:?}");
    assert_eq!(stdout, Behaviour::default_output());
    assert!(notes.iter().any(|n| n.contains("succeeded")), "{notes:?}");

    let creates = fake.requests_to("POST", "/apps/");
    assert_eq!(creates.len(), 1);
    let create = &creates[0];
    assert_eq!(create.path, format!("/apps/{APP}/builds"));
    assert_eq!(create.header("accept"), Some(ACCEPT));
    assert_eq!(
        create.header("authorization"),
        Some(format!("Bearer {}", fake.api_key()).as_str())
    );
    assert_eq!(create.header("content-type"), Some("application/json"));
    assert_eq!(
        create.json,
        Some(json!({"source_blob": {
            "url": format!("https://api.github.com/repos/octo/example/tarball/{SHA}"),
            "version": SHA,
        }}))
    );

    let streams = fake.requests_to("GET", "/streams/");
    assert_eq!(streams.len(), 1);
    assert_eq!(
        streams[0].header("authorization"),
        None,
        "the API key must not go to the output stream"
    );

    let polls = fake.requests_to("GET", &format!("/apps/{APP}/builds/"));
    assert!(
        polls.len() >= 3,
        "2 pending polls, then the outcome: {}",
        polls.len()
    );
    assert!(polls.iter().all(|p| p.header("accept") == Some(ACCEPT)));
    assert_eq!(fake.builds_created(), 1);
}

#[tokio::test]
async fn lines_arrive_while_the_build_is_still_running() {
    let fake = FakeHeroku::start(Behaviour::never_finishes()).await;
    let (tx, mut rx) = mpsc::channel(1000);
    let (cancel_tx, cancel) = watch::channel(None);
    let api = api(&fake);
    let timing = fast();
    let runner = tokio::spawn(async move {
        heroku::run_with(&plan(), &api, &timing, tx, cancel, Instant::now() + FAR).await
    });
    let mut stdout = Vec::new();
    while stdout.len() < Behaviour::default_output().len() {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some((Stream::Stdout, line))) => stdout.push(line),
            Ok(Some((Stream::Stderr, _))) => {}
            Ok(None) | Err(_) => panic!("the output stopped early: {stdout:?}"),
        }
    }
    assert_eq!(stdout, Behaviour::default_output());
    assert!(!runner.is_finished(), "the build is still pending");
    cancel_tx.send_replace(Some("alice".to_string()));
    let result = tokio::time::timeout(Duration::from_secs(60), runner)
        .await
        .expect("stops on cancel")
        .expect("runner task");
    assert_eq!(result, Ok(Exit::Cancelled("alice".to_string())));
}

#[tokio::test]
async fn a_build_that_fails_exits_1_with_its_output_kept() {
    let behaviour = Behaviour::fails();
    let fake = FakeHeroku::start(behaviour.clone()).await;
    let ran = run(&api(&fake), &fast(), Instant::now() + FAR).await;
    assert_eq!(ran.result, Ok(Exit::Exited(Some(1))), "{}", ran.notes());
    assert_eq!(ran.stdout(), behaviour.output);
    assert!(ran.notes().contains("failed"), "{}", ran.notes());
}

#[tokio::test]
async fn the_deadline_while_polling_is_a_timeout_that_says_heroku_goes_on() {
    let fake = FakeHeroku::start(Behaviour::never_finishes()).await;
    let started = Instant::now();
    let ran = run(
        &api(&fake),
        &fast(),
        Instant::now() + Duration::from_secs(2),
    )
    .await;
    assert_eq!(ran.result, Ok(Exit::TimedOut), "{}", ran.notes());
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_secs(60));
    let notes = ran.notes();
    assert!(notes.contains("deadline passed"), "{notes}");
    assert!(notes.contains("cannot be stopped"), "{notes}");
    assert!(
        !fake
            .requests_to("GET", &format!("/apps/{APP}/builds/"))
            .is_empty(),
        "it was polling when the deadline came"
    );
}

#[tokio::test]
async fn a_cancel_stops_watching_and_says_so() {
    let fake = FakeHeroku::start(Behaviour::never_finishes()).await;
    let (cancel_tx, cancel) = watch::channel(None);
    let api = api(&fake);
    let timing = fast();
    let cancel_once_created = async {
        let waited = Instant::now();
        while fake.builds_created() == 0 && waited.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cancel_tx.send_replace(Some("bob".to_string()));
    };
    let (ran, ()) = tokio::join!(
        run_cancellable(&api, &timing, Instant::now() + FAR, cancel),
        cancel_once_created
    );
    assert_eq!(ran.result, Ok(Exit::Cancelled("bob".to_string())));
    let notes = ran.notes();
    assert!(notes.contains("cancelled by bob"), "{notes}");
    assert!(notes.contains("heroku builds:info"), "{notes}");
}

#[tokio::test]
async fn a_cancel_before_the_start_creates_nothing() {
    let fake = FakeHeroku::start(Behaviour::succeeds()).await;
    let (_tx, cancel) = watch::channel(Some("carol".to_string()));
    let ran = run_cancellable(&api(&fake), &fast(), Instant::now() + FAR, cancel).await;
    assert_eq!(ran.result, Ok(Exit::Cancelled("carol".to_string())));
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_stream_that_stays_open_does_not_hold_a_finished_build() {
    let fake = FakeHeroku::start(Behaviour {
        stream_stays_open: true,
        // Enough polls that all the output is in long before the status says
        // the build is over, even on a loaded machine.
        pending_polls: 6,
        ..Behaviour::succeeds()
    })
    .await;
    let ran = run(&api(&fake), &fast(), Instant::now() + FAR).await;
    assert_eq!(ran.result, Ok(Exit::Exited(Some(0))), "{}", ran.notes());
    assert_eq!(ran.stdout(), Behaviour::default_output());
    assert!(ran.notes().contains("still open"), "{}", ran.notes());
}

#[tokio::test]
async fn over_long_output_lines_are_cut() {
    let fake = FakeHeroku::start(Behaviour {
        output: vec![
            "before".to_string(),
            "y".repeat(MAX_LINE_BYTES + 500),
            "after".to_string(),
        ],
        chunks: 7,
        ..Behaviour::succeeds()
    })
    .await;
    let ran = run(&api(&fake), &fast(), Instant::now() + FAR).await;
    assert_eq!(ran.result, Ok(Exit::Exited(Some(0))), "{}", ran.notes());
    let stdout = ran.stdout();
    assert_eq!(
        stdout.len(),
        3,
        "{:?}",
        stdout.iter().map(String::len).collect::<Vec<_>>()
    );
    assert_eq!(stdout[0], "before");
    assert!(stdout[1].starts_with(&"y".repeat(MAX_LINE_BYTES)));
    assert!(
        stdout[1].ends_with("[line cut: 500 more bytes]"),
        "{}",
        &stdout[1][MAX_LINE_BYTES..]
    );
    assert_eq!(stdout[2], "after");
}
