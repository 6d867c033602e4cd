//! The status polls when the output stream fails: a dead stream slows the polls,
//! a dropped one is resumed, rate-limited polls wait.

use std::time::Duration;

use chima_engine::process::Exit;
use chima_engine::providers::heroku::Timing;
use chima_testkit::heroku::{Behaviour, FakeHeroku, Outcome, StreamFault};
use tokio::time::Instant;

use super::*;

// The status polls when the output stream fails. The Build resource
// (https://devcenter.heroku.com/articles/platform-api-reference#build) asks
// clients to be prepared for disconnects of `output_stream_url`.

#[tokio::test]
async fn a_dead_output_stream_slows_the_polls_down_and_the_build_result_stands() {
    // One second of build, polls from 25 ms doubling to 500 ms: the scale of
    // a 20 s build with faseng's 500 ms and 10 s. Polling every 25 ms, as a
    // runner without backoff would, makes 40 polls.
    let fake = FakeHeroku::start(Behaviour {
        outcome: Outcome::Failed,
        ..Behaviour::dead_stream(503, Duration::from_secs(1))
    })
    .await;
    let timing = Timing {
        poll: Duration::from_millis(25),
        poll_cap: Duration::from_millis(500),
        poll_while_streaming: Duration::from_secs(15),
        ..fast()
    };
    let started = Instant::now();
    let ran = run(&api(&fake), &timing, Instant::now() + FAR).await;
    assert_eq!(ran.result, Ok(Exit::Exited(Some(1))), "{}", ran.notes());
    assert!(started.elapsed() >= Duration::from_secs(1));
    let polls = fake.status_polls();
    // 25 + 50 + 100 + 200 + 400 ms, then every 500 ms: about 6. A slow
    // machine only makes fewer.
    assert!((2..=10).contains(&polls), "{polls} status polls");
    assert!(ran.stdout().is_empty());
    let notes = ran.notes();
    assert!(notes.contains("not available (answered 503)"), "{notes}");
    assert!(notes.contains("may be incomplete"), "{notes}");
    assert!(notes.contains("failed"), "{notes}");
    // The stream is tried again meanwhile, with the same backoff.
    let streams = fake.stream_requests().len();
    assert!((2..=12).contains(&streams), "{streams} stream requests");
}

#[tokio::test]
async fn a_stream_that_drops_is_resumed_where_it_broke() {
    let fake = FakeHeroku::start(Behaviour {
        stream_fault: StreamFault::Drops {
            after_bytes: 100,
            times: 2,
        },
        chunk_delay: Duration::from_millis(20),
        pending_polls: 0,
        build_duration: Some(Duration::from_secs(3)),
        ..Behaviour::succeeds()
    })
    .await;
    let ran = run(&api(&fake), &fast(), Instant::now() + FAR).await;
    assert_eq!(ran.result, Ok(Exit::Exited(Some(0))), "{}", ran.notes());
    assert_eq!(
        ran.stdout(),
        Behaviour::default_output(),
        "every line once, in order"
    );
    let ranges: Vec<Option<String>> = fake
        .stream_requests()
        .iter()
        .map(|r| r.header("range").map(str::to_string))
        .collect();
    assert_eq!(
        ranges,
        [
            None,
            Some("bytes=100-".to_string()),
            Some("bytes=200-".to_string())
        ]
    );
    let notes = ran.notes();
    assert!(notes.contains("broke off"), "{notes}");
    assert!(notes.contains("output is back"), "{notes}");
}

#[tokio::test]
async fn rate_limited_polls_wait_for_retry_after_and_keep_watching() {
    // Three 429s in a row: more than one request's retries, which used to
    // end the deployment while the build went on.
    let fake = FakeHeroku::start(Behaviour {
        poll_rate_limited: 3,
        poll_retry_after: Some(1),
        ..Behaviour::succeeds()
    })
    .await;
    let started = Instant::now();
    let ran = run(&api(&fake), &fast(), Instant::now() + FAR).await;
    assert_eq!(ran.result, Ok(Exit::Exited(Some(0))), "{}", ran.notes());
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "Retry-After: 1 was honoured three times"
    );
    assert_eq!(ran.stdout(), Behaviour::default_output());
    assert!(ran.notes().contains("429"), "{}", ran.notes());
}

#[tokio::test]
async fn a_poll_retry_after_longer_than_faseng_waits_says_the_build_goes_on() {
    let fake = FakeHeroku::start(Behaviour {
        poll_rate_limited: 1,
        poll_retry_after: Some(3600),
        ..Behaviour::succeeds()
    })
    .await;
    let why = run(&api(&fake), &fast(), Instant::now() + FAR)
        .await
        .result
        .expect_err("too long a wait");
    assert!(why.contains("429") && why.contains("3600"), "{why}");
    assert!(why.contains("heroku builds:info"), "{why}");
    assert_eq!(fake.status_polls(), 1);
}
