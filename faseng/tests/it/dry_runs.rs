//! Dry runs (`deploy:noop`, issue 18) in GitHub mode: the fake GitHub sends the
//! `deployment` webhook of a `deploy:noop` deployment, the real faseng runs the
//! script with `DEPLOY_NOOP=1`, and its statuses never make GitHub take the dry run's
//! commit for what the environment runs (the fake applies `auto_inactive` as GitHub
//! does). A Heroku app's dry run ends with an `error` status saying why.

use std::time::Duration;

use chima_testkit::github::{FakeGitHub, deployment_event, send_webhook};
use serde_json::json;

use crate::harness::{Faseng, SECRET, get, repo};

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

/// Sends the `deployment` webhook of GitHub deployment `gid`.
async fn webhook(f: &Faseng, gid: i64, clone: &str, sha: &str, repo: &str, task: &str) {
    let body = deployment_event(repo, clone, gid, sha, "main", "staging", task, json!({}));
    let (status, text) = send_webhook(
        &format!("{}/webhooks/github", f.url),
        "deployment",
        &format!("delivery-{gid}"),
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{text}");
}

#[tokio::test]
async fn a_dry_runs_statuses_leave_the_real_deploy_active_on_github() {
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    gh.add_repo("example/web", "main");
    let apps = r#"{
        "app": {"provider": "shell", "repository": "example/app", "environments": ["staging"]},
        "web": {"provider": "heroku", "repository": "example/web", "heroku_name": "acme-web",
                "environments": ["staging"]}
    }"#;
    let f = Faseng::start(apps, Some((&gh.url, &gh.token()))).await;
    let (path, sha) = repo(
        f.dir.path(),
        "#!/bin/sh\necho \"task=$DEPLOY_TASK noop=${DEPLOY_NOOP:-unset}\"\n",
    );
    let clone = path.to_string_lossy().into_owned();

    // A real deploy: `success`, and GitHub shows it as what staging runs.
    let real = gh.seed_deployment("example/app", "main", "staging", "octocat");
    webhook(&f, real, &clone, &sha, "example/app", "deploy").await;
    statuses_until(&gh, real, "success").await;
    assert_eq!(
        gh.active_deployment("example/app", "staging").map(|d| d.id),
        Some(real)
    );

    // The dry run: it runs the script with DEPLOY_NOOP=1, then ends `inactive`, with
    // auto_inactive false on every status and no environment_url.
    let dry =
        gh.seed_deployment_of_task("example/app", "main", "staging", "octocat", "deploy:noop");
    webhook(&f, dry, &clone, &sha, "example/app", "deploy:noop").await;
    let states = statuses_until(&gh, dry, "inactive").await;
    assert_eq!(states, ["queued", "in_progress", "inactive"]);
    let statuses = gh.statuses(dry);
    for s in &statuses {
        assert_eq!(s.auto_inactive, Some(false), "{s:?}");
        assert_eq!(s.environment_url, None, "{s:?}");
        let said = s.description.as_deref().unwrap_or_default();
        assert!(said.starts_with("dry run"), "{said:?}");
    }
    let last = statuses.last().expect("statuses");
    assert_eq!(
        last.description.as_deref(),
        Some("dry run succeeded; nothing was deployed")
    );
    // GitHub still shows the real deploy as what staging runs, and never marked it
    // inactive.
    assert_eq!(
        gh.active_deployment("example/app", "staging").map(|d| d.id),
        Some(real)
    );
    assert_eq!(gh.status_states(real), ["queued", "in_progress", "success"]);

    // The page and the log say it is a dry run, and what the script saw.
    let log_url = last.log_url.clone().expect("log_url");
    let (code, page) = get(&log_url).await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("Dry run #"), "{page}");
    assert!(page.contains("dry run: nothing will change"), "{page}");
    assert!(page.contains("task=deploy noop=1"), "{page}");

    // What the fake does for a real deploy's success (as GitHub does): the earlier
    // success of staging, a non-production environment, is marked inactive.
    let next = gh.seed_deployment("example/app", "main", "staging", "octocat");
    webhook(&f, next, &clone, &sha, "example/app", "deploy").await;
    statuses_until(&gh, next, "success").await;
    assert_eq!(
        gh.status_states(real).last().map(String::as_str),
        Some("inactive")
    );
    assert_eq!(
        gh.active_deployment("example/app", "staging").map(|d| d.id),
        Some(next)
    );

    // A Heroku app's dry run that arrives from GitHub is refused by the engine.
    let heroku =
        gh.seed_deployment_of_task("example/web", "main", "staging", "octocat", "deploy:noop");
    webhook(&f, heroku, &clone, &sha, "example/web", "deploy:noop").await;
    statuses_until(&gh, heroku, "error").await;
    let refused = gh.statuses(heroku).pop().expect("statuses");
    assert_eq!(
        refused.description.as_deref(),
        Some("dry run: Heroku builds have no dry run; nothing was run")
    );
    assert_eq!(refused.auto_inactive, Some(false));
}
