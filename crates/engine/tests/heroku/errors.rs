//! The API's refusals and failures: keys, missing apps, server errors and rate
//! limits retried or not, unreachable, not JSON, oversized, and app names that
//! would change the URL.

use std::time::Duration;

use chima_config::Secret;
use chima_engine::process::Exit;
use chima_engine::providers::heroku::{self, HerokuApi, HerokuPlan};
use chima_testkit::heroku::{Behaviour, Create, FakeHeroku};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::*;

#[tokio::test]
async fn a_refused_key_is_named_and_never_shown() {
    let fake = FakeHeroku::start(Behaviour::unauthorized()).await;
    let api = api(&fake);
    let ran = run(&api, &fast(), Instant::now() + FAR).await;
    let why = ran.result.clone().expect_err("401 is an error");
    assert!(why.contains("401"), "{why}");
    assert!(why.contains("HEROKU_API_KEY"), "{why}");
    assert!(!why.contains(api.api_key.expose()), "{why}");
    assert!(!ran.notes().contains(api.api_key.expose()));
    assert_eq!(fake.requests().len(), 1, "a refused key is not retried");
}

#[tokio::test]
async fn a_wrong_key_is_refused_the_same_way() {
    let fake = FakeHeroku::start(Behaviour::succeeds()).await;
    let api = HerokuApi {
        base_url: fake.url.clone(),
        api_key: Secret::new("HRKU-wrong-key-0000000000000000"),
    };
    let why = run(&api, &fast(), Instant::now() + FAR)
        .await
        .result
        .expect_err("wrong key");
    assert!(why.contains("HEROKU_API_KEY"), "{why}");
    assert!(!why.contains("HRKU-wrong-key"), "{why}");
    assert_eq!(fake.builds_created(), 0);
}

#[tokio::test]
async fn a_missing_app_is_named() {
    let fake = FakeHeroku::start(Behaviour::app_not_found()).await;
    let why = run(&api(&fake), &fast(), Instant::now() + FAR)
        .await
        .result
        .expect_err("404");
    assert!(why.contains(&format!("`{APP}` not found")), "{why}");
    assert!(why.contains("heroku_name"), "{why}");
}

#[tokio::test]
async fn server_errors_are_retried_then_the_build_runs() {
    let fake = FakeHeroku::start(Behaviour::server_errors(2)).await;
    let ran = run(&api(&fake), &fast(), Instant::now() + FAR).await;
    assert_eq!(ran.result, Ok(Exit::Exited(Some(0))), "{}", ran.notes());
    assert_eq!(fake.requests_to("POST", "/apps/").len(), 3);
    assert_eq!(fake.builds_created(), 1);
    assert_eq!(ran.stdout(), Behaviour::default_output());
    assert!(
        ran.notes().contains("503"),
        "retries are visible in the log"
    );
}

#[tokio::test]
async fn server_errors_that_persist_end_after_three_attempts() {
    let fake = FakeHeroku::start(Behaviour::server_errors(u32::MAX)).await;
    let why = run(&api(&fake), &fast(), Instant::now() + FAR)
        .await
        .result
        .expect_err("503 forever");
    assert!(
        why.starts_with("Heroku API answered 503 three times:"),
        "{why}"
    );
    assert!(why.contains("temporarily unavailable"), "{why}");
    assert_eq!(fake.requests_to("POST", "/apps/").len(), 3);
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let fake = FakeHeroku::start(Behaviour::rate_limited(1, 1)).await;
    let started = Instant::now();
    let ran = run(&api(&fake), &fast(), Instant::now() + FAR).await;
    assert_eq!(ran.result, Ok(Exit::Exited(Some(0))), "{}", ran.notes());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(fake.requests_to("POST", "/apps/").len(), 2);
    assert!(ran.notes().contains("429"), "{}", ran.notes());
}

#[tokio::test]
async fn a_retry_after_longer_than_faseng_waits_ends_at_once() {
    let fake = FakeHeroku::start(Behaviour::rate_limited(1, 3600)).await;
    let why = run(&api(&fake), &fast(), Instant::now() + FAR)
        .await
        .result
        .expect_err("too long a wait");
    assert!(why.contains("429") && why.contains("3600"), "{why}");
    assert_eq!(fake.requests_to("POST", "/apps/").len(), 1);
}

#[tokio::test]
async fn status_polls_survive_passing_server_errors() {
    let fake = FakeHeroku::start(Behaviour {
        poll_errors: 2,
        ..Behaviour::succeeds()
    })
    .await;
    let ran = run(&api(&fake), &fast(), Instant::now() + FAR).await;
    assert_eq!(ran.result, Ok(Exit::Exited(Some(0))), "{}", ran.notes());
}

#[tokio::test]
async fn an_unreachable_api_is_an_error_after_three_attempts() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let api = HerokuApi {
        base_url: format!("http://127.0.0.1:{port}"),
        api_key: Secret::new("HRKU-unused-key-0123456789"),
    };
    let why = run(&api, &fast(), Instant::now() + FAR)
        .await
        .result
        .expect_err("nothing listens");
    assert!(
        why.starts_with("Heroku API could not be reached three times"),
        "{why}"
    );
}

#[tokio::test]
async fn an_answer_that_is_not_json_is_a_clear_error() {
    let fake = FakeHeroku::start(Behaviour {
        create: Create::NotJson,
        ..Behaviour::succeeds()
    })
    .await;
    let why = run(&api(&fake), &fast(), Instant::now() + FAR)
        .await
        .result
        .expect_err("HTML");
    assert!(why.contains("not a JSON object"), "{why}");
    assert!(why.contains("text/html"), "{why}");
}

#[tokio::test]
async fn an_oversized_answer_is_refused_without_reading_it_all() {
    let fake = FakeHeroku::start(Behaviour {
        create: Create::Huge(2 * 1024 * 1024),
        ..Behaviour::succeeds()
    })
    .await;
    let why = run(&api(&fake), &fast(), Instant::now() + FAR)
        .await
        .result
        .expect_err("2 MiB");
    assert!(why.contains("over 1024 KiB"), "{why}");
}

#[tokio::test]
async fn an_app_name_that_would_change_the_url_is_refused_before_any_request() {
    let fake = FakeHeroku::start(Behaviour::succeeds()).await;
    let (tx, _rx) = mpsc::channel(100);
    let (_c, cancel) = watch::channel(None);
    let bad = HerokuPlan {
        app_name: "../account".to_string(),
        ..plan()
    };
    let why = heroku::run_with(&bad, &api(&fake), &fast(), tx, cancel, Instant::now() + FAR)
        .await
        .expect_err("bad name");
    assert!(why.contains("not valid"), "{why}");
    assert!(fake.requests().is_empty());
}
