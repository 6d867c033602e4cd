//! Approvals in GitHub mode, through the real binaries: chima creates the GitHub
//! deployment, the fake GitHub's webhook brings it to faseng, which makes it wait
//! (a `queued` status saying who may approve); `chima run 'approve <id>'` by others goes
//! through faseng's API, which checks its own app.json; a rejection ends it and
//! nothing runs. Auto-deploys wait the same way.

use std::time::Duration;

use chima_store::DeploymentState;
use chima_testkit::github::{FakeGitHub, deployment_event, send_raw_webhook, send_webhook};

use crate::harness::{Faseng, SECRET, SIGNING_KEY, repo};

const TOKEN: &str = "api-token-for-tests";

fn apps() -> String {
    r#"{"app": {"provider": "shell", "repository": "example/app",
        "environments": ["production", "staging"],
        "approvals": {"production": {"from": ["alice", "bob", "github:carol"], "expires": "10m"}}}}"#
        .to_owned()
}

async fn chima(f: &Faseng, gh: &FakeGitHub, user: &str, line: &str) -> (i32, String) {
    let out = tokio::process::Command::new(crate::slack::chima_binary())
        .env("APPS_JSON", f.dir.path().join("app.json"))
        .env("GITHUB_TOKEN", gh.token())
        .env("GITHUB_API_URL", &gh.url)
        .env("FASENG_URL", &f.url)
        .env("FASENG_API_TOKEN", TOKEN)
        .env("CHIMA_SIGNING_KEY", SIGNING_KEY)
        .env("USER", user)
        .env_remove("SLACK_BOT_TOKEN")
        .env_remove("DATABASE_URL")
        .args(["run", line])
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `chima run 'deploy app to production'` as `user`, and the webhook GitHub would send
/// for it: faseng's deployment id and the GitHub one.
async fn requested(f: &Faseng, gh: &FakeGitHub, user: &str, sha: &str, path: &str) -> (i64, i64) {
    let (code, out) = chima(f, gh, user, "deploy app/main to production").await;
    assert_eq!(code, 0, "{out}");
    let created = gh
        .deployments("example/app")
        .pop()
        .expect("a GitHub deployment");
    let body = deployment_event(
        "example/app",
        path,
        created.id,
        sha,
        "main",
        "production",
        "deploy",
        created.body["payload"].clone(),
    );
    let (status, text) = send_webhook(
        &format!("{}/webhooks/github", f.url),
        "deployment",
        &format!("delivery-{}", created.id),
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let d = f
        .store
        .find_by_github_id(created.id)
        .await
        .unwrap()
        .expect("stored");
    (d.id, created.id)
}

async fn statuses_until(gh: &FakeGitHub, id: i64, last: &str) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let states = gh.status_states(id);
        if states.last().map(String::as_str) == Some(last) {
            return states;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "statuses so far: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn github_mode_waits_for_another_approver_through_faseng_and_a_rejection_runs_nothing() {
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    let f = Faseng::start_with(
        &apps(),
        Some((&gh.url, &gh.token())),
        &[("FASENG_API_TOKEN", TOKEN)],
    )
    .await;
    let marker = f.dir.path().join("deployed");
    let (path, sha) = repo(
        f.dir.path(),
        &format!("#!/bin/sh\necho shipping\ntouch '{}'\n", marker.display()),
    );
    let path = path.to_string_lossy().into_owned();

    let (id, gid) = requested(&f, &gh, "alice", &sha, &path).await;
    let d = f.store.get_deployment(id).await.unwrap().unwrap();
    assert_eq!(d.state, DeploymentState::AwaitingApproval, "{}", f.log());
    // GitHub shows it queued, saying who may approve (within its 140 characters).
    statuses_until(&gh, gid, "queued").await;
    let status = gh.statuses(gid).pop().expect("a status");
    assert_eq!(
        status.body["description"],
        "waiting for 1 approval from alice, bob, github:carol"
    );

    // The requester's own approval, and an outsider's: refused by faseng, with why.
    let (code, out) = chima(&f, &gh, "alice", &format!("approve {id}")).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.trim(),
        format!(
            "You asked for deployment #{id}; someone else from alice, bob, github:carol must approve it."
        )
    );
    let (code, out) = chima(&f, &gh, "mallory", &format!("approve {id}")).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("mallory may not approve deployments of app to production"),
        "{out}"
    );
    let (code, out) = chima(&f, &gh, "bob", "approve 99999999").await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.trim(), "There is no deployment #99999999.");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!marker.exists(), "nothing runs before the approval");

    // bob approves: faseng runs it.
    let (code, out) = chima(&f, &gh, "bob", &format!("approve {id}")).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("bob approved deployment #{id}")),
        "{out}"
    );
    let done = f.wait_done(id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{}", f.log());
    assert!(marker.exists(), "the deploy ran");
    let states = statuses_until(&gh, gid, "success").await;
    assert!(states.contains(&"in_progress".to_owned()), "{states:?}");
    // The approval is recorded with the deployment, and shown on its page.
    let approvals = f.store.approvals(id).await.unwrap();
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].approver, "bob");
    assert_eq!(approvals[0].approver_key, "chat:bob");
    let page = crate::pages::links::LinkSigner::new(TOKEN.as_bytes()).url(&f.url, id);
    let (code, page) = crate::harness::get(&page).await;
    assert_eq!(code, 200);
    assert!(
        page.contains("<dt>approvals</dt><dd id=approvals>approved by bob at "),
        "{page}"
    );
    // A second click changes nothing.
    let (code, out) = chima(&f, &gh, "bob", &format!("approve {id}")).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("there is nothing to approve"), "{out}");

    // A second request, rejected: ends `rejected`, GitHub says why, nothing runs.
    std::fs::remove_file(&marker).unwrap();
    let (id2, gid2) = requested(&f, &gh, "alice", &sha, &path).await;
    let (code, out) = chima(&f, &gh, "bob", &format!("reject {id2} not during the sale")).await;
    assert_eq!(code, 0, "{out}");
    let done = f.wait_done(id2).await;
    assert_eq!(done.state, DeploymentState::Rejected);
    assert_eq!(
        done.reason.as_deref(),
        Some("rejected by bob: not during the sale")
    );
    statuses_until(&gh, gid2, "error").await;
    let status = gh.statuses(gid2).pop().expect("a status");
    assert_eq!(
        status.body["description"],
        "rejected by bob: not during the sale"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!marker.exists(), "nothing ran");
}

