//! The status deliverer end to end, run by the outbox loop: a real SQLite store, the real
//! client, the fake GitHub.

use std::sync::Arc;
use std::time::Duration;

use chima_github::{CreateOutcome, GitHub, StatusDeliverer};
use chima_outbox::OutboxOptions;
use chima_store::{NewDeployment, Outcome, Store};
use chima_testkit::github::{Endpoint, FakeGitHub, Reply};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::harness::{REPO, body, client, eventually, fake};

const WAIT: Duration = Duration::from_secs(60);

struct Running {
    store: Arc<dyn Store>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).expect("sender alive");
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the sender stops on shutdown")
            .expect("no panic");
        self.store.close().await;
    }
}

async fn start(gh: GitHub) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("faseng.db").display());
    let store = chima_store::open(&url).await.expect("sqlite store");
    let (stop, shutdown) = watch::channel(false);
    let log_url: Arc<dyn Fn(i64) -> String + Send + Sync> =
        Arc::new(|id| format!("http://faseng.test/deployments/{id}"));
    let options = OutboxOptions {
        poll_interval: Duration::from_millis(50),
        base_backoff: Duration::from_millis(200),
        ..OutboxOptions::default()
    };
    let task = tokio::spawn(chima_outbox::run(
        store.clone(),
        Arc::new(StatusDeliverer::new(gh, log_url)),
        shutdown,
        options,
    ));
    Running {
        store,
        stop,
        task,
        _dir: dir,
    }
}

async fn github_deployment(fake: &FakeGitHub, environment: &str) -> i64 {
    let mut b = body("topic");
    b.environment = environment.to_string();
    match client(fake)
        .create_deployment(REPO, &b)
        .await
        .expect("created")
    {
        CreateOutcome::Created { id, .. } => id,
        other => panic!("{other:?}"),
    }
}

fn new_deployment(environment: &str, github_id: Option<i64>) -> NewDeployment {
    NewDeployment {
        source_key: format!("test-{environment}-{github_id:?}"),
        requester: "alice".to_string(),
        app: "web".to_string(),
        environment: environment.to_string(),
        repository: REPO.to_string(),
        git_ref: "topic".to_string(),
        sha: None,
        task: "deploy".to_string(),
        hosts: None,
        provider: "shell".to_string(),
        payload: json!({
            "config": {
                "provider": "shell",
                "production_url": "https://web.example.com",
                "environments": ["production", {"name": "review", "auto_inactive": false}],
            }
        }),
        github_deployment_id: github_id,
        notify: vec!["github".to_string()],
        timeout_secs: None,
    }
}

