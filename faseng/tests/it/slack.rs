//! The whole chat path: the real chima on Socket Mode (fake Slack) creates the
//! GitHub deployment (fake GitHub); the real faseng runs it and reports in the
//! thread of the command: one message, then edits ending in the success text.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chima_testkit::github::{FakeGitHub, deployment_event, send_webhook};
use chima_testkit::slack::{self as fake_slack, FakeSlack, events_api_message};

use crate::harness::{Faseng, SECRET, repo};

/// chima is built next to faseng by `cargo test --workspace`.
pub fn chima_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_faseng")).with_file_name("chima");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p chima` first)",
        path.display()
    );
    path
}

struct Chima {
    _child: tokio::process::Child,
}

async fn start_chima(
    apps: &std::path::Path,
    gh: &FakeGitHub,
    slack: &FakeSlack,
    log: PathBuf,
) -> Chima {
    start_chima_with(apps, gh, slack, log, &[]).await
}

async fn start_chima_with(
    apps: &std::path::Path,
    gh: &FakeGitHub,
    slack: &FakeSlack,
    log: PathBuf,
    env: &[(&str, &str)],
) -> Chima {
    let child = tokio::process::Command::new(chima_binary())
        .envs(env.iter().copied())
        .env("APPS_JSON", apps)
        .env("SLACK_BOT_TOKEN", fake_slack::BOT_TOKEN)
        .env("SLACK_APP_TOKEN", fake_slack::APP_TOKEN)
        .env("SLACK_API_URL", &slack.url)
        .env("GITHUB_TOKEN", gh.token())
        .env("GITHUB_API_URL", &gh.url)
        .env("CHIMA_SIGNING_KEY", crate::harness::SIGNING_KEY)
        .env("RUST_LOG", "info")
        .env_remove("SLACK_SIGNING_SECRET")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    slack
        .wait_for(
            "chima's Socket Mode connection",
            Duration::from_secs(60),
            |s| s.live_connections() >= 1,
        )
        .await;
    Chima { _child: child }
}