#[tokio::test]
async fn the_approval_api_refuses_malformed_hostile_and_unauthenticated_requests() {
    let f = Faseng::start_with(&apps(), None, &[("FASENG_API_TOKEN", TOKEN)]).await;
    let auth = format!("Bearer {TOKEN}");
    let post = |path: String, headers: Vec<(&'static str, String)>, body: &'static [u8]| {
        let url = format!("{}{path}", f.url);
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            send_raw_webhook(&url, &headers, body).await
        }
    };
    let body: &[u8] = br#"{"approver": "bob"}"#;
    let (status, _) = post("/api/deployments/1/approve".into(), vec![], body).await;
    assert_eq!(status, 401);
    for id in ["-1", "0", "99999999999999999999", "1%3B%20rm%20-rf", "abc"] {
        let (status, text) = post(
            format!("/api/deployments/{id}/approve"),
            vec![("authorization", auth.clone())],
            body,
        )
        .await;
        assert!(status == 404 || status == 400, "{id}: {status} {text}");
    }
    let (status, text) = post(
        "/api/deployments/1/approve".into(),
        vec![("authorization", auth.clone())],
        body,
    )
    .await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("There is no deployment #1."), "{text}");
    for bad in [&br#"{"approver": ""}"#[..], b"{}", b"nope"] {
        let (status, text) = post(
            "/api/deployments/1/reject".into(),
            vec![("authorization", auth.clone())],
            bad,
        )
        .await;
        assert!(status == 422 || status == 400, "{status} {text}");
    }
    assert_eq!(f.count().await, 0);
}

/// An auto-deploy to an environment with approvals waits like any deployment: created
/// by faseng itself on green CI, it runs only once someone in `from` approves.
#[tokio::test]
async fn an_auto_deploy_waits_for_approval_too() {
    use chima_testkit::github::{FakeCheckRun, FakeStatus};
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    let apps = r#"{"app": {"provider": "shell", "repository": "example/app",
        "environments": ["staging", "production"],
        "auto_deploy": {"staging": {"ref": "main", "required_contexts": ["ci/build", "test"]}},
        "approvals": {"staging": {"from": ["bob"]}}}}"#;
    let f = Faseng::start_with(
        apps,
        Some((&gh.url, &gh.token())),
        &[("FASENG_API_TOKEN", TOKEN)],
    )
    .await;
    let marker = f.dir.path().join("deployed");
    let (path, sha) = repo(
        f.dir.path(),
        &format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
    );
    gh.set_ref("example/app", "main", &sha);
    gh.set_commit_statuses(
        "example/app",
        "main",
        vec![FakeStatus::new("ci/build", "success")],
    );
    gh.set_check_runs(
        "example/app",
        "main",
        vec![FakeCheckRun::new("test", "completed", Some("success"))],
    );
    let status = serde_json::json!({
        "id": 1, "sha": sha, "name": "example/app", "target_url": null,
        "context": "ci/build", "description": null, "state": "success",
        "branches": [{"name": "main", "commit": {"sha": sha}}],
        "repository": {"full_name": "example/app", "name": "app"},
        "sender": {"login": "ci"}
    });
    let (code, _) = send_webhook(
        &format!("{}/webhooks/github", f.url),
        "status",
        "ad-1",
        SECRET.as_bytes(),
        status.to_string().as_bytes(),
    )
    .await;
    assert_eq!(code, 202);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let created = loop {
        if let Some(d) = gh.deployments("example/app").pop() {
            break d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no auto-deploy: {}",
            f.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body = deployment_event(
        "example/app",
        &path.to_string_lossy(),
        created.id,
        &sha,
        &sha,
        "staging",
        "deploy",
        created.payload.clone(),
    );
    let (code, text) = send_webhook(
        &format!("{}/webhooks/github", f.url),
        "deployment",
        "ad-2",
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{text}");
    let d = f
        .store
        .find_by_github_id(created.id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(d.state, DeploymentState::AwaitingApproval, "{}", f.log());
    assert_eq!(d.requester, "auto-deploy");
    statuses_until(&gh, created.id, "queued").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!marker.exists(), "an auto-deploy waits for its approval");
    let (code, out) = chima(&f, &gh, "bob", &format!("approve {}", d.id)).await;
    assert_eq!(code, 0, "{out}");
    let done = f.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{}", f.log());
    assert!(marker.exists(), "it ran once approved");
}
