//! The web pages against the real faseng: signatures on every page and on the
//! event stream, the deployment page, the live event stream read raw, the
//! index, and headless Chromium watching a running deployment's log grow.
//!
//! Most tests run faseng web-only (`FASENG_WORKERS=0`) and drive deployments
//! through the store themselves (create, claim, append lines, finish), so what
//! the pages see is exactly what the test wrote. The browser test runs a real
//! deploy script with faseng's workers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chima_store::{
    Deployment, DeploymentState, LockResult, NewDeployment, NewLogLine, Outcome, Stream,
};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use serde_json::{Value, json};

use crate::harness::{Faseng, SECRET, get};

/// The signer faseng uses, keyed as the harness starts it (by the webhook secret).
#[allow(dead_code)]
#[path = "../../src/links.rs"]
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

// ---- signatures ------------------------------------------------------------------------------

#[tokio::test]
async fn every_page_and_the_event_stream_need_their_signature() {
    let f = web_only(APPS).await;
    let id = queued(&f, new_deployment("web", "production", "alice", "main")).await;
    let other = queued(&f, new_deployment("web", "staging", "bob", "main")).await;
    let s = signer();
    let wrong = "0".repeat(32);

    let index_refused = [
        format!("{}/", f.url),
        format!("{}/?sig=", f.url),
        format!("{}/?sig=zz", f.url),
        format!("{}/?sig={wrong}", f.url),
        format!("{}/?sig={}", f.url, s.sign(id)),
        format!("{}/?sig={}", f.url, &s.sign_page("index")[..30]),
        format!(
            "{}/?sig={}",
            f.url,
            links::LinkSigner::new(b"other key").sign_page("index")
        ),
    ];
    for url in &index_refused {
        let (code, body) = get(url).await;
        assert_eq!(code, 403, "{url}: {body}");
        assert!(body.contains("signed link"), "{url}: {body}");
        assert!(body.contains("index="), "says where the link is: {body}");
    }
    for path in [
        format!("/deployments/{id}"),
        format!("/deployments/{id}/events"),
    ] {
        for query in [
            String::new(),
            "?sig=".to_string(),
            format!("?sig={wrong}"),
            format!("?sig={}", s.sign(other)),
            format!("?sig={}", s.sign_page("index")),
            format!("?sig={}", links::LinkSigner::new(b"other key").sign(id)),
            format!("?sig={}&after=0", tampered(&s.sign(id))),
        ] {
            let url = format!("{}{path}{query}", f.url);
            let (code, body) = get(&url).await;
            assert_eq!(code, 403, "{url}: {body}");
            assert!(body.contains("log_url"), "{url}: {body}");
            assert!(!body.contains("alice"), "{url}: {body}");
        }
    }

    // With the right signatures all three answer.
    let (code, body) = get(&index_url(&f)).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = get(&page_url(&f, id)).await;
    assert_eq!(code, 200, "{body}");
    let (code, ctype, _stream) = open_sse(&events_url(&f, id, 0), None).await;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");

    // A signed link to a deployment that does not exist, and a bad `after`.
    let (code, _) = get(&page_url(&f, 999_999)).await;
    assert_eq!(code, 404);
    let (code, _) = get(&events_url(&f, 999_999, 0)).await;
    assert_eq!(code, 404);
    let bad_after = format!(
        "{}/deployments/{id}/events?sig={}&after=x",
        f.url,
        s.sign(id)
    );
    let (code, body) = get(&bad_after).await;
    assert_eq!(code, 400, "{body}");
}

// ---- the deployment page ----------------------------------------------------------------------

