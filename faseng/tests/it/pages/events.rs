//! The live event stream read raw: lines after connecting, the final state, long
//! logs in bounded batches, and no polling once the client goes away.

use chima_store::{Outcome, Stream};

use super::*;

#[tokio::test]
async fn the_event_stream_sends_lines_written_after_connecting_then_the_final_state_and_ends() {
    let f = web_only(APPS).await;
    let id = running(&f, new_deployment("web", "production", "alice", "main")).await;
    write_log(
        &f,
        id,
        &[(Stream::Stdout, "first"), (Stream::Stdout, "second")],
    )
    .await;

    let (code, ctype, mut sse) = open_sse(&events_url(&f, id, 0), None).await;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    let before = sse.until_state("running").await;
    assert_eq!(line_texts(&before), ["first", "second"]);
    let ids: Vec<_> = before.iter().filter_map(|e| e.id.clone()).collect();
    assert_eq!(ids, ["1", "2"]);

    // Written after the stream opened.
    write_log(
        &f,
        id,
        &[
            (Stream::Stdout, "third <b>not markup</b>"),
            (Stream::Stderr, "a warning"),
        ],
    )
    .await;
    let third = sse.next(10).await.expect("a line event");
    assert_eq!(third.event, "line");
    assert_eq!(third.id.as_deref(), Some("3"));
    let data = third.json();
    assert_eq!(data["seq"], 3);
    assert_eq!(data["stream"], "stdout");
    assert_eq!(data["line"], "third <b>not markup</b>");
    assert!(
        data["at"].as_str().is_some_and(|t| t.contains('T')),
        "{data}"
    );
    let fourth = sse.next(10).await.expect("a line event");
    assert_eq!(fourth.json()["stream"], "stderr");
    assert_eq!(fourth.json()["seq"], 4);

    finish(&f, id, Outcome::failed(Some(7), "exited with code 7")).await;
    let last = sse.next(10).await.expect("the final state");
    assert_eq!(last.event, "state");
    let state = last.json();
    assert_eq!(state["state"], "failed");
    assert_eq!(state["exit_code"], 7);
    assert_eq!(state["reason"], "exited with code 7");
    assert!(state["finished_at"].is_string(), "{state}");
    assert!(state["duration"].is_string(), "{state}");
    assert!(
        sse.next(10).await.is_none(),
        "the stream ends after the final state"
    );

    // A finished deployment: the lines after `after`, the state, the end.
    let (_, _, mut sse) = open_sse(&events_url(&f, id, 2), None).await;
    let mut all = Vec::new();
    while let Some(ev) = sse.next(10).await {
        all.push(ev);
    }
    assert_eq!(line_texts(&all), ["third <b>not markup</b>", "a warning"]);
    assert_eq!(all.last().map(|e| e.event.as_str()), Some("state"));
    assert_eq!(all.iter().filter(|e| e.event == "state").count(), 1);

    // A browser that reconnects resumes after its Last-Event-ID.
    let (_, _, mut sse) = open_sse(&events_url(&f, id, 0), Some("3")).await;
    let resumed = sse.until_state("failed").await;
    assert_eq!(line_texts(&resumed), ["a warning"]);
}

#[tokio::test]
async fn the_event_stream_sends_long_logs_in_order_in_bounded_batches() {
    let f = web_only(APPS).await;
    let id = running(&f, new_deployment("web", "production", "alice", "main")).await;
    let (_, _, mut sse) = open_sse(&events_url(&f, id, 0), None).await;
    sse.until_state("running").await;
    let text: Vec<String> = (1..=1234).map(|i| format!("line {i}")).collect();
    let lines: Vec<(Stream, &str)> = text.iter().map(|l| (Stream::Stdout, l.as_str())).collect();
    write_log(&f, id, &lines).await;
    finish(&f, id, Outcome::succeeded(0)).await;
    let events = sse.until_state("succeeded").await;
    assert_eq!(line_texts(&events), text);
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("state"));
    assert!(sse.next(10).await.is_none());
}

#[tokio::test]
async fn the_event_stream_stops_polling_when_the_client_goes_away() {
    let f = web_only(APPS).await;
    let id = running(&f, new_deployment("web", "production", "alice", "main")).await;
    let (_, _, mut sse) = open_sse(&events_url(&f, id, 0), None).await;
    sse.until_state("running").await;
    wait_for_log(&f, &format!("live log stream opened deployment={id} "), 10).await;
    drop(sse);
    // Noticed at the next write at the latest (a keep-alive comment every 5s).
    wait_for_log(
        &f,
        &format!("live log stream closed deployment={id} after=0 finished=false"),
        20,
    )
    .await;
}