async fn wait<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_deploy_typed_in_slack_runs_and_is_reported_in_its_thread() {
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    let slack = FakeSlack::start().await;
    let apps_json = r#"{"app": {"provider": "shell", "repository": "example/app",
        "environments": ["production", "staging"], "allowed_rooms": ["deploys"],
        "allowed_users": {"production": ["bob"]}}}"#;
    let f = Faseng::start_with(
        apps_json,
        Some((&gh.url, &gh.token())),
        &[
            ("SLACK_BOT_TOKEN", fake_slack::BOT_TOKEN),
            ("SLACK_API_URL", &slack.url),
        ],
    )
    .await;
    let apps = f.dir.path().join("app.json");
    let (path, sha) = repo(f.dir.path(), "#!/bin/sh\necho from slack\n");
    gh.set_ref("example/app", "main", &sha);
    let _chima = start_chima(&apps, &gh, &slack, f.dir.path().join("chima.log")).await;

    // A deploy from a room that is not allowed, and by a user who is not: refused, nothing on GitHub.
    slack.set_channel("C0RANDOM", "random");
    slack.push_event(events_api_message(
        "chima deploy app to staging",
        "C0RANDOM",
        "U0ALICE",
        "100.000",
        "Ev100",
        0,
    ));
    slack.push_event(events_api_message(
        "chima deploy app to production",
        "C0DEPLOYS",
        "U0ALICE",
        "100.001",
        "Ev101",
        0,
    ));
    wait("two refusals", || (slack.posted().len() >= 2).then_some(())).await;
    let posted = slack.posted();
    assert!(
        posted.iter().any(|p| p.channel == "C0RANDOM"
            && p.text
                .as_deref()
                .unwrap_or("")
                .contains("cannot be deployed from #random")),
        "{posted:#?}"
    );
    assert!(
        posted
            .iter()
            .any(|p| p.thread_ts.as_deref() == Some("100.001")
                && p.text
                    .as_deref()
                    .unwrap_or("")
                    .contains("alice is not allowed to deploy `app` to production")),
        "{posted:#?}"
    );
    assert!(gh.deployments("example/app").is_empty());

    // The deploy: a threaded reply, then the GitHub deployment.
    slack.push_event(events_api_message(
        "chima deploy app to staging",
        "C0DEPLOYS",
        "U0ALICE",
        "111.222",
        "Ev1",
        0,
    ));
    let created = wait("the GitHub deployment", || {
        gh.deployments("example/app").pop()
    })
    .await;
    wait("chima's reply", || {
        slack.posted().into_iter().find(|p| {
            p.thread_ts.as_deref() == Some("111.222")
                && p.text
                    .as_deref()
                    .unwrap_or("")
                    .contains("Created GitHub deployment")
        })
    })
    .await;
    assert_eq!(created.body["payload"]["notify"]["room"], "C0DEPLOYS");
    assert_eq!(created.body["payload"]["notify"]["thread_ts"], "111.222");
    assert_eq!(created.body["payload"]["notify"]["user_name"], "alice");

    // GitHub delivers the webhook to faseng.
    let body = deployment_event(
        "example/app",
        &path.to_string_lossy(),
        created.id,
        &sha,
        "main",
        "staging",
        "deploy",
        created.payload.clone(),
    );
    let (status, text) = send_webhook(
        &format!("{}/webhooks/github", f.url),
        "deployment",
        "slack-e2e",
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{text}");

    // One message in the thread, then edits ending in success.
    let last = wait("the success edit", || {
        slack
            .updated()
            .into_iter()
            .rev()
            .find(|u| u.text.as_deref().unwrap_or("").contains("was successful"))
    })
    .await;
    let faseng_posts: Vec<_> = slack
        .posted()
        .into_iter()
        .filter(|p| {
            p.thread_ts.as_deref() == Some("111.222")
                && p.text.as_deref().unwrap_or("").contains("'s deployment #")
        })
        .collect();
    assert_eq!(faseng_posts.len(), 1, "{faseng_posts:#?}");
    assert_eq!(last.ts, faseng_posts[0].ts);
    assert!(
        last.text
            .unwrap_or_default()
            .contains("alice's deployment #"),
        "{:#?}",
        slack.updated()
    );
    wait("the success status on GitHub", || {
        gh.status_states(created.id)
            .contains(&"success".to_string())
            .then_some(())
    })
    .await;

    // The websocket drops; chima reconnects and the next command still works.
    let before = slack.connections();
    slack.drop_connection();
    slack
        .wait_for("a reconnection", Duration::from_secs(60), |s| {
            s.connections() > before && s.live_connections() >= 1
        })
        .await;
    slack.push_event(events_api_message(
        "chima deploy:version",
        "C0DEPLOYS",
        "U0ALICE",
        "222.333",
        "Ev2",
        0,
    ));
    wait("the answer after reconnecting", || {
        slack.posted().into_iter().find(|p| {
            p.thread_ts.as_deref() == Some("222.333")
                && p.text.as_deref().unwrap_or("").contains("chima 0.")
        })
    })
    .await;
}

const API_TOKEN: &str = "api-token-for-slack-routes";

