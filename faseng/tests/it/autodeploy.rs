//! Auto-deploy on green CI against the fake GitHub: the happy path, every
//! "never when", and a burst of green events to two faseng processes.

use std::process::Stdio;
use std::time::Duration;

use chima_testkit::github::{FakeCheckRun, FakeGitHub, FakeStatus, deployment_event, send_webhook};
use chima_testkit::slack::{self as fake_slack, FakeSlack};
use serde_json::{Value, json};

use crate::harness::{Faseng, SECRET, get, hand_listener, repo};

const APPS: &str = r#"{"app": {"provider": "shell", "repository": "example/app",
    "environments": ["staging", "production"], "notify_room": "C0DEPLOYS",
    "auto_deploy": {"staging": {"ref": "main", "required_contexts": ["ci/build", "test"]}}}}"#;

const SHA: [&str; 8] = [
    "1111111111111111111111111111111111111111",
    "2222222222222222222222222222222222222222",
    "3333333333333333333333333333333333333333",
    "4444444444444444444444444444444444444444",
    "5555555555555555555555555555555555555555",
    "6666666666666666666666666666666666666666",
    "7777777777777777777777777777777777777777",
    "8888888888888888888888888888888888888888",
];

fn status_event(sha: &str, context: &str, state: &str) -> Value {
    json!({
        "id": 1, "sha": sha, "name": "example/app", "target_url": null,
        "context": context, "description": null, "state": state,
        "branches": [{"name": "main", "commit": {"sha": sha}}],
        "repository": {"full_name": "example/app", "name": "app"},
        "sender": {"login": "ci"}
    })
}

fn push_event(sha: &str) -> Value {
    json!({"ref": "refs/heads/main", "before": "0000000000000000000000000000000000000001", "after": sha,
           "repository": {"full_name": "example/app", "name": "app"}, "sender": {"login": "dev"}})
}

fn check_suite_event(sha: &str) -> Value {
    json!({"action": "completed", "check_suite": {"head_sha": sha, "head_branch": "main", "status": "completed", "conclusion": "success"},
           "repository": {"full_name": "example/app", "name": "app"}, "sender": {"login": "ci"}})
}

struct Rig {
    gh: FakeGitHub,
    slack: FakeSlack,
    f: Faseng,
    n: std::sync::atomic::AtomicU32,
}

impl Rig {
    async fn start() -> Rig {
        let gh = FakeGitHub::start().await;
        gh.add_repo("example/app", "main");
        let slack = FakeSlack::start().await;
        let f = Faseng::start_with(
            APPS,
            Some((&gh.url, &gh.token())),
            &[
                ("SLACK_BOT_TOKEN", fake_slack::BOT_TOKEN),
                ("SLACK_API_URL", &slack.url),
                ("FASENG_API_TOKEN", "auto-token-for-tests"),
            ],
        )
        .await;
        Rig {
            gh,
            slack,
            f,
            n: 0.into(),
        }
    }

    /// Sends an event with a fresh delivery id; returns the HTTP status.
    async fn send(&self, event: &str, body: &Value) -> u16 {
        let n = self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        send_webhook(
            &format!("{}/webhooks/github", self.f.url),
            event,
            &format!("ad-{n}"),
            SECRET.as_bytes(),
            body.to_string().as_bytes(),
        )
        .await
        .0
    }

    fn green(&self, sha: &str) {
        self.gh.set_ref("example/app", "main", sha);
        self.gh.set_commit_statuses(
            "example/app",
            "main",
            vec![FakeStatus::new("ci/build", "success")],
        );
        self.gh.set_check_runs(
            "example/app",
            "main",
            vec![FakeCheckRun::new("test", "completed", Some("success"))],
        );
    }

