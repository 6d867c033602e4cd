//! The Heroku provider's runner against the fake Platform API of
//! `chima-testkit`, over real HTTP on 127.0.0.1: the real client, the real
//! retries, the real streaming.
//!
//! Timing assertions are lower bounds only (a sleep never ends early) or very
//! generous upper bounds, so that a loaded 2-core machine does not fail them.

use std::sync::Arc;
use std::time::Duration;

use chima_config::Secret;
use chima_engine::process::{Exit, MAX_LINE_BYTES};
use chima_engine::providers::heroku::{self, HerokuApi, HerokuPlan, Timing};
use chima_engine::{Engine, EngineConfig, SourceAccess};
use chima_store::{Deployment, DeploymentState, NewDeployment, Stream};
use chima_testkit::heroku::{ACCEPT, Behaviour, Create, FakeHeroku, Outcome, StreamFault};
use serde_json::json;
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

// The source Heroku downloads, through the whole engine (app.json, store,
// worker) as faseng runs it. GitHub's source archives:
// https://docs.github.com/en/repositories/working-with-files/using-files/downloading-source-code-archives

const REPOSITORY: &str = "octo/example";

/// Queues a Heroku deployment of [`SHA`] on an engine configured by `edit`,
/// and returns it once it is over.
async fn deploy_through_the_engine(
    fake: &FakeHeroku,
    edit: impl FnOnce(&mut EngineConfig),
) -> Deployment {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = chima_store::open(&format!(
        "sqlite://{}",
        dir.path().join("store.db").display()
    ))
    .await
    .expect("SQLite store");
    let app_json = json!({"app": {
        "provider": "heroku",
        "repository": REPOSITORY,
        "heroku_name": APP,
        "environments": ["staging"],
    }});
    let apps = chima_config::Apps::parse(&app_json.to_string(), &dir.path().join("app.json"))
        .unwrap_or_else(|e| panic!("app.json: {e}"));
    let mut cfg = EngineConfig::new(Some(Arc::new(apps)), dir.path());
    cfg.workers = 1;
    cfg.workdir = dir.path().join("work");
    cfg.heroku = Some(api(fake));
    edit(&mut cfg);
    let engine = Engine::start(store.clone(), cfg);
    let queued = store
        .create_deployment(NewDeployment {
            source_key: "heroku-source-test".to_string(),
            requester: "alice".to_string(),
            app: "app".to_string(),
            environment: "staging".to_string(),
            repository: REPOSITORY.to_string(),
            git_ref: "main".to_string(),
            sha: Some(SHA.to_string()),
            task: "deploy".to_string(),
            hosts: None,
            provider: "heroku".to_string(),
            payload: json!({}),
            github_deployment_id: None,
            notify: vec![],
            timeout_secs: None,
        })
        .await
        .expect("queue the deployment")
        .deployment;
    let waited = Instant::now();
    let done = loop {
        let d = store
            .get_deployment(queued.id)
            .await
            .expect("read the deployment")
            .expect("the deployment exists");
        if d.state.is_terminal() {
            break d;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "still {}",
            d.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    engine.shutdown().await;
    done
}

#[tokio::test]
async fn without_github_credentials_heroku_fetches_the_public_archive() {
    let fake = FakeHeroku::start(Behaviour::succeeds()).await;
    let done = deploy_through_the_engine(&fake, |_| {}).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    assert_eq!(
        fake.source_urls(),
        [format!(
            "https://github.com/{REPOSITORY}/archive/{SHA}.tar.gz"
        )],
        "the archive on github.com, not the rate-limited API tarball"
    );
}

#[tokio::test]
async fn with_github_enterprise_the_archive_is_on_its_web_host() {
    let fake = FakeHeroku::start(Behaviour::succeeds()).await;
    let done = deploy_through_the_engine(&fake, |cfg| {
        cfg.github_api_url = "https://ghe.example.com/api/v3".to_string();
        cfg.clone_base = "https://ghe.example.com/".to_string();
    })
    .await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    assert_eq!(
        fake.source_urls(),
        [format!(
            "https://ghe.example.com/{REPOSITORY}/archive/{SHA}.tar.gz"
        )]
    );
}

#[tokio::test]
async fn a_clone_base_that_is_no_web_host_keeps_the_api_tarball() {
    let fake = FakeHeroku::start(Behaviour::succeeds()).await;
    let done = deploy_through_the_engine(&fake, |cfg| {
        cfg.github_api_url = "https://ghe.example.com/api/v3/".to_string();
        cfg.clone_base = "ssh://git@ghe.example.com".to_string();
    })
    .await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    assert_eq!(
        fake.source_urls(),
        [format!(
            "https://ghe.example.com/api/v3/repos/{REPOSITORY}/tarball/{SHA}"
        )]
    );
}

/// GitHub credentials: a short-lived link, as faseng's GitHub client gives.
#[derive(Debug)]
struct Credentials;

#[async_trait::async_trait]
impl SourceAccess for Credentials {
    async fn clone_auth(&self, _repository: &str) -> Result<Option<String>, String> {
        Ok(None)
    }

    async fn tarball_url(&self, repository: &str, sha: &str) -> Result<String, String> {
        Ok(format!(
            "https://codeload.github.com/{repository}/legacy.tar.gz/{sha}?token=SHORT"
        ))
    }
}

#[tokio::test]
async fn with_github_credentials_heroku_gets_the_short_lived_link() {
    let fake = FakeHeroku::start(Behaviour::succeeds()).await;
    let done =
        deploy_through_the_engine(&fake, |cfg| cfg.access = Some(Arc::new(Credentials))).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    assert_eq!(
        fake.source_urls(),
        [format!(
            "https://codeload.github.com/{REPOSITORY}/legacy.tar.gz/{SHA}?token=SHORT"
        )]
    );
}

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