/// Claims the next deployment and checks it is `id`.
async fn claim(store: &dyn Store, id: i64) {
    let claimed = store
        .claim("worker-1", Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("something to claim");
    assert_eq!(claimed.id, id);
}

async fn all_delivered(store: &dyn Store, id: i64) -> bool {
    let events = store.outbox_for_deployment(id).await.expect("outbox");
    !events.is_empty() && events.iter().all(|e| e.delivered_at.is_some())
}

#[tokio::test]
async fn state_changes_become_statuses_in_order() {
    let fake = fake().await;
    let gh_id = github_deployment(&fake, "production").await;
    let running = start(client(&fake)).await;
    let store = running.store.clone();

    let created = store
        .create_deployment(new_deployment("production", Some(gh_id)))
        .await
        .expect("create");
    let id = created.deployment.id;
    eventually(WAIT, "the queued status", || async {
        fake.status_states(gh_id) == ["queued"]
    })
    .await;

    claim(&*store, id).await;
    eventually(WAIT, "the in_progress status", || async {
        fake.status_states(gh_id).len() == 2
    })
    .await;
    store
        .finish(id, "worker-1", Outcome::succeeded(0))
        .await
        .expect("finish");
    eventually(WAIT, "all events delivered", || async {
        all_delivered(&*store, id).await && fake.status_states(gh_id).len() == 3
    })
    .await;

    let statuses = fake.statuses(gh_id);
    assert_eq!(
        fake.status_states(gh_id),
        ["queued", "in_progress", "success"]
    );
    let log_url = format!("http://faseng.test/deployments/{id}");
    for s in &statuses {
        assert_eq!(s.log_url.as_deref(), Some(log_url.as_str()), "{}", s.state);
        assert_eq!(
            s.environment_url.as_deref(),
            Some("https://web.example.com"),
            "{}",
            s.state
        );
    }
    let finished = store
        .get_deployment(id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        statuses[2].description.as_deref(),
        finished.reason.as_deref(),
        "the success carries the deployment's reason"
    );
    assert_eq!(
        statuses[2].auto_inactive, None,
        "production does not set it"
    );
    running.stop().await;
}

#[tokio::test]
async fn failures_and_cancels_map_to_failure_and_error() {
    let fake = fake().await;
    let failing = github_deployment(&fake, "production").await;
    let cancelled = github_deployment(&fake, "review").await;
    let running = start(client(&fake)).await;
    let store = running.store.clone();

    let a = store
        .create_deployment(new_deployment("production", Some(failing)))
        .await
        .expect("create")
        .deployment
        .id;
    let b = store
        .create_deployment(new_deployment("review", Some(cancelled)))
        .await
        .expect("create")
        .deployment
        .id;
    claim(&*store, a).await;
    let long_reason = format!("script/deploy exited with 3: {}", "e".repeat(300));
    store
        .finish(a, "worker-1", Outcome::failed(Some(3), long_reason))
        .await
        .expect("finish a");
    store.request_cancel(b, "bob").await.expect("cancel b");

    eventually(WAIT, "both delivered", || async {
        all_delivered(&*store, a).await && all_delivered(&*store, b).await
    })
    .await;
    assert_eq!(
        fake.status_states(failing),
        ["queued", "in_progress", "failure"]
    );
    assert_eq!(fake.status_states(cancelled), ["queued", "error"]);
    let failure = fake.statuses(failing).pop().expect("failure");
    let description = failure.description.expect("the reason");
    assert_eq!(description.chars().count(), 140, "cut to GitHub's limit");
    assert!(
        description.starts_with("script/deploy exited with 3"),
        "{description}"
    );
    let cancel = fake.statuses(cancelled).pop().expect("error");
    assert!(cancel.environment_url.is_none(), "review has no url");
    running.stop().await;
}

#[tokio::test]
async fn deployments_not_on_github_get_no_status() {
    let fake = fake().await;
    let running = start(client(&fake)).await;
    let store = running.store.clone();
    let id = store
        .create_deployment(new_deployment("production", None))
        .await
        .expect("create")
        .deployment
        .id;
    eventually(WAIT, "the event is closed", || async {
        all_delivered(&*store, id).await
    })
    .await;
    assert!(fake.requests_to("POST", "/repos/").is_empty());
    running.stop().await;
}

/// Creates, claims and finishes (succeeded) a deployment in `environment`.
async fn run_through(store: &dyn Store, environment: &str, github_id: i64) -> i64 {
    let id = store
        .create_deployment(new_deployment(environment, Some(github_id)))
        .await
        .expect("create")
        .deployment
        .id;
    claim(store, id).await;
    store
        .finish(id, "worker-1", Outcome::succeeded(0))
        .await
        .expect("finish");
    id
}

#[tokio::test]
async fn failing_posts_are_delivered_later_in_order() {
    let fake = fake().await;
    let gh_id = github_deployment(&fake, "production").await;
    // Five failures: more than one round of the client's three attempts.
    fake.fail_statuses_of(gh_id, 5, 502);
    let running = start(client(&fake)).await;
    let store = running.store.clone();
    let id = run_through(&*store, "production", gh_id).await;

    eventually(WAIT, "all statuses delivered", || async {
        all_delivered(&*store, id).await
    })
    .await;
    assert_eq!(
        fake.status_states(gh_id),
        ["queued", "in_progress", "success"]
    );
    let attempts = fake
        .requests_to(
            "POST",
            &format!("/repos/acme/web/deployments/{gh_id}/statuses"),
        )
        .len();
    assert_eq!(attempts, 5 + 3, "five failures, then three statuses");
    let events = store.outbox_for_deployment(id).await.expect("outbox");
    assert!(events[0].attempts >= 1, "the first event was rescheduled");
    assert!(
        events[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("502"),
        "{:?}",
        events[0].last_error
    );
    assert_eq!(events[1].attempts, 0, "later events went through at once");
    running.stop().await;
}

#[tokio::test]
async fn a_failing_deployment_does_not_block_the_others() {
    let fake = fake().await;
    let stuck = github_deployment(&fake, "production").await;
    let other = github_deployment(&fake, "review").await;
    // Every status post to the first deployment fails until told otherwise.
    fake.fail_statuses_of(stuck, u32::MAX, 503);
    let running = start(client(&fake)).await;
    let store = running.store.clone();
    let a = run_through(&*store, "production", stuck).await;
    let b = run_through(&*store, "review", other).await;

    eventually(WAIT, "the other deployment's statuses", || async {
        all_delivered(&*store, b).await
    })
    .await;
    assert_eq!(
        fake.status_states(other),
        ["queued", "in_progress", "success"]
    );
    assert!(fake.status_states(stuck).is_empty());
    assert!(!all_delivered(&*store, a).await);

    // GitHub recovers: the stuck deployment's statuses follow, in order.
    fake.clear_scripts();
    eventually(WAIT, "the stuck deployment's statuses", || async {
        all_delivered(&*store, a).await
    })
    .await;
    assert_eq!(
        fake.status_states(stuck),
        ["queued", "in_progress", "success"]
    );
    running.stop().await;
}

#[tokio::test]
async fn refusals_are_dropped_and_401_is_retried() {
    let fake = fake().await;
    let gh_id = github_deployment(&fake, "production").await;
    // The queued status is refused for good (422); the in_progress one meets a 401
    // once (a token being rotated) and goes through on the retry.
    fake.script(Endpoint::CreateStatus, Reply::Status(422), 1);
    let running = start(client(&fake)).await;
    let store = running.store.clone();
    let id = store
        .create_deployment(new_deployment("production", Some(gh_id)))
        .await
        .expect("create")
        .deployment
        .id;
    eventually(WAIT, "the queued event closed", || async {
        store
            .outbox_for_deployment(id)
            .await
            .expect("outbox")
            .first()
            .is_some_and(|e| e.delivered_at.is_some())
    })
    .await;
    let queued = &store.outbox_for_deployment(id).await.expect("outbox")[0];
    assert!(
        queued
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("422"),
        "the refusal is kept: {:?}",
        queued.last_error
    );
    assert!(fake.status_states(gh_id).is_empty());

    fake.script(Endpoint::CreateStatus, Reply::Unauthorized, 1);
    claim(&*store, id).await;
    eventually(WAIT, "in_progress after the 401", || async {
        fake.status_states(gh_id) == ["in_progress"] && all_delivered(&*store, id).await
    })
    .await;
    let events = store.outbox_for_deployment(id).await.expect("outbox");
    assert_eq!(
        events[1].attempts, 1,
        "one failed attempt (401), then delivered"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_rate_limit_reschedules_for_its_reset() {
    let fake = fake().await;
    let gh_id = github_deployment(&fake, "production").await;
    fake.script(
        Endpoint::CreateStatus,
        Reply::RateLimited {
            reset_in_secs: 3600,
        },
        1,
    );
    let running = start(client(&fake)).await;
    let store = running.store.clone();
    let id = store
        .create_deployment(new_deployment("production", Some(gh_id)))
        .await
        .expect("create")
        .deployment
        .id;
    eventually(WAIT, "the event rescheduled", || async {
        store
            .outbox_for_deployment(id)
            .await
            .expect("outbox")
            .first()
            .is_some_and(|e| e.attempts == 1)
    })
    .await;
    let event = &store.outbox_for_deployment(id).await.expect("outbox")[0];
    assert!(event.delivered_at.is_none());
    let wait = event.due_at - chrono::Utc::now();
    assert!(
        wait > chrono::Duration::minutes(55),
        "due at the reset, an hour away: {wait}"
    );
    assert!(
        event
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("rate limit"),
        "{:?}",
        event.last_error
    );
    running.stop().await;
}
