//! The web pages against the real faseng: signatures on every page and on the
//! event stream, the deployment page, the live event stream read raw, the
//! index, and headless Chromium watching a running deployment's log grow.
//!
//! Most tests run faseng web-only (`FASENG_WORKERS=0`) and drive deployments
//! through the store themselves (create, claim, append lines, finish), so what
//! the pages see is exactly what the test wrote. The browser test runs a real
//! deploy script with faseng's workers.
//!
//! This module holds what the tests share (faseng web-only, deployments made
//! through the store, signed URLs, a raw server-sent events reader); the tests are
//! in one module per page: `signatures`, `deployment`, `events`, `index`, `browser`.

mod browser;
mod deployment;
mod events;
mod index;
mod signatures;

use std::time::Duration;

use chima_store::{Deployment, NewDeployment, NewLogLine, Outcome, Stream};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use serde_json::{Value, json};

use crate::harness::{Faseng, SECRET};

/// The signer faseng uses, keyed as the harness starts it (by the webhook secret).
#[allow(dead_code)]
#[path = "../../../src/links.rs"]
pub(crate) mod links;

const WORKER: &str = "pages-test";
const SHA: &str = "4f1c0ffee0ddba11c0de5eed0123456789abcdef";

const APPS: &str = r#"{
  "web": {"provider": "shell", "repository": "acme/web", "environments": ["production", "staging"]},
  "api": {"provider": "shell", "repository": "acme/api", "environments": ["production"]}
}"#;

/// The signature with its last digit changed.
fn tampered(sig: &str) -> String {
    let (head, last) = sig.split_at(sig.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

fn signer() -> links::LinkSigner {
    links::LinkSigner::new(SECRET.as_bytes())
}

fn page_url(f: &Faseng, id: i64) -> String {
    signer().url(&f.url, id)
}

fn events_url(f: &Faseng, id: i64, after: i64) -> String {
    format!(
        "{}/deployments/{id}/events?sig={}&after={after}",
        f.url,
        signer().sign(id)
    )
}

fn index_url(f: &Faseng) -> String {
    signer().index_url(&f.url)
}

/// faseng serving pages only: nothing claims the deployments the test makes.
async fn web_only(apps: &str) -> Faseng {
    Faseng::start_with(apps, None, &[("FASENG_WORKERS", "0")]).await
}

fn new_deployment(app: &str, env: &str, who: &str, git_ref: &str) -> NewDeployment {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    NewDeployment {
        source_key: format!(
            "pages-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ),
        requester: who.to_string(),
        app: app.to_string(),
        environment: env.to_string(),
        repository: format!("acme/{app}"),
        git_ref: git_ref.to_string(),
        sha: Some(SHA.to_string()),
        task: "deploy".to_string(),
        hosts: None,
        provider: "shell".to_string(),
        payload: json!({}),
        github_deployment_id: None,
        notify: vec![],
        timeout_secs: None,
    }
}

async fn queued(f: &Faseng, nd: NewDeployment) -> i64 {
    f.store.create_deployment(nd).await.unwrap().deployment.id
}

/// Creates and claims a deployment: it is `running`, held by the test.
async fn running(f: &Faseng, nd: NewDeployment) -> i64 {
    let id = queued(f, nd).await;
    let claimed = f
        .store
        .claim(WORKER, Duration::from_secs(600))
        .await
        .unwrap()
        .expect("the new deployment is claimable");
    assert_eq!(
        claimed.id, id,
        "claimed another deployment than the new one"
    );
    id
}

async fn write_log(f: &Faseng, id: i64, lines: &[(Stream, &str)]) -> i64 {
    let lines: Vec<NewLogLine> = lines
        .iter()
        .map(|(stream, line)| NewLogLine {
            stream: *stream,
            line: line.to_string(),
            at: chrono::Utc::now(),
        })
        .collect();
    f.store.append_logs(id, &lines).await.unwrap()
}

async fn finish(f: &Faseng, id: i64, outcome: Outcome) -> Deployment {
    f.store.finish(id, WORKER, outcome).await.unwrap()
}

/// faseng's log without terminal colours.
fn plain_log(f: &Faseng) -> String {
    let raw = f.log();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn wait_for_log(f: &Faseng, needle: &str, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !plain_log(f).contains(needle) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "faseng never logged {needle:?}:\n{}",
            plain_log(f)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- a raw server-sent events reader -------------------------------------------------------

#[derive(Debug, Clone)]
struct SseEvent {
    event: String,
    data: String,
    id: Option<String>,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {:?}", self.data))
    }
}

struct SseReader {
    body: Incoming,
    buf: String,
    comments: usize,
}

/// Opens an event stream: status, content type and the reader.
async fn open_sse(url: &str, last_event_id: Option<&str>) -> (u16, String, SseReader) {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::get(url).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (
        status,
        ctype,
        SseReader {
            body: resp.into_body(),
            buf: String::new(),
            comments: 0,
        },
    )
}

impl SseReader {
    /// The next event; `None` when the server ended the stream. Fails the test
    /// after `secs` without one.
    async fn next(&mut self, secs: u64) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut data, mut id) = (String::new(), Vec::new(), None);
                let mut fields = 0;
                for line in block.lines() {
                    if line.starts_with(':') {
                        continue;
                    }
                    let (k, v) = line.split_once(':').unwrap_or((line, ""));
                    let v = v.strip_prefix(' ').unwrap_or(v);
                    fields += 1;
                    match k {
                        "event" => event = v.to_string(),
                        "data" => data.push(v.to_string()),
                        "id" => id = Some(v.to_string()),
                        _ => {}
                    }
                }
                if fields == 0 {
                    self.comments += 1;
                    continue;
                }
                return Some(SseEvent {
                    event: if event.is_empty() {
                        "message".into()
                    } else {
                        event
                    },
                    data: data.join("\n"),
                    id,
                });
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "no event within {secs}s; have {:?}",
                self.buf
            );
            match tokio::time::timeout(left, self.body.frame()).await {
                Err(_) => panic!("no event within {secs}s; have {:?}", self.buf),
                Ok(None) => return None,
                Ok(Some(Err(e))) => panic!("the event stream broke: {e}"),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&data));
                    }
                }
            }
        }
    }

    /// Events until (and with) the first `state` event whose state is `state`.
    async fn until_state(&mut self, state: &str) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        loop {
            let ev = self
                .next(20)
                .await
                .unwrap_or_else(|| panic!("the stream ended before {state}: {seen:?}"));
            let done = ev.event == "state" && ev.json()["state"] == state;
            seen.push(ev);
            if done {
                return seen;
            }
        }
    }
}

fn line_texts(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "line")
        .map(|e| e.json()["line"].as_str().unwrap_or_default().to_string())
        .collect()
}