#[tokio::test]
async fn a_finished_deployments_page_shows_its_state_facts_and_escaped_log() {
    let f = web_only(APPS).await;
    let mut nd = new_deployment(
        "web",
        "production",
        "eve<img src=x onerror=alert(2)>",
        "main",
    );
    nd.hosts = Some("fe1".into());
    let id = running(&f, nd).await;
    write_log(
        &f,
        id,
        &[
            (Stream::Stdout, "Fetching acme/web"),
            (Stream::Stdout, "<script>alert(1)</script>"),
            (Stream::Stderr, "warning: cache & <b>cold</b>"),
            (Stream::Stdout, "\u{1b}[1;32mcompiled\u{1b}[0m in 3s"),
        ],
    )
    .await;
    finish(&f, id, Outcome::failed(Some(3), "exited with code 3")).await;

    let (code, page) = get(&page_url(&f, id)).await;
    assert_eq!(code, 200, "{page}");
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(
        page.contains("id=state class=\"state s-failed\">failed</span>"),
        "{page}"
    );
    assert!(page.contains(&format!("Deployment #{id}")), "{page}");
    assert!(page.contains("Fetching acme/web\n"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;\n"),
        "{page}"
    );
    assert!(!page.contains("<script>alert(1)"), "{page}");
    assert!(
        page.contains("<span class=err>warning: cache &amp; &lt;b&gt;cold&lt;/b&gt;</span>"),
        "{page}"
    );
    assert!(
        page.contains("compiled in 3s\n"),
        "terminal colours dropped: {page}"
    );
    assert!(!page.contains('\u{1b}'));
    assert!(
        page.contains("eve&lt;img src=x onerror=alert(2)&gt;"),
        "{page}"
    );
    assert!(!page.contains("<img"), "{page}");
    assert!(
        page.contains(&format!(
            "<a class=mono href=\"https://github.com/acme/web/commit/{SHA}\">{SHA}</a>"
        )),
        "{page}"
    );
    assert!(page.contains("<dd id=exit>3</dd>"), "{page}");
    assert!(
        page.contains("<dd id=reason>exited with code 3</dd>"),
        "{page}"
    );
    assert!(page.contains("<dt>hosts</dt><dd>fe1</dd>"), "{page}");
    assert!(
        page.contains("<dt>ref</dt><dd><code>main</code></dd>"),
        "{page}"
    );
    for fact in [
        "queued", "started", "finished", "duration", "task", "provider",
    ] {
        assert!(page.contains(&format!("<dt>{fact}</dt>")), "{fact}: {page}");
    }
    assert!(page.contains(" UTC</time>"), "{page}");
    // Finished: no live updates.
    assert!(!page.contains("EventSource"), "{page}");
    assert!(page.contains("the log is complete"), "{page}");

    // A sha that is not one is shown, not linked.
    let mut nd = new_deployment("web", "staging", "alice", "main");
    nd.sha = Some("not-a-sha\"><b>".into());
    let other = running(&f, nd).await;
    let (_, page) = get(&page_url(&f, other)).await;
    assert!(
        page.contains("<code>not-a-sha&quot;&gt;&lt;b&gt;</code>"),
        "{page}"
    );
    assert!(!page.contains("/commit/not-a-sha"), "{page}");
}

#[tokio::test]
async fn a_running_deployments_page_follows_its_log_and_works_without_javascript() {
    let f = web_only(APPS).await;
    let id = running(&f, new_deployment("web", "production", "alice", "main")).await;
    let (_, page) = get(&page_url(&f, id)).await;
    assert!(page.contains("(no output yet)"), "{page}");
    assert!(
        page.contains(&format!(
            "'{id}/events?sig={}&after=' + last",
            signer().sign(id)
        )),
        "{page}"
    );
    assert!(page.contains("var last = 0;"), "{page}");

    write_log(&f, id, &[(Stream::Stdout, "one"), (Stream::Stdout, "two")]).await;
    let (_, page) = get(&page_url(&f, id)).await;
    assert!(page.contains("one\ntwo\n</pre>"), "{page}");
    assert!(page.contains("var last = 2;"), "{page}");
    assert!(page.contains("s-running\">running</span>"), "{page}");
    assert!(page.contains("running for "), "{page}");
    // Without JavaScript the page reloads itself while the deployment runs.
    assert!(
        page.contains("<noscript><meta http-equiv=refresh content=10></noscript>"),
        "{page}"
    );
}

#[tokio::test]
async fn a_long_log_shows_its_last_lines_with_a_note() {
    let f = web_only(APPS).await;
    let id = running(&f, new_deployment("web", "production", "alice", "main")).await;
    let text: Vec<String> = (1..=20_500).map(|i| format!("line {i}")).collect();
    for chunk in text.chunks(5000) {
        let lines: Vec<(Stream, &str)> =
            chunk.iter().map(|l| (Stream::Stdout, l.as_str())).collect();
        write_log(&f, id, &lines).await;
    }
    finish(&f, id, Outcome::succeeded(0)).await;
    let (code, page) = get(&page_url(&f, id)).await;
    assert_eq!(code, 200);
    assert!(
        page.contains("The log has 20500 lines; this page shows the last 20000 (from line 501)."),
        "{}",
        &page[..2000.min(page.len())]
    );
    assert!(!page.contains("line 500\n"));
    assert!(page.contains(">line 501\n") || page.contains("\nline 501\n"));
    assert!(page.contains("line 20500\n</pre>"));
}

// ---- the event stream -------------------------------------------------------------------------

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

// ---- the index --------------------------------------------------------------------------------

#[tokio::test]
async fn the_index_lists_every_app_and_environment_with_deployments_and_locks() {
    let f = web_only(APPS).await;
    let done = running(&f, new_deployment("web", "production", "alice", "v1.2.0")).await;
    write_log(&f, done, &[(Stream::Stdout, "ok")]).await;
    finish(&f, done, Outcome::succeeded(0)).await;
    let now = running(&f, new_deployment("web", "staging", "bob", "feature/x")).await;
    let next = queued(&f, new_deployment("web", "staging", "carol", "main")).await;
    let legacy = queued(&f, new_deployment("legacy", "qa", "dave<i>", "main")).await;
    f.store
        .fail_queued(legacy, DeploymentState::Errored, "no app <legacy>")
        .await
        .unwrap();
    let lock = f
        .store
        .lock(
            "api",
            "production",
            "erin",
            Some("<b>db migration</b>"),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(lock, LockResult::Acquired(_)), "{lock:?}");

    let (code, page) = get(&index_url(&f)).await;
    assert_eq!(code, 200, "{page}");
    let row = |app: &str, env: &str| -> String {
        let start = page
            .find(&format!("<tr data-app=\"{app}\" data-env=\"{env}\">"))
            .unwrap_or_else(|| panic!("no row for {app}/{env}: {page}"));
        let end = page[start..].find("</tr>").unwrap() + start;
        page[start..end].to_string()
    };
    let link = |id: i64| {
        format!(
            "href=\"deployments/{id}?sig={}\">#{id}</a>",
            signer().sign(id)
        )
    };

    let web_prod = row("web", "production");
    assert!(web_prod.contains("<td class=app>web</td>"), "{web_prod}");
    assert!(
        web_prod.contains("<span class=muted>idle</span>"),
        "{web_prod}"
    );
    assert!(web_prod.contains(&link(done)), "{web_prod}");
    assert!(web_prod.contains("s-succeeded\">succeeded"), "{web_prod}");
    assert!(web_prod.contains("by alice"), "{web_prod}");
    assert!(web_prod.contains("<code>v1.2.0</code>"), "{web_prod}");
    assert!(
        web_prod.contains(&format!(
            "href=\"https://github.com/acme/web/commit/{SHA}\">{}</a>",
            &SHA[..7]
        )),
        "{web_prod}"
    );
    assert!(web_prod.contains("took "), "{web_prod}");

    let web_staging = row("web", "staging");
    assert!(
        web_staging.contains("<td class=app></td>"),
        "app named once: {web_staging}"
    );
    assert!(web_staging.contains(&link(now)), "{web_staging}");
    assert!(web_staging.contains("s-running\">running"), "{web_staging}");
    assert!(web_staging.contains("by bob"), "{web_staging}");
    assert!(web_staging.contains(&link(next)), "{web_staging}");
    assert!(web_staging.contains("(1 queued)"), "{web_staging}");
    assert!(web_staging.contains("never deployed"), "{web_staging}");

    let api = row("api", "production");
    assert!(
        api.contains("<span class=lock>locked</span> by erin"),
        "{api}"
    );
    assert!(api.contains("&lt;b&gt;db migration&lt;/b&gt;"), "{api}");
    assert!(api.contains("since "), "{api}");
    assert!(api.contains("never deployed"), "{api}");

    let legacy_row = row("legacy", "qa");
    assert!(legacy_row.contains("not in app.json"), "{legacy_row}");
    assert!(legacy_row.contains(&link(legacy)), "{legacy_row}");
    assert!(legacy_row.contains("dave&lt;i&gt;"), "{legacy_row}");
    assert!(legacy_row.contains("no app &lt;legacy&gt;"), "{legacy_row}");
    assert!(!page.contains("<i>"), "{page}");
    assert!(!page.contains("<b>db"), "{page}");

    // app.json's apps come first, in order, then the others.
    let order: Vec<usize> = [
        ("api", "production"),
        ("web", "production"),
        ("web", "staging"),
        ("legacy", "qa"),
    ]
    .iter()
    .map(|(a, e)| {
        page.find(&format!("data-app=\"{a}\" data-env=\"{e}\""))
            .unwrap()
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");

    // The recent deployments, newest first, each with its signed link.
    let recent = &page[page.find("<table id=recent>").expect("recent table")..];
    let positions: Vec<usize> = [legacy, next, now, done]
        .iter()
        .map(|id| {
            recent
                .find(&link(*id))
                .unwrap_or_else(|| panic!("#{id}: {recent}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");

    // Every link on the index opens its page.
    for id in [done, now, next, legacy] {
        let (code, body) = get(&format!(
            "{}/deployments/{id}?sig={}",
            f.url,
            signer().sign(id)
        ))
        .await;
        assert_eq!(code, 200, "{body}");
    }
}

#[tokio::test]
async fn the_index_stays_small_and_quick_with_many_deployments() {
    let f = web_only(APPS).await;
    let mut last = 0;
    for chunk in 0..25 {
        let mut ids = Vec::new();
        for i in 0..40 {
            let env = if (chunk + i) % 2 == 0 {
                "production"
            } else {
                "staging"
            };
            ids.push(queued(&f, new_deployment("web", env, "bot", "main")).await);
        }
        for id in ids {
            f.store
                .fail_queued(id, DeploymentState::Cancelled, "superseded")
                .await
                .unwrap();
            last = id;
        }
    }
    assert_eq!(f.count().await, 1000);
    let t0 = std::time::Instant::now();
    let (code, page) = get(&index_url(&f)).await;
    let took = t0.elapsed();
    assert_eq!(code, 200);
    assert!(took < Duration::from_secs(3), "the index took {took:?}");
    assert!(page.len() < 100_000, "{} bytes", page.len());
    assert!(page.contains(&format!("#{last}</a>")));
    assert_eq!(page.matches("<tr><td><a href=\"deployments/").count(), 25);
}

// ---- the browser ------------------------------------------------------------------------------

/// Debian's `chromium`, or a clear failure saying how to install it.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the browser test needs headless Chromium, which is not installed: \
         run `apt-get update && apt-get install -y chromium` (Debian's package; .ci/run does this)"
    );
}

/// Runs headless Chromium on `url` with `extra` flags; its stdout.
async fn run_chromium(profile: &Path, extra: &[String], url: &str) -> String {
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromium ({e}): apt-get install chromium"));
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("chromium did not finish within 120s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chromium failed ({}): {}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Waits until deployment `id` has logged a line containing `text`.
async fn wait_for_line(f: &Faseng, id: i64, text: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f
        .store
        .read_logs(id, 0, 1000)
        .await
        .unwrap()
        .iter()
        .any(|l| l.line.contains(text))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "#{id} never logged {text:?}: {}",
            f.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Takes a screenshot; copies it to docs/screenshots/ when UPDATE_SCREENSHOTS=1.
async fn screenshot(profile: &Path, tmp: &Path, name: &str, url: &str) {
    let shot = tmp.join(name);
    run_chromium(
        profile,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,800".to_string(),
            "--virtual-time-budget=3000".to_string(),
        ],
        url,
    )
    .await;
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot {name}: {e}"));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{name}: {} bytes",
        png.len()
    );
    if std::env::var("UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), &png).unwrap();
    }
}

/// A repository whose deploy script waits, in production, for `go` to exist
/// and, for carol, for `hold` to exist.
fn deploy_repo(dir: &Path, go: &Path, hold: &Path, marker: &str) -> (PathBuf, String) {
    let script = format!(
        r#"#!/bin/sh
echo "Deploying $DEPLOY_APP $DEPLOY_REF ($DEPLOY_SHA) to $DEPLOY_ENV for $DEPLOY_USER"
echo "Fetching release artifacts... done"
echo "Running database migrations: 3 pending"
echo "  20260101_add_deploy_locks ... ok"
echo "  20260102_index_deployments ... ok"
echo "  20260103_drop_legacy_jobs ... ok"
echo "warning: asset cache is cold, first requests will be slower" >&2
if [ "$DEPLOY_ENV" = production ]; then
  echo "Waiting for the load balancer to drain fe1..."
  i=0
  while [ ! -e '{go}' ]; do
    sleep 0.1
    i=$((i+1))
    if [ $i -gt 1200 ]; then echo "gave up waiting" >&2; exit 3; fi
  done
  echo "{marker}"
fi
if [ "$DEPLOY_USER" = carol ]; then
  echo "Waiting for the release window..."
  i=0
  while [ ! -e '{hold}' ]; do
    sleep 0.1
    i=$((i+1))
    if [ $i -gt 1200 ]; then echo "gave up waiting" >&2; exit 3; fi
  done
fi
echo "Restarting app servers: fe1 fe2 fe3"
echo "Health check: 200 OK"
echo "Deployed."
"#,
        go = go.display(),
        hold = hold.display()
    );
    crate::harness::repo(dir, &script)
}

#[tokio::test]
async fn chromium_sees_log_lines_written_after_the_page_loaded_and_the_index_lists_it() {
    let chromium_path = chromium();
    let tmp = tempfile::tempdir().unwrap();
    let go = tmp.path().join("go");
    let hold = tmp.path().join("hold");
    let marker = format!(
        "after-page-load-{}",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() % 1_000_000_007
    );
    let (repo, sha) = deploy_repo(tmp.path(), &go, &hold, &marker);
    let apps = json!({
        "hubot": {"provider": "shell", "repository": "acme/hubot", "clone_url": repo.display().to_string(), "environments": ["production", "staging"]},
        "api": {"provider": "shell", "repository": "acme/api", "clone_url": repo.display().to_string(), "environments": ["production"]},
    });
    let f = Faseng::start(&apps.to_string(), None).await;
    let mk = |env: &str, who: &str| NewDeployment {
        sha: Some(sha.clone()),
        ..new_deployment("hubot", env, who, "main")
    };

    // Something on the index besides the deployment under test.
    let earlier = queued(&f, mk("staging", "hubot-ci")).await;
    assert_eq!(
        f.wait_done(earlier).await.state,
        DeploymentState::Succeeded,
        "{}",
        f.log()
    );
    f.store
        .lock("api", "production", "alice", Some("quarterly audit"), None)
        .await
        .unwrap();

    let id = queued(&f, mk("production", "atmos")).await;
    // Running, and waiting for the go file.
    wait_for_line(&f, id, "drain fe1").await;
    let (_, page) = get(&page_url(&f, id)).await;
    assert!(!page.contains(&marker), "not yet written");

    // The browser loads the page and keeps it open until the page closes its
    // event stream (virtual time does not run while a request is pending).
    let profile = tmp.path().join("profile");
    let url = page_url(&f, id);
    let browser = tokio::spawn({
        let (profile, url) = (profile.clone(), url.clone());
        async move {
            run_chromium(
                &profile,
                &["--virtual-time-budget=60000".into(), "--dump-dom".into()],
                &url,
            )
            .await
        }
    });
    // The page has loaded and its script has opened the stream: only now the
    // line is written.
    wait_for_log(&f, &format!("live log stream opened deployment={id} "), 60).await;
    std::fs::write(&go, "go").unwrap();
    assert_eq!(
        f.wait_done(id).await.state,
        DeploymentState::Succeeded,
        "{}",
        f.log()
    );
    let dom = browser.await.unwrap();

    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("{chromium_path:?} did not show {marker}:\n{dom}"));
    let span = dom[..at].rfind("<span").expect("the line is in a span");
    assert!(
        dom[span..at].contains("class=\"live\""),
        "the line was appended by the page's script: {}",
        &dom[span..at + marker.len()]
    );
    assert!(
        dom.contains("class=\"state s-succeeded\">succeeded</span>"),
        "the state was updated live:\n{dom}"
    );
    assert!(dom.contains("Finished: the log is complete."), "{dom}");
    assert!(dom.contains("Deployed.\n"), "{dom}");

    // A deployment that runs while the index is looked at.
    let held = queued(&f, mk("staging", "carol")).await;
    wait_for_line(&f, held, "release window").await;

    let index = run_chromium(
        &profile,
        &["--virtual-time-budget=3000".into(), "--dump-dom".into()],
        &index_url(&f),
    )
    .await;
    assert!(
        index.contains(&format!(
            "href=\"deployments/{id}?sig={}\">#{id}</a>",
            signer().sign(id)
        )),
        "{index}"
    );
    assert!(
        index.contains("data-app=\"hubot\" data-env=\"production\""),
        "{index}"
    );
    assert!(index.contains("by alice: quarterly audit"), "{index}");
    let staging = &index[index
        .find("data-app=\"hubot\" data-env=\"staging\"")
        .expect("a staging row")..];
    assert!(
        staging.contains(&format!(
            "s-running\">running</span> <a href=\"deployments/{held}?sig="
        )),
        "{staging}"
    );

    screenshot(&profile, tmp.path(), "deployment.png", &url).await;
    screenshot(&profile, tmp.path(), "index.png", &index_url(&f)).await;
    std::fs::write(&hold, "go").unwrap();
    assert_eq!(f.wait_done(held).await.state, DeploymentState::Succeeded);
}