/// `/deploy` typed in a DM the bot is not in: chima answers through the command's
/// response_url and hands it to faseng's API (never in the GitHub payload); faseng's
/// messages for the deployment arrive there too, the success as an edit in place.
#[tokio::test]
async fn a_slash_command_from_a_dm_is_reported_at_its_response_url_by_faseng() {
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    let slack = FakeSlack::start().await;
    let dm = "D0ALICEDM";
    slack.set_channel_without_bot(dm, "alice-and-bob");
    let apps_json = r#"{"app": {"provider": "shell", "repository": "example/app",
        "environments": ["production", "staging"], "notify_room": "C0DEPLOYS"}}"#;
    let f = Faseng::start_with(
        apps_json,
        Some((&gh.url, &gh.token())),
        &[
            ("SLACK_BOT_TOKEN", fake_slack::BOT_TOKEN),
            ("SLACK_API_URL", &slack.url),
            ("FASENG_API_TOKEN", API_TOKEN),
        ],
    )
    .await;
    let apps = f.dir.path().join("app.json");
    let (path, sha) = repo(f.dir.path(), "#!/bin/sh\necho from a dm\n");
    gh.set_ref("example/app", "main", &sha);
    let log = f.dir.path().join("chima.log");
    let _chima = start_chima_with(
        &apps,
        &gh,
        &slack,
        log.clone(),
        &[("FASENG_URL", &f.url), ("FASENG_API_TOKEN", API_TOKEN)],
    )
    .await;

    slack.push_event(slack.slash_command("/deploy", "app to staging", dm, "U0ALICE"));
    let created = wait("the GitHub deployment", || {
        gh.deployments("example/app").pop()
    })
    .await;
    wait("chima's answer at the response_url", || {
        slack.responded().into_iter().find(|r| {
            r.text
                .as_deref()
                .unwrap_or("")
                .contains("Created GitHub deployment")
        })
    })
    .await;
    // The response_url is a credential for the DM: never in the payload, which anyone
    // who can read the repository can read.
    let payload = created.body.to_string();
    assert!(!payload.contains("/response/"), "{payload}");
    assert!(!payload.contains("response_url"), "{payload}");

    let body = deployment_event(
        "example/app",
        &path.to_string_lossy(),
        created.id,
        &sha,
        "main",
        "staging",
        "deploy",
        created.payload.clone(),
    );
    let (status, text) = send_webhook(
        &format!("{}/webhooks/github", f.url),
        "deployment",
        "slack-dm",
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{text}");

    let done = wait("the success at the response_url", || {
        let got = slack.responded();
        got.iter()
            .any(|r| r.text.as_deref().unwrap_or("").contains("was successful"))
            .then_some(got)
    })
    .await;
    let chima_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        done.iter().all(|r| r.channel == dm
            && r.url == 1
            && r.response_type.as_deref() == Some("in_channel")),
        "{done:#?}"
    );
    let deployment_messages: Vec<_> = done
        .iter()
        .filter(|r| r.text.as_deref().unwrap_or("").contains("'s deployment #"))
        .collect();
    assert!(
        !deployment_messages.is_empty() && !deployment_messages[0].replace_original,
        "the first message is new: {done:#?}\n{chima_log}\n{}",
        f.log()
    );
    if deployment_messages.len() > 1 {
        assert!(
            deployment_messages[1..].iter().all(|r| r.replace_original),
            "later ones replace it: {done:#?}"
        );
    }
    assert!(done.len() <= 5, "{done:#?}");
    // Nothing went through chat.postMessage (the bot is not in the DM).
    assert!(
        slack.calls("chat.postMessage").is_empty(),
        "{:#?}",
        slack.posted()
    );
}

/// The route API posts nowhere but Slack: a response_url on any other host is refused.
#[tokio::test]
async fn chat_routes_accept_only_slack_response_urls() {
    let slack = FakeSlack::start().await;
    let f = Faseng::start_with(
        r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["staging"]}}"#,
        None,
        &[
            ("SLACK_API_URL", &slack.url),
            ("FASENG_API_TOKEN", API_TOKEN),
        ],
    )
    .await;
    let auth = format!("Bearer {API_TOKEN}");
    let put = |url: String, body: serde_json::Value| {
        let auth = auth.clone();
        async move {
            chima_testkit::github::send_raw_put(
                &url,
                &[("authorization", &auth)],
                body.to_string().as_bytes(),
            )
            .await
        }
    };
    let route = format!("{}/api/chat-routes/github%3A42", f.url);
    for bad in [
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "https://hooks.slack.com.evil.example/commands/1".to_owned(),
        "http://hooks.slack.com/commands/1".to_owned(),
        "https://evil.example/hooks.slack.com".to_owned(),
    ] {
        let (status, text) = put(
            route.clone(),
            serde_json::json!({"response_url": bad, "expires_in_secs": 1800, "uses_left": 4}),
        )
        .await;
        assert_eq!(status, 422, "{bad}: {text}");
    }
    for (expires, uses) in [(0, 4), (3600, 4), (1800, 6), (1800, -1)] {
        let (status, text) = put(
            route.clone(),
            serde_json::json!({"response_url": "https://hooks.slack.com/commands/T1/2/x",
                "expires_in_secs": expires, "uses_left": uses}),
        )
        .await;
        assert_eq!(status, 422, "{expires}/{uses}: {text}");
    }
    for good in [
        "https://hooks.slack.com/commands/T1/2/x".to_owned(),
        slack.response_url_for("C0DEPLOYS"),
    ] {
        let (status, text) = put(
            route.clone(),
            serde_json::json!({"response_url": good, "expires_in_secs": 1800, "uses_left": 4}),
        )
        .await;
        assert_eq!(status, 200, "{good}: {text}");
    }
    // Without the token: 401.
    let (status, _) = chima_testkit::github::send_raw_put(
        &route,
        &[],
        br#"{"response_url": "https://hooks.slack.com/commands/T1/2/x", "expires_in_secs": 1800, "uses_left": 4}"#,
    )
    .await;
    assert_eq!(status, 401);
}