    /// chima in GitHub mode with faseng's API, as `user`.
    async fn chima(&self, user: &str, line: &str) -> String {
        let out = tokio::process::Command::new(crate::slack::chima_binary())
            .env("APPS_JSON", self.f.dir.path().join("app.json"))
            .env("GITHUB_TOKEN", self.gh.token())
            .env("GITHUB_API_URL", &self.gh.url)
            .env("FASENG_URL", &self.f.url)
            .env("FASENG_API_TOKEN", "auto-token-for-tests")
            .env("USER", user)
            .env_remove("SLACK_BOT_TOKEN")
            .args(["run", line])
            .output()
            .await
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn deployments(&self) -> Vec<chima_testkit::github::FakeDeployment> {
        self.gh.deployments("example/app")
    }

    /// Sends `body` and checks that nothing is deployed (the decision is made
    /// after the answer, so give it time).
    async fn nothing_after(&self, event: &str, body: &Value) {
        let before = self.deployments().len();
        assert_eq!(self.send(event, body).await, 202);
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            self.deployments().len(),
            before,
            "{event} {body} deployed: {:#?}",
            self.deployments()
        );
    }

    async fn one_more_after(
        &self,
        event: &str,
        body: &Value,
    ) -> chima_testkit::github::FakeDeployment {
        let before = self.deployments().len();
        assert_eq!(self.send(event, body).await, 202);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let all = self.deployments();
            if all.len() > before {
                assert_eq!(all.len(), before + 1, "{all:#?}");
                return all.last().cloned().unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no auto-deploy: {}",
                self.f.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn green_ci_deploys_the_head_once_and_it_runs() {
    let r = Rig::start().await;
    let (path, sha) = repo(r.f.dir.path(), "#!/bin/sh\necho auto\n");
    r.gh.set_ref("example/app", "main", &sha);
    // The push, then statuses one by one: only the last green one deploys.
    r.nothing_after("push", &push_event(&sha)).await;
    r.gh.set_commit_statuses(
        "example/app",
        "main",
        vec![FakeStatus::new("ci/build", "success")],
    );
    r.nothing_after("status", &status_event(&sha, "ci/build", "success"))
        .await;
    r.gh.set_check_runs(
        "example/app",
        "main",
        vec![FakeCheckRun::new("test", "in_progress", None)],
    );
    r.nothing_after("check_suite", &check_suite_event(&sha))
        .await;
    r.gh.set_check_runs(
        "example/app",
        "main",
        vec![FakeCheckRun::new("test", "completed", Some("success"))],
    );
    let d = r
        .one_more_after("check_suite", &check_suite_event(&sha))
        .await;
    assert_eq!(d.sha, sha);
    assert_eq!(d.environment, "staging");
    assert_eq!(d.body["description"], "auto-deploy");
    assert_eq!(d.body["auto_merge"], false);
    assert_eq!(
        d.body["payload"]["auto_deploy"]["contexts"],
        json!(["ci/build", "test"])
    );
    assert_eq!(d.body["payload"]["notify"]["room"], "C0DEPLOYS");
    // More green events for the same sha: still one.
    r.nothing_after("status", &status_event(&sha, "ci/build", "success"))
        .await;

    // GitHub delivers the deployment; it runs and reports like any other.
    let body = deployment_event(
        "example/app",
        &path.to_string_lossy(),
        d.id,
        &sha,
        &sha,
        "staging",
        "deploy",
        d.payload.clone(),
    );
    assert_eq!(r.send("deployment", &body).await, 201);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !r.gh.status_states(d.id).contains(&"success".to_string()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?} {}",
            r.gh.status_states(d.id),
            r.f.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // In chat: marked as an auto-deploy, with the sha and the contexts.
    let t = r.chima("alice", "chima deploys app in staging").await;
    assert!(t.contains(&format!("({}", &sha[..7])), "{t}");
    assert!(t.contains("[auto-deploy: ci/build, test green]"), "{t}");
    let t = r.chima("alice", "chima autodeploy app").await;
    assert!(t.contains(&format!("staging: auto-deploy on, deploys the head of main when ci/build, test are green; last shipped {}", &sha[..7])), "{t}");
}

#[tokio::test]
async fn autodeploy_is_paused_and_resumed_from_chat() {
    let r = Rig::start().await;
    let t = r
        .chima("alice", "chima autodeploy app in staging off flaky tests")
        .await;
    assert!(
        t.contains("Auto-deploy of app to staging is off: flaky tests."),
        "{t}"
    );
    let t = r.chima("bob", "chima where can i deploy app").await;
    assert!(
        t.contains("staging: auto-deploy off (paused by alice: flaky tests)"),
        "{t}"
    );
    // The index page shows it too.
    let index = crate::pages::links::LinkSigner::new(b"auto-token-for-tests").index_url(&r.f.url);
    let (code, page) = get(&index).await;
    assert_eq!(code, 200);
    assert!(
        page.contains("auto-deploy paused by alice: flaky tests"),
        "{page}"
    );
    r.green(SHA[6]);
    r.nothing_after("status", &status_event(SHA[6], "ci/build", "success"))
        .await;
    let t = r.chima("bob", "chima autodeploy app in staging on").await;
    assert!(t.contains("is on again (it was paused by alice)"), "{t}");
    let t = r
        .chima("bob", "chima autodeploy app in production off")
        .await;
    assert!(t.contains("has no auto-deploy for production"), "{t}");
    r.one_more_after("status", &status_event(SHA[6], "ci/build", "success"))
        .await;
}

#[tokio::test]
async fn never_when_red_pending_not_head_behind_paused_or_locked() {
    let r = Rig::start().await;
    // A required context failed.
    r.gh.set_ref("example/app", "main", SHA[0]);
    r.gh.set_commit_statuses(
        "example/app",
        "main",
        vec![FakeStatus::new("ci/build", "failure")],
    );
    r.gh.set_check_runs(
        "example/app",
        "main",
        vec![FakeCheckRun::new("test", "completed", Some("success"))],
    );
    r.nothing_after("status", &status_event(SHA[0], "ci/build", "failure"))
        .await;
    // Pending.
    r.gh.set_commit_statuses(
        "example/app",
        "main",
        vec![FakeStatus::new("ci/build", "pending")],
    );
    r.nothing_after("status", &status_event(SHA[0], "ci/build", "pending"))
        .await;
    // Green, but the event's sha is not the head of main.
    r.green(SHA[1]);
    r.nothing_after("status", &status_event(SHA[2], "ci/build", "success"))
        .await;
    // Another branch.
    let mut other = status_event(SHA[1], "ci/build", "success");
    other["branches"] = json!([{"name": "feature"}]);
    r.nothing_after("status", &other).await;
    // The first real one.
    let first = r
        .one_more_after("status", &status_event(SHA[1], "ci/build", "success"))
        .await;
    assert_eq!(first.sha, SHA[1]);
    // A sha behind the last deployed one.
    r.green(SHA[3]);
    r.gh.set_compare("example/app", SHA[1], SHA[3], "behind");
    r.nothing_after("status", &status_event(SHA[3], "ci/build", "success"))
        .await;
    // Paused, then resumed.
    r.green(SHA[4]);
    r.f.store
        .pause_auto_deploy("app", "staging", "alice", Some("incident"))
        .await
        .unwrap();
    r.nothing_after("status", &status_event(SHA[4], "ci/build", "success"))
        .await;
    r.f.store
        .resume_auto_deploy("app", "staging")
        .await
        .unwrap();
    let d = r
        .one_more_after("status", &status_event(SHA[4], "ci/build", "success"))
        .await;
    assert_eq!(d.sha, SHA[4]);
    // Locked: nothing, and the channel is told once per sha.
    r.green(SHA[5]);
    r.f.store
        .lock("app", "staging", "bob", Some("db migration"), None)
        .await
        .unwrap();
    r.nothing_after("status", &status_event(SHA[5], "ci/build", "success"))
        .await;
    r.nothing_after("check_suite", &check_suite_event(SHA[5]))
        .await;
    let notices: Vec<_> = r
        .slack
        .posted()
        .into_iter()
        .filter(|p| {
            p.text
                .as_deref()
                .unwrap_or("")
                .contains("Not auto-deploying")
        })
        .collect();
    assert_eq!(notices.len(), 1, "{notices:#?}");
    assert_eq!(notices[0].channel, "C0DEPLOYS");
    assert!(
        notices[0]
            .text
            .as_deref()
            .unwrap_or("")
            .contains("staging is locked by bob: db migration")
    );
    // A redelivered event is considered once (200, not 202).
    let body = status_event(SHA[5], "ci/build", "success");
    let (s1, _) = send_webhook(
        &format!("{}/webhooks/github", r.f.url),
        "status",
        "same",
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    let (s2, _) = send_webhook(
        &format!("{}/webhooks/github", r.f.url),
        "status",
        "same",
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!((s1, s2), (202, 200));
}

#[tokio::test]
async fn a_burst_to_two_faseng_processes_makes_one_deployment() {
    let r = Rig::start().await;
    r.green(SHA[7]);
    // A second faseng on the same database.
    let mut second_cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_faseng"));
    let (port, listener) = hand_listener(&mut second_cmd);
    let _second = second_cmd
        .env("DATABASE_URL", r.f.database_url())
        .env("APPS_JSON", r.f.dir.path().join("app.json"))
        .env("FASENG_LISTEN", format!("127.0.0.1:{port}"))
        .env("FASENG_WORKERS", "0")
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GITHUB_TOKEN", r.gh.token())
        .env("GITHUB_API_URL", &r.gh.url)
        .env_remove("SLACK_BOT_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    drop(listener);
    let second = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while get(&format!("{second}/healthz")).await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "second faseng did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sends = Vec::new();
    for i in 0..20 {
        let target = if i % 2 == 0 {
            r.f.url.clone()
        } else {
            second.clone()
        };
        let (event, body) = if i % 3 == 0 {
            ("check_suite", check_suite_event(SHA[7]))
        } else {
            ("status", status_event(SHA[7], "ci/build", "success"))
        };
        sends.push(tokio::spawn(async move {
            send_webhook(
                &format!("{target}/webhooks/github"),
                event,
                &format!("burst-{i}"),
                SECRET.as_bytes(),
                body.to_string().as_bytes(),
            )
            .await
            .0
        }));
    }
    for s in sends {
        assert_eq!(s.await.unwrap(), 202);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while r.deployments().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no deployment: {}",
            r.f.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(r.deployments().len(), 1, "{:#?}", r.deployments());
}

/// chima in GitHub mode with faseng's API and the signing key faseng checks, as `user`.
async fn signed_chima(r: &Rig, user: &str, line: &str) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(crate::slack::chima_binary())
        .env("APPS_JSON", r.f.dir.path().join("app.json"))
        .env("GITHUB_TOKEN", r.gh.token())
        .env("GITHUB_API_URL", &r.gh.url)
        .env("FASENG_URL", &r.f.url)
        .env("FASENG_API_TOKEN", "auto-token-for-tests")
        .env("CHIMA_SIGNING_KEY", crate::harness::SIGNING_KEY)
        .env("USER", user)
        .env_remove("SLACK_BOT_TOKEN")
        .args(["run", line])
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A freeze placed from chat (GitHub mode: through faseng's API) blocks chat deploys
/// before anything is created and holds an auto-deploy without spending its claim,
/// says who froze and why in the channel once, shows in `where`, and once lifted the
/// same sha ships at its next green event.
#[tokio::test]
async fn a_freeze_blocks_chat_and_auto_deploy_and_the_sha_ships_once_lifted() {
    let r = Rig::start().await;
    let (code, t) = signed_chima(
        &r,
        "alice",
        "chima freeze app in staging for 1h release day",
    )
    .await;
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("Froze app in staging until today")
            || t.contains("Froze app in staging until tomorrow"),
        "{t}"
    );
    assert!(t.contains(" UTC: release day."), "{t}");
    let frozen = r.f.store.freezes_of("app", "staging").await.unwrap();
    assert_eq!(frozen.len(), 1);
    assert_eq!(frozen[0].frozen_by, "alice");
    assert_eq!(frozen[0].frozen_by_id.as_deref(), Some("chat:alice"));

    // Auto-deploy: nothing, the channel told once, the claim not taken.
    r.green(SHA[7]);
    r.nothing_after("status", &status_event(SHA[7], "ci/build", "success"))
        .await;
    r.nothing_after("check_suite", &check_suite_event(SHA[7]))
        .await;
    let notices: Vec<_> = r
        .slack
        .posted()
        .into_iter()
        .filter(|p| {
            p.text
                .as_deref()
                .unwrap_or("")
                .contains("Not auto-deploying")
        })
        .collect();
    assert_eq!(notices.len(), 1, "{notices:#?}");
    assert_eq!(notices[0].channel, "C0DEPLOYS");
    let notice = notices[0].text.clone().unwrap_or_default();
    assert!(
        notice.contains("staging is frozen by alice until"),
        "{notice}"
    );
    assert!(notice.contains("release day"), "{notice}");
    assert_eq!(
        r.f.store.last_auto_deploy("app", "staging").await.unwrap(),
        None
    );

    // Chat: refused before GitHub is asked, with who, until when and why.
    let (code, t) = signed_chima(&r, "bob", "chima deploy app to staging").await;
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains("staging is frozen by alice until"), "{t}");
    assert!(t.contains("release day. Nothing was deployed."), "{t}");
    assert!(t.contains("`deploy!! app to staging <reason>`"), "{t}");
    assert!(r.deployments().is_empty(), "{:#?}", r.deployments());
    let (_, t) = signed_chima(&r, "bob", "chima where can i deploy app").await;
    assert!(t.contains("frozen by alice until"), "{t}");

    // Lifted: the same sha ships at its next green event.
    let (code, t) = signed_chima(&r, "bob", "chima unfreeze app in staging").await;
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("Lifted the freeze of app in staging (frozen by alice: release day); alice, your freeze was lifted by bob."), "{t}");
    let d = r
        .one_more_after("status", &status_event(SHA[7], "ci/build", "success"))
        .await;
    assert_eq!(d.sha, SHA[7]);
}

/// Break-glass in GitHub mode: chima signs the emergency with the request, faseng runs
/// the deployment through a freeze, records the reason in its notes, marks it on the
/// page and in `deploys`, and announces it in the app's notify_room. The same payload
/// without chima's signature (a `_faseng.emergency` written by the sender) passes
/// nothing.
#[tokio::test]
async fn break_glass_passes_a_freeze_only_through_chimas_signed_request() {
    let r = Rig::start().await;
    let (path, sha) = repo(r.f.dir.path(), "#!/bin/sh\necho hotfix shipped\n");
    r.gh.set_ref("example/app", "main", &sha);
    r.f.store
        .freeze(
            "*",
            "*",
            "carol",
            Some("chat:carol"),
            Some("year-end freeze"),
            chrono::Utc::now() + chrono::Duration::days(3),
        )
        .await
        .unwrap();
    let (code, t) = signed_chima(
        &r,
        "alice",
        "chima deploy!! app to staging payments are down",
    )
    .await;
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("Break-glass by alice: payments are down. It passes: staging is frozen (every app, every environment) by carol"), "{t}");
    let d = r.deployments().pop().expect("a GitHub deployment");
    assert_eq!(
        d.body["payload"]["chima"]["request"]["emergency"],
        "payments are down"
    );
    // It forces, as `deploy!` does.
    assert_eq!(d.body["auto_merge"], false);
    let body = deployment_event(
        "example/app",
        &path.to_string_lossy(),
        d.id,
        &sha,
        "main",
        "staging",
        "deploy",
        d.payload.clone(),
    );
    assert_eq!(r.send("deployment", &body).await, 201);
    let stored = r.f.store.find_by_github_id(d.id).await.unwrap().unwrap();
    let done = r.f.wait_done(stored.id).await;
    assert_eq!(
        done.state,
        chima_store::DeploymentState::Succeeded,
        "{:?} {}",
        done.reason,
        r.f.log()
    );
    assert_eq!(done.payload["_faseng"]["emergency"], "payments are down");
    let log = r.f.store.read_logs(done.id, 0, 100).await.unwrap();
    assert!(
        log.iter().any(|l| l
            .line
            .contains("==> break-glass by alice: payments are down; it passes: staging is frozen")),
        "{log:#?}"
    );
    // Announced in the notify_room, marked in the thread's message, on the page and in
    // `deploys`.
    r.slack
        .wait_for("the announcement", Duration::from_secs(30), |s| {
            s.posted().iter().any(|p| {
                p.channel == "C0DEPLOYS"
                    && p.text.as_deref().unwrap_or("").contains("EMERGENCY")
                    && p.text
                        .as_deref()
                        .unwrap_or("")
                        .contains("payments are down")
            })
        })
        .await;
    let page_url =
        crate::pages::links::LinkSigner::new(b"auto-token-for-tests").url(&r.f.url, done.id);
    let (code, page) = get(&page_url).await;
    assert_eq!(code, 200);
    assert!(page.contains("EMERGENCY (break-glass)"), "{page}");
    assert!(page.contains("Reason: payments are down"), "{page}");
    let (_, t) = signed_chima(&r, "bob", "chima deploys app").await;
    assert!(
        t.contains("[EMERGENCY (break-glass): payments are down]"),
        "{t}"
    );

    // The same payload, its signed request removed and `_faseng.emergency` forged:
    // it counts as its GitHub creator and the freeze stops it.
    let mut forged = d.payload.clone();
    forged.as_object_mut().unwrap().remove("chima");
    forged["_faseng"] = json!({"identity": {"source": "trusted", "chat_user_name": "alice"}, "emergency": "forged"});
    let body = deployment_event(
        "example/app",
        &path.to_string_lossy(),
        d.id + 1000,
        &sha,
        "main",
        "staging",
        "deploy",
        forged,
    );
    assert_eq!(r.send("deployment", &body).await, 201);
    let stored =
        r.f.store
            .find_by_github_id(d.id + 1000)
            .await
            .unwrap()
            .unwrap();
    let done = r.f.wait_done(stored.id).await;
    assert_eq!(done.state, chima_store::DeploymentState::Errored);
    let why = done.reason.unwrap_or_default();
    assert!(
        why.contains("staging is frozen (every app, every environment) by carol until"),
        "{why}"
    );
    assert!(why.contains("year-end freeze; nothing was run"), "{why}");
}

/// A dry run (`deploy:noop`, issue 18) made through chima in GitHub mode is a GitHub
/// deployment of task `deploy:noop` that never auto-merges; auto-deploy does not take
/// its commit for deployed and still ships it when CI is green.
#[tokio::test]
async fn a_dry_run_from_chat_is_no_deploy_for_auto_deploy() {
    let r = Rig::start().await;
    let (_path, sha) = repo(r.f.dir.path(), "#!/bin/sh\necho auto\n");
    r.green(&sha);
    let t = r
        .chima("alice", "chima deploy:noop app/main to staging")
        .await;
    assert!(
        t.contains("for a dry run of app/main to staging") && t.contains("nothing will change"),
        "{t}"
    );
    let dry = r
        .deployments()
        .pop()
        .expect("the dry run's GitHub deployment");
    assert_eq!(dry.task, "deploy:noop");
    assert_eq!(dry.sha, sha);
    assert_eq!(dry.body["auto_merge"], false);
    // CI turns green for that very commit: auto-deploy ships it all the same.
    let d = r
        .one_more_after("check_suite", &check_suite_event(&sha))
        .await;
    assert_eq!((d.sha.as_str(), d.task.as_str()), (sha.as_str(), "deploy"));
    assert_eq!(d.body["description"], "auto-deploy");
}
