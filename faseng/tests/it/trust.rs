//! The trust boundary, through the real binary: a `deployment` webhook's payload is a
//! request, never configuration. What runs, where it comes from, who asked and where
//! messages go come from faseng's own app.json and verified identities only; every
//! attack here leaves the attacker's marker file absent, says why on GitHub and in the
//! deployment, and loses nothing stored.

use std::path::Path;
use std::time::Duration;

use chima_payload::{DeploymentPayload, SignedRequest, SigningKey};
use chima_store::{Deployment, DeploymentState};
use chima_testkit::github::{FakeGitHub, TOKEN_LOGIN, deployment_event, send_webhook};
use serde_json::{Value, json};

use crate::harness::{Faseng, SECRET, repo, repo_of, signed_payload, signed_payload_by};

/// Production is for alice (a chat user, via chima) and carol (a GitHub login).
const GUARDED: &str = r#"{"app": {"provider": "shell", "repository": "example/app",
  "environments": ["production", "staging"],
  "allowed_users": {"production": ["alice", "github:carol"]}}}"#;

/// The deploy script of `example/app`: leaves `ran-<deployment id>` in the test folder.
fn marker_script(dir: &Path) -> String {
    format!(
        "#!/bin/sh\necho deploying\ntouch '{}/ran-'\"$DEPLOY_ID\"\n",
        dir.display()
    )
}

/// Whether the app's own script ran for faseng deployment `id`.
fn ran(f: &Faseng, id: i64) -> bool {
    f.dir.path().join(format!("ran-{id}")).exists()
}

async fn start(apps: &str) -> (FakeGitHub, Faseng, String) {
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    gh.add_repo("other/repo", "main");
    let f = Faseng::start(apps, Some((&gh.url, &gh.token()))).await;
    let (_, sha) = repo(f.dir.path(), &marker_script(f.dir.path()));
    (gh, f, sha)
}

/// A `deployment` webhook body for `example/app` at `main`, created on GitHub by
/// `creator`.
fn event(gid: i64, sha: &str, env: &str, task: &str, creator: &str, payload: Value) -> Value {
    let mut body = deployment_event(
        "example/app",
        "/nonexistent/clone-url",
        gid,
        sha,
        "main",
        env,
        task,
        payload,
    );
    body["deployment"]["creator"]["login"] = json!(creator);
    body["sender"]["login"] = json!(creator);
    body
}

