//! `/deployments/{id}/events`: the log of a deployment as server-sent events,
//! for the deployment page to append while the deployment runs.
//!
//! The stream polls the store (one short query for the state, one for new
//! lines; no connection is held between polls), sends each new line as
//! `event: line` with `id: <seq>` and JSON `{seq, stream, line, at}`, and the
//! state as `event: state` with `{state, reason, exit_code, finished_at,
//! duration}` whenever it changes. It ends once the deployment is in a
//! terminal state and every line was sent; the terminal `state` event is the
//! last one. A browser that reconnects sends `Last-Event-ID` and resumes
//! after it. When the client goes away, the next write (a line or the
//! keep-alive comment) fails and the stream is dropped.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chima_store::{Deployment, DeploymentState, LogLine, Store};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use serde::Serialize;

use super::html;

/// How often the store is asked for new lines.
const POLL: Duration = Duration::from_millis(250);
/// The most lines read (and sent) per poll.
const BATCH: i64 = 500;
/// A comment is sent after this much silence: it keeps proxies from closing
/// the stream and is how a vanished client is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Store errors in a row after which the stream ends (the browser reconnects).
const MAX_FAILURES: u32 = 20;
/// The wait after a failed poll.
const FAILURE_PAUSE: Duration = Duration::from_secs(1);

/// The `line` event's data.
#[derive(Debug, Serialize)]
struct LineData<'a> {
    seq: i64,
    stream: &'static str,
    line: &'a str,
    at: DateTime<Utc>,
}

/// The `state` event's data.
#[derive(Debug, Serialize, PartialEq, Clone)]
pub struct StateData {
    pub state: DeploymentState,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Run time as people read it, once finished (`12.3s`).
    pub duration: Option<String>,
}

impl StateData {
    pub fn of(d: &Deployment) -> StateData {
        StateData {
            state: d.state,
            reason: d.reason.clone(),
            exit_code: d.exit_code,
            started_at: d.started_at,
            finished_at: d.finished_at,
            duration: match (d.started_at, d.finished_at) {
                (Some(s), Some(f)) => Some(html::duration(f - s)),
                _ => None,
            },
        }
    }
}

/// Where a stream is.
struct Tail {
    store: Arc<dyn Store>,
    id: i64,
    /// The last sequence number sent.
    after: i64,
    /// The state last sent.
    sent: Option<StateData>,
    /// Wait before the next poll (not after a full batch: there is more).
    wait: bool,
    failures: u32,
    done: bool,
}

impl Drop for Tail {
    fn drop(&mut self) {
        tracing::info!(
            deployment = self.id,
            after = self.after,
            finished = self.done,
            "live log stream closed"
        );
    }
}

/// The last sequence number a reconnecting browser saw, from `Last-Event-ID`.
pub fn last_event_id(headers: &HeaderMap) -> Option<i64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0)
}

/// The SSE response for deployment `id`, starting after line `after`.
pub fn stream(store: Arc<dyn Store>, id: i64, after: i64) -> Response {
    tracing::info!(deployment = id, after, "live log stream opened");
    let tail = Tail {
        store,
        id,
        after: after.max(0),
        sent: None,
        wait: false,
        failures: 0,
        done: false,
    };
    Sse::new(events(tail))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

fn events(tail: Tail) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    futures::stream::unfold(tail, |mut t| async move {
        let batch = next_batch(&mut t).await?;
        Some((futures::stream::iter(batch.into_iter().map(Ok)), t))
    })
    .flatten()
}

/// Polls until there is something to send; `None` ends the stream.
async fn next_batch(t: &mut Tail) -> Option<Vec<Event>> {
    if t.done {
        return None;
    }
    loop {
        if t.wait {
            let pause = if t.failures > 0 { FAILURE_PAUSE } else { POLL };
            tokio::time::sleep(pause).await;
        }
        t.wait = true;
        // State first, then lines: a terminal state read here means every line
        // of the deployment is in the store already.
        let d = match t.store.get_deployment(t.id).await {
            Ok(Some(d)) => d,
            Ok(None) => return None,
            Err(e) => {
                if give_up(t, &e) {
                    return None;
                }
                continue;
            }
        };
        let lines = match t.store.read_logs(t.id, t.after, BATCH).await {
            Ok(l) => l,
            Err(e) => {
                if give_up(t, &e) {
                    return None;
                }
                continue;
            }
        };
        t.failures = 0;
        let full = lines.len() as i64 >= BATCH;
        let mut out: Vec<Event> = lines.iter().filter_map(line_event).collect();
        if let Some(last) = lines.last() {
            t.after = last.seq;
        }
        let caught_up = !full;
        let state = StateData::of(&d);
        // A terminal state goes out once every line has: it is the last event.
        if t.sent.as_ref() != Some(&state) && (caught_up || !state.state.is_terminal()) {
            if let Ok(ev) = Event::default().event("state").json_data(&state) {
                out.push(ev);
            }
            t.sent = Some(state);
        }
        if caught_up && d.state.is_terminal() {
            t.done = true;
        }
        t.wait = caught_up;
        if !out.is_empty() || t.done {
            return Some(out);
        }
    }
}

fn give_up(t: &mut Tail, e: &dyn std::fmt::Display) -> bool {
    t.failures += 1;
    tracing::warn!(deployment = t.id, error = %e, failures = t.failures, "live log poll failed");
    t.failures >= MAX_FAILURES
}

fn line_event(l: &LogLine) -> Option<Event> {
    let line = html::clean_line(&l.line);
    Event::default()
        .event("line")
        .id(l.seq.to_string())
        .json_data(LineData {
            seq: l.seq,
            stream: l.stream.as_str(),
            line: &line,
            at: l.at,
        })
        .ok()
}