async fn post(f: &Faseng, body: &Value, delivery: &str) -> (u16, String) {
    send_webhook(
        &format!("{}/webhooks/github", f.url),
        "deployment",
        delivery,
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await
}

/// Delivers `body` (GitHub deployment `gid`) once and waits for its end.
async fn deliver(f: &Faseng, gid: i64, body: &Value) -> Deployment {
    let (status, text) = post(f, body, &format!("delivery-{gid}")).await;
    assert_eq!(status, 201, "{text}");
    let id = f.store.find_by_github_id(gid).await.unwrap().unwrap().id;
    f.wait_done(id).await
}

/// A new GitHub deployment of `example/app` by `creator`, delivered; its end.
async fn deploy(
    gh: &FakeGitHub,
    f: &Faseng,
    sha: &str,
    env: &str,
    task: &str,
    creator: &str,
    payload: Value,
) -> (i64, Deployment) {
    let gid = gh.seed_deployment("example/app", "main", env, creator);
    let body = event(gid, sha, env, task, creator, payload);
    (gid, deliver(f, gid, &body).await)
}

async fn log_of(f: &Faseng, id: i64) -> String {
    f.store
        .read_logs(id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The deployment ended `errored` saying `why`, GitHub got an `error` status saying
/// it too, and the app's script did not run.
async fn refused(gh: &FakeGitHub, f: &Faseng, gid: i64, d: &Deployment, why: &str) {
    let reason = d.reason.clone().unwrap_or_default();
    assert_eq!(d.state, DeploymentState::Errored, "{reason}");
    assert!(reason.contains(why), "expected `{why}` in: {reason}");
    assert!(!ran(f, d.id), "the app's script ran for #{}", d.id);
    let log = log_of(f, d.id).await;
    assert!(!log.contains("==> running"), "{log}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let last = gh.statuses(gid).pop();
        if let Some(s) = &last
            && s.state == "error"
        {
            let text = s.description.clone().unwrap_or_default();
            assert!(text.contains(why), "GitHub was told: {text}");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no error status for {gid}: {:?}",
            gh.statuses(gid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn succeeded(f: &Faseng, d: &Deployment) {
    assert_eq!(
        d.state,
        DeploymentState::Succeeded,
        "{:?}\n{}",
        d.reason,
        f.log()
    );
    assert!(ran(f, d.id), "the app's script did not run for #{}", d.id);
}

/// hubot-deploy's unsigned payload claiming to come from alice in #deploys.
fn claims_alice() -> Value {
    json!({
        "name": "app",
        "robotName": "hubot",
        "hosts": "",
        "notify": {"adapter": "slack", "room": "C0DEPLOYS", "user": "U0ALICE", "user_name": "alice"}
    })
}

#[tokio::test]
async fn the_payload_chooses_nothing_that_runs() {
    let apps = r#"{
      "app": {"provider": "shell", "repository": "example/app",
              "environments": ["production", "staging"], "aliases": {"prod": "production"}},
      "other": {"provider": "shell", "repository": "other/repo", "environments": ["production", "staging"]}
    }"#;
    let (gh, f, sha) = start(apps).await;
    let dir = f.dir.path();
    let evil = |name: &str| dir.join(format!("evil-{name}"));
    let (other_path, _) = repo_of(
        dir,
        "other/repo",
        &format!("#!/bin/sh\ntouch '{}'\n", evil("other").display()),
    );
    let other_path = other_path.to_string_lossy().into_owned();

    // 1. payload.config names a provider, a command, a clone source and a script.
    let payload = json!({
        "name": "app",
        "config": {
            "provider": "heroku",
            "repository": "other/repo",
            "command": ["sh", "-c", format!("touch '{}'", evil("command").display())],
            "clone_url": other_path,
            "deploy_script": format!("touch '{}'", evil("script").display()),
            "environments": ["production", "staging", "anything"],
        }
    });
    let gid = gh.seed_deployment("example/app", "main", "staging", TOKEN_LOGIN);
    let mut body = event(gid, &sha, "staging", "deploy", TOKEN_LOGIN, payload);
    // GitHub's own field for the clone source is no better a source.
    body["repository"]["clone_url"] = json!(other_path);
    let d = deliver(&f, gid, &body).await;
    succeeded(&f, &d);
    assert_eq!(d.provider, "shell");
    for name in ["command", "script", "other"] {
        assert!(!evil(name).exists(), "payload.config made `{name}` run");
    }
    let log = log_of(&f, d.id).await;
    assert!(log.contains("payload.config was ignored"), "{log}");

    // 2. payload.name naming the app of another repository.
    let (gid, d) = deploy(
        &gh,
        &f,
        &sha,
        "staging",
        "deploy",
        TOKEN_LOGIN,
        json!({"name": "other"}),
    )
    .await;
    refused(&gh, &f, gid, &d, "is not an app of example/app").await;
    assert!(!evil("other").exists(), "other/repo's script ran");

    // 3. Environments that are not the app's, two of them shaped like options.
    let option = format!("--execute=touch {}", evil("env").display());
    for env in ["nowhere", option.as_str(), "-x"] {
        let (gid, d) = deploy(&gh, &f, &sha, env, "deploy", TOKEN_LOGIN, json!({})).await;
        refused(&gh, &f, gid, &d, "is not one of").await;
    }
    assert!(!evil("env").exists());
    // A task shaped like a shell command.
    let task = format!("deploy;touch {}", evil("task").display());
    let (gid, d) = deploy(&gh, &f, &sha, "staging", &task, TOKEN_LOGIN, json!({})).await;
    refused(&gh, &f, gid, &d, "is not one I will run").await;
    assert!(!evil("task").exists());

    // An alias of app.json deploys its environment, stored by its real name.
    let (_, d) = deploy(&gh, &f, &sha, "prod", "deploy", TOKEN_LOGIN, json!({})).await;
    succeeded(&f, &d);
    assert_eq!(d.environment, "production");
}

#[tokio::test]
async fn only_verified_identities_count_for_allowed_users_and_signatures_are_not_reusable() {
    let (gh, f, sha) = start(GUARDED).await;

    // 4a. An unsigned payload naming alice, created by the bot's token.
    let (gid, d) = deploy(
        &gh,
        &f,
        &sha,
        "production",
        "deploy",
        TOKEN_LOGIN,
        claims_alice(),
    )
    .await;
    refused(&gh, &f, gid, &d, "may not deploy").await;
    assert_eq!(d.requester, format!("github:{TOKEN_LOGIN}"));
    let log = log_of(&f, d.id).await;
    assert!(log.contains("which nobody verified"), "{log}");

    // 4b. Alice's request signed with a key that is not chima's.
    let mut forged = signed_payload("app", "production", "main", "C0DEPLOYS", "1.1");
    let signed: SignedRequest = serde_json::from_value(forged["chima"].clone()).unwrap();
    let wrong = SigningKey::new(b"some-other-key-of-enough-length");
    forged["chima"] = serde_json::to_value(wrong.sign(signed.request)).unwrap();
    let (gid, d) = deploy(&gh, &f, &sha, "production", "deploy", TOKEN_LOGIN, forged).await;
    refused(&gh, &f, gid, &d, "may not deploy").await;
    let log = log_of(&f, d.id).await;
    assert!(log.contains("chima's request does not count"), "{log}");

    // 4c. carol created the deployment on GitHub herself: `github:carol` is listed.
    let (_, d) = deploy(&gh, &f, &sha, "production", "deploy", "carol", json!({})).await;
    succeeded(&f, &d);
    assert_eq!(d.requester, "github:carol");

    // 4d. alice through chima, signed with chima's key.
    let by_alice = signed_payload_by(
        "app",
        "production",
        "main",
        "deploy",
        ("U0ALICE", "alice"),
        "C0DEPLOYS",
        "1.2",
    );
    let alice_gid = gh.seed_deployment("example/app", "main", "production", TOKEN_LOGIN);
    let alice_body = event(
        alice_gid,
        &sha,
        "production",
        "deploy",
        TOKEN_LOGIN,
        by_alice.clone(),
    );
    let alice = deliver(&f, alice_gid, &alice_body).await;
    succeeded(&f, &alice);
    assert_eq!(alice.requester, "alice");

    // 5. The same signed request on a new deployment is a replay: GitHub's word only.
    let (gid, d) = deploy(&gh, &f, &sha, "production", "deploy", TOKEN_LOGIN, by_alice).await;
    refused(&gh, &f, gid, &d, "may not deploy").await;
    let log = log_of(&f, d.id).await;
    assert!(log.contains("already used"), "{log}");

    // A redelivery of alice's webhook is the same deployment, not a replay.
    let before = f.count().await;
    let (status, text) = post(&f, &alice_body, "redelivery-of-alice").await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["already_existed"], json!(true), "{text}");
    assert_eq!(answer["deployment"], json!(alice.id), "{text}");
    assert_eq!(f.count().await, before);
    let again = f.store.get_deployment(alice.id).await.unwrap().unwrap();
    assert_eq!(again.state, DeploymentState::Succeeded);
    assert_eq!(again.requester, "alice");
}

#[tokio::test]
async fn locks_and_lock_tasks_go_by_verified_identity() {
    let (gh, f, sha) = start(GUARDED).await;
    let lock = || async { f.store.get_lock("app", "production").await.unwrap() };

    // 6. alice's lock; carol (allowed) sends a payload claiming to be alice.
    f.store
        .lock_by(
            "app",
            "production",
            "alice",
            Some("chat:U0ALICE"),
            Some("release freeze"),
            None,
        )
        .await
        .unwrap();
    let alices = lock().await.expect("alice's lock");
    let (gid, d) = deploy(
        &gh,
        &f,
        &sha,
        "production",
        "deploy",
        "carol",
        claims_alice(),
    )
    .await;
    refused(
        &gh,
        &f,
        gid,
        &d,
        "production is locked by alice: release freeze",
    )
    .await;
    assert_eq!(lock().await.as_ref(), Some(&alices));

    // alice's own signed deploy goes through her lock.
    let mine = signed_payload("app", "production", "main", "C0DEPLOYS", "2.1");
    let (_, d) = deploy(&gh, &f, &sha, "production", "deploy", TOKEN_LOGIN, mine).await;
    succeeded(&f, &d);
    assert_eq!(lock().await.as_ref(), Some(&alices));

    // 7. heaven's lock tasks need the permission to deploy: an unsigned unlock by the
    // bot's token, claiming alice, leaves her lock as it was.
    let (gid, d) = deploy(
        &gh,
        &f,
        &sha,
        "production",
        "deploy:unlock",
        TOKEN_LOGIN,
        claims_alice(),
    )
    .await;
    refused(&gh, &f, gid, &d, "may not deploy").await;
    assert_eq!(lock().await.as_ref(), Some(&alices));

    // carol may deploy production, so she may unlock it.
    let (_, d) = deploy(
        &gh,
        &f,
        &sha,
        "production",
        "deploy:unlock",
        "carol",
        json!({}),
    )
    .await;
    assert_eq!(d.state, DeploymentState::Succeeded, "{:?}", d.reason);
    assert!(!ran(&f, d.id), "a lock task runs nothing");
    assert_eq!(lock().await, None);

    // An unpermitted deploy:lock creates no lock.
    let (gid, d) = deploy(
        &gh,
        &f,
        &sha,
        "production",
        "deploy:lock",
        TOKEN_LOGIN,
        claims_alice(),
    )
    .await;
    refused(&gh, &f, gid, &d, "may not deploy").await;
    assert_eq!(lock().await, None);

    // carol's deploy:lock is held by her GitHub identity ...
    let (_, d) = deploy(
        &gh,
        &f,
        &sha,
        "production",
        "deploy:lock",
        "carol",
        json!({}),
    )
    .await;
    assert_eq!(d.state, DeploymentState::Succeeded, "{:?}", d.reason);
    let carols = lock().await.expect("carol's lock");
    assert_eq!(carols.holder, "github:carol");
    assert_eq!(carols.holder_id.as_deref(), Some("github:carol"));
    assert_eq!(carols.reason.as_deref(), Some("locked with deploy:lock"));

    // ... which alice, allowed to deploy, does not hold.
    let by_alice = signed_payload("app", "production", "main", "C0DEPLOYS", "2.3");
    let (gid, d) = deploy(&gh, &f, &sha, "production", "deploy", TOKEN_LOGIN, by_alice).await;
    refused(&gh, &f, gid, &d, "production is locked by github:carol").await;
    assert_eq!(lock().await.as_ref(), Some(&carols));
}

#[tokio::test]
async fn an_unverified_notify_room_falls_back_to_the_apps_room() {
    let apps = r##"{"app": {"provider": "shell", "repository": "example/app",
      "environments": ["production", "staging"],
      "notify_room": "#deploys", "allowed_rooms": ["ops"]}}"##;
    let (gh, f, sha) = start(apps).await;
    let room = |d: &Deployment| DeploymentPayload::chat_target_of(&d.payload);

    // 8. An unsigned payload picking another channel: messages go to #deploys.
    let elsewhere = json!({
        "name": "app",
        "notify": {"adapter": "slack", "room": "C0ELSEWHERE", "user": "U0ALICE", "user_name": "alice", "thread_ts": "9.9"}
    });
    let (_, d) = deploy(&gh, &f, &sha, "staging", "deploy", TOKEN_LOGIN, elsewhere).await;
    succeeded(&f, &d);
    let target = room(&d).expect("the app's notify_room");
    assert_eq!(target.room.trim_start_matches('#'), "deploys");
    assert_eq!(target.thread_ts, None);
    let log = log_of(&f, d.id).await;
    assert!(
        log.contains("payload.notify.room `C0ELSEWHERE` is not one of the app's rooms"),
        "{log}"
    );

    // One of the app's allowed_rooms is honoured unsigned.
    let ops = json!({"name": "app", "notify": {"adapter": "slack", "room": "ops"}});
    let (_, d) = deploy(&gh, &f, &sha, "staging", "deploy", TOKEN_LOGIN, ops).await;
    succeeded(&f, &d);
    assert_eq!(room(&d).map(|t| t.room).as_deref(), Some("ops"));

    // chima's verified request answers where it was asked, in its thread.
    let signed = signed_payload("app", "staging", "main", "C0ELSEWHERE", "3.1");
    let (_, d) = deploy(&gh, &f, &sha, "staging", "deploy", TOKEN_LOGIN, signed).await;
    succeeded(&f, &d);
    let target = room(&d).expect("chima's room");
    assert_eq!(target.room, "C0ELSEWHERE");
    assert_eq!(target.thread_ts.as_deref(), Some("3.1"));
}

/// A copy of alice's signed request on a deployment it does not match (another
/// environment) arriving first does not spend her nonce: her own deployment still
/// counts as hers.
#[tokio::test]
async fn a_mismatched_copy_never_spends_the_real_requests_nonce() {
    let (gh, f, sha) = start(GUARDED).await;
    let real = signed_payload("app", "production", "main", "C0DEPLOYS", "1.1");
    // The copy, on a staging deployment (open to anyone), delivered first.
    let (_, copy) = deploy(&gh, &f, &sha, "staging", "deploy", "mallory", real.clone()).await;
    succeeded(&f, &copy);
    assert_eq!(copy.requester, "github:mallory");
    assert!(
        log_of(&f, copy.id)
            .await
            .contains("chima's request is for environment `production`"),
        "{}",
        log_of(&f, copy.id).await
    );
    // The real one: still alice's, and production lets her in.
    let (_, d) = deploy(&gh, &f, &sha, "production", "deploy", TOKEN_LOGIN, real).await;
    succeeded(&f, &d);
    assert_eq!(d.requester, "alice");
}
