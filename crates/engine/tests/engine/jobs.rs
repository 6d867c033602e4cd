//! A job's life: success, failure, timeout, cancel, volume, redaction, bad refs,
//! locks and hostile input.

use std::time::Duration;

use chima_engine::priority::{IoClass, Priority};
use chima_store::{DeploymentState, LockResult};
use serde_json::json;

use crate::harness::{Rig, shell_config, write_exec};

#[tokio::test]
async fn success_streams_the_log_and_passes_the_common_variables() {
    let mut rig = Rig::new(
        "#!/bin/sh\necho \"deploying $DEPLOY_REF to $DEPLOY_ENV ($DEPLOY_TASK) sha=$DEPLOY_SHA hosts=$DEPLOY_HOSTS id=$DEPLOY_ID\"\necho oops >&2\necho \"secret-env:${DATABASE_URL:-none}:${GITHUB_TOKEN:-none}\"\n",
        &[],
    )
    .await;
    let mut cfg = rig.config();
    cfg.workers = 1;
    rig.start(cfg);
    let d = rig.queue("k1", "main", shell_config()).await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    assert_eq!(done.exit_code, Some(0));
    let log = rig.log(d.id).await;
    let sha = rig.head();
    assert!(
        log.contains(&format!(
            "deploying main to staging (deploy) sha={sha} hosts= id={}",
            d.id
        )),
        "{log:#?}"
    );
    assert!(log.contains(&"oops".to_string()));
    // faseng's own environment never reaches the provider.
    assert!(
        log.contains(&"secret-env:none:none".to_string()),
        "{log:#?}"
    );
}

#[tokio::test]
async fn a_non_zero_exit_fails_with_the_code() {
    let mut rig = Rig::new("#!/bin/sh\necho about to fail\nexit 3\n", &[]).await;
    rig.start(rig.config());
    let d = rig.queue("k1", "main", shell_config()).await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Failed);
    assert_eq!(done.exit_code, Some(3));
    assert_eq!(done.reason.as_deref(), Some("exited with code 3"));
    assert!(rig.log(d.id).await.contains(&"about to fail".to_string()));
}

fn alive(pid: &str) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test]
async fn a_timeout_kills_the_whole_group_and_keeps_the_log() {
    let mut rig = Rig::new(
        "#!/bin/sh\necho started\nsleep 300 &\necho $! > \"$PIDFILE\"\nwait\n",
        &[],
    )
    .await;
    let pidfile = rig.dir.path().join("grandchild.pid");
    let mut cfg = rig.config();
    cfg.path = format!("{}:{}", rig.bin.display(), std::env::var("PATH").unwrap());
    rig.start(cfg);
    // The script reads PIDFILE: pass it through the command override's env by
    // writing it into the script instead.
    let script = format!(
        "#!/bin/sh\necho started\nsleep 300 &\necho $! > {}\nwait\n",
        pidfile.display()
    );
    write_exec(&rig.repo.join("script/deploy"), &script);
    std::process::Command::new("git")
        .arg("-C")
        .arg(&rig.repo)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-qam",
            "pidfile",
        ])
        .status()
        .unwrap();
    let d = rig
        .queue_with("k1", "main", shell_config(), |n| n.timeout_secs = Some(1))
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Failed);
    assert!(
        done.reason
            .as_deref()
            .unwrap_or("")
            .contains("timed out after 1s"),
        "{:?}",
        done.reason
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let pid = pid.trim();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "grandchild {pid} survived the timeout"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rig.log(d.id).await.contains(&"started".to_string()));
}

#[tokio::test]
async fn cancel_stops_a_running_deploy() {
    let mut rig = Rig::new("#!/bin/sh\necho waiting\nsleep 300\n", &[]).await;
    rig.start(rig.config());
    let d = rig.queue("k1", "main", shell_config()).await;
    rig.wait_running(d.id).await;
    // Let the script start before cancelling.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !rig.log(d.id).await.contains(&"waiting".to_string()) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rig.store.request_cancel(d.id, "bob").await.unwrap();
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Cancelled);
    assert_eq!(done.reason.as_deref(), Some("cancelled by bob"));
}

#[tokio::test]
async fn a_hundred_thousand_lines_are_all_stored_in_order() {
    let mut rig = Rig::new("#!/bin/sh\nseq 1 100000\n", &[]).await;
    rig.start(rig.config());
    let d = rig.queue("k1", "main", shell_config()).await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    let numbers: Vec<u64> = rig
        .log(d.id)
        .await
        .iter()
        .filter_map(|l| l.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 100_000);
    assert!(numbers.iter().enumerate().all(|(i, n)| *n == i as u64 + 1));
}

#[tokio::test]
async fn secrets_in_the_output_are_redacted() {
    let mut rig = Rig::new(
        "#!/bin/sh\necho key=hunter2-very-secret\necho url=https://x:ghp_abcdefghijklmnopqrstuvwxyz0123@github.com\n",
        &[],
    )
    .await;
    let mut cfg = rig.config();
    cfg.secrets = vec!["hunter2-very-secret".to_string()];
    rig.start(cfg);
    let d = rig.queue("k1", "main", shell_config()).await;
    assert_eq!(rig.wait_done(d.id).await.state, DeploymentState::Succeeded);
    let log = rig.log(d.id).await.join("\n");
    assert!(!log.contains("hunter2"), "{log}");
    assert!(!log.contains("ghp_abc"), "{log}");
    assert!(log.contains("key=[REDACTED]"), "{log}");
}

#[tokio::test]
async fn a_ref_that_does_not_exist_errors_with_gits_message() {
    let mut rig = Rig::new("#!/bin/sh\necho never\n", &[]).await;
    rig.start(rig.config());
    let d = rig.queue("k1", "no-such-branch", shell_config()).await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Errored);
    let reason = done.reason.unwrap_or_default();
    assert!(
        reason.contains("checkout failed: ref `no-such-branch` not found"),
        "{reason}"
    );
    assert!(!rig.log(d.id).await.contains(&"never".to_string()));
}

/// A full commit id is checked out directly (no lookup): the right commit runs;
/// one the repository lacks, or an object that is not a commit, errors and runs
/// nothing.
#[tokio::test]
async fn a_full_sha_deploys_that_commit_and_a_wrong_one_runs_nothing() {
    let mut rig = Rig::new(
        "#!/bin/sh
echo ran at $(git rev-parse HEAD)
",
        &[],
    )
    .await;
    rig.start(rig.config());
    let head = rig.head();
    let d = rig
        .queue_with("k1", "main", shell_config(), |n| n.sha = Some(head.clone()))
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    assert_eq!(done.sha.as_deref(), Some(head.as_str()));
    assert!(rig.log(d.id).await.contains(&format!("ran at {head}")));

    let tree = {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&rig.repo)
            .args(["rev-parse", "HEAD^{tree}"])
            .output()
            .expect("git rev-parse");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let missing = "0123456789abcdef0123456789abcdef01234567".to_string();
    for (key, sha) in [("k2", missing), ("k3", tree)] {
        let d = rig
            .queue_with(key, "main", shell_config(), |n| n.sha = Some(sha.clone()))
            .await;
        let done = rig.wait_done(d.id).await;
        assert_eq!(done.state, DeploymentState::Errored, "{sha}");
        let reason = done.reason.unwrap_or_default();
        assert!(
            reason.contains(&format!("commit `{sha}` not found")),
            "{reason}"
        );
        assert!(
            !rig.log(d.id).await.iter().any(|l| l.starts_with("ran at")),
            "nothing runs for {sha}"
        );
    }
}

#[tokio::test]
async fn a_lock_held_by_someone_else_stops_the_deploy_but_not_the_holders() {
    let mut rig = Rig::new("#!/bin/sh\necho ran\n", &[]).await;
    let r = rig
        .store
        .lock("app", "staging", "bob", Some("db migration"), None)
        .await
        .unwrap();
    assert!(matches!(r, LockResult::Acquired(_)));
    rig.start(rig.config());
    let d = rig.queue("k1", "main", shell_config()).await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Errored);
    assert_eq!(
        done.reason.as_deref(),
        Some("staging is locked by bob: db migration")
    );
    let d = rig
        .queue_with("k2", "main", shell_config(), |n| n.requester = "bob".into())
        .await;
    assert_eq!(rig.wait_done(d.id).await.state, DeploymentState::Succeeded);
}

#[tokio::test]
async fn the_engines_app_json_decides_and_the_payload_configures_nothing() {
    let mut rig = Rig::new("#!/bin/sh\necho ran the app.json script\n", &[]).await;
    let marker = rig.dir.path().join("pwned");
    rig.start(rig.config());
    // An unknown provider never gets as far as a deployment: app.json refuses it.
    let bad = chima_config::Apps::parse(
        r#"{"app": {"provider": "opsworks", "repository": "example/app"}}"#,
        std::path::Path::new("app.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("unknown provider `opsworks`"), "{bad}");

    let d = rig
        .queue(
            "k2",
            "main",
            json!({"provider": "shell", "deploy_script": "script/missing"}),
        )
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(
        done.reason.as_deref(),
        Some("deploy_script `script/missing` does not exist in the repository at this commit")
    );

    // A repository the engine's app.json does not know: nothing runs, and it says so.
    let d = rig
        .queue_with("k3", "main", shell_config(), |n| {
            n.repository = "someone/else".into()
        })
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Errored);
    assert_eq!(
        done.reason.as_deref(),
        Some("faseng has no app for someone/else in its app.json; nothing was run")
    );

    // A payload that carries a command, a provider and a clone URL of its own: all of
    // it ignored, the app.json entry runs.
    let m = marker.display().to_string();
    let d = rig
        .queue_with("k4", "main", shell_config(), |n| {
            n.payload = json!({"config": {
                "provider": "shell",
                "command": ["sh", "-c", format!("touch {m}")],
                "clone_url": "/nowhere",
                "deploy_script": "../../bin/sh",
            }})
        })
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    assert!(
        rig.log(d.id)
            .await
            .iter()
            .any(|l| l.contains("ran the app.json script"))
    );
    assert!(!marker.exists(), "the payload's command ran");
}

#[tokio::test]
async fn hostile_refs_tasks_and_scripts_never_reach_a_shell_or_git_options() {
    let mut rig = Rig::new("#!/bin/sh\necho ran\n", &[]).await;
    let marker = rig.dir.path().join("pwned");
    rig.start(rig.config());
    let m = marker.display().to_string();
    let hostile_refs = [
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("main;touch {m}"),
        "--upload-pack=touch pwned".to_string(),
        "-x".to_string(),
        "a..b".to_string(),
    ];
    for (i, r) in hostile_refs.iter().enumerate() {
        let d = rig.queue(&format!("ref{i}"), r, shell_config()).await;
        let done = rig.wait_done(d.id).await;
        assert_eq!(done.state, DeploymentState::Errored, "{r}");
        assert!(
            done.reason.as_deref().unwrap_or("").contains("refused"),
            "{r}: {:?}",
            done.reason
        );
    }
    for (i, task) in [
        format!("deploy;touch {m}"),
        "-rf".to_string(),
        "$(id)".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let d = rig
            .queue_with(&format!("task{i}"), "main", shell_config(), |n| {
                n.task = task.clone()
            })
            .await;
        let done = rig.wait_done(d.id).await;
        assert_eq!(done.state, DeploymentState::Errored, "{task}");
        assert!(
            done.reason
                .as_deref()
                .unwrap_or("")
                .contains("is not one I will run")
        );
    }
    // Tasks that are not `deploy` or `deploy:<word>` never reach a provider.
    for (i, task) in ["deploy:lock;x", "deployx", "build", "deploy:", "deploy:a b"]
        .iter()
        .enumerate()
    {
        let d = rig
            .queue_with(&format!("shape{i}"), "main", shell_config(), |n| {
                n.task = task.to_string()
            })
            .await;
        let done = rig.wait_done(d.id).await;
        assert_eq!(done.state, DeploymentState::Errored, "{task}");
    }
    // A script path that leaves the checkout is refused when app.json loads.
    let bad = chima_config::Apps::parse(
        r#"{"app": {"provider": "shell", "repository": "example/app", "deploy_script": "../../bin/sh"}}"#,
        std::path::Path::new("app.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("leaves the repository"), "{bad}");
    assert!(!marker.exists(), "a hostile value was executed");
}

#[tokio::test]
async fn a_symlinked_script_leading_outside_is_refused() {
    let mut rig = Rig::new("#!/bin/sh\necho ran\n", &[]).await;
    std::os::unix::fs::symlink("/bin/sh", rig.repo.join("script/escape")).unwrap();
    std::process::Command::new("git")
        .arg("-C")
        .arg(&rig.repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@e", "add", "-A"])
        .status()
        .unwrap();
    std::process::Command::new("git")
        .arg("-C")
        .arg(&rig.repo)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-qm",
            "link",
        ])
        .status()
        .unwrap();
    rig.start(rig.config());
    let d = rig
        .queue(
            "k1",
            "main",
            json!({"provider": "shell", "deploy_script": "script/escape"}),
        )
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Errored);
    assert!(
        done.reason
            .as_deref()
            .unwrap_or("")
            .contains("through a symlink"),
        "{:?}",
        done.reason
    );
}

/// The same engine on PostgreSQL (a fresh database per test, from DATABASE_URL).
#[sqlx::test(migrations = false)]
async fn the_engine_runs_on_postgres(pool: sqlx::PgPool) {
    let store = chima_store::PgStore::from_pool(pool);
    chima_store::Store::migrate(&store).await.unwrap();
    let store: std::sync::Arc<dyn chima_store::Store> = std::sync::Arc::new(store);
    let mut rig = Rig::on("#!/bin/sh\necho on postgres\nexit 2\n", &[], Some(store)).await;
    rig.start(rig.config());
    let ok = rig.queue("k1", "main", shell_config()).await;
    let done = rig.wait_done(ok.id).await;
    assert_eq!(done.state, DeploymentState::Failed);
    assert_eq!(done.exit_code, Some(2));
    assert!(rig.log(ok.id).await.contains(&"on postgres".to_string()));
}

#[tokio::test]
async fn hostile_hosts_from_a_webhook_are_refused() {
    let mut rig = Rig::new("#!/bin/sh\necho ran\n", &[]).await;
    rig.start(rig.config());
    let d = rig
        .queue_with("k1", "main", json!({"provider": "fabric"}), |n| {
            n.hosts = Some("-oProxyCommand=id".into());
        })
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Errored);
    assert!(
        done.reason
            .as_deref()
            .unwrap_or("")
            .starts_with("hosts `-oProxyCommand=id` refused"),
        "{:?}",
        done.reason
    );
}

#[tokio::test]
async fn heavens_lock_tasks_lock_and_unlock_without_running_anything() {
    let mut rig = Rig::new("#!/bin/sh\necho must-not-run\n", &[]).await;
    rig.start(rig.config());
    let d = rig
        .queue_with("k1", "main", shell_config(), |n| {
            n.task = "deploy:lock".into();
            n.requester = "carol".into();
        })
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    let lock = rig.store.get_lock("app", "staging").await.unwrap().unwrap();
    assert_eq!(lock.holder, "carol");
    // Someone else's deploy is now refused; the unlock task lifts it.
    let d = rig.queue("k2", "main", shell_config()).await;
    assert_eq!(rig.wait_done(d.id).await.state, DeploymentState::Errored);
    let d = rig
        .queue_with("k3", "main", shell_config(), |n| {
            n.task = "deploy:unlock".into()
        })
        .await;
    assert_eq!(rig.wait_done(d.id).await.state, DeploymentState::Succeeded);
    assert!(
        rig.store
            .get_lock("app", "staging")
            .await
            .unwrap()
            .is_none()
    );
    assert!(!rig.log(d.id).await.contains(&"must-not-run".to_string()));
}

/// The niceness of a process this test starts: the test's own.
fn own_niceness() -> i32 {
    let out = std::process::Command::new("nice").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test]
async fn a_provider_runs_below_faseng_in_cpu_and_io_unless_told_otherwise() {
    let script = "#!/bin/sh\necho \"niceness $(nice)\"\necho \"io $(ionice -p $$)\"\n";
    let own = own_niceness();
    let cases = [
        (
            Priority::default(),
            own.max(10),
            "best-effort: prio 7".to_string(),
        ),
        (
            Priority {
                nice: 19,
                io: IoClass::Idle,
            },
            19,
            "idle".to_string(),
        ),
        (Priority::UNCHANGED, own, String::new()),
    ];
    for (n, (priority, niceness, io)) in cases.into_iter().enumerate() {
        let mut rig = Rig::new(script, &[]).await;
        let mut cfg = rig.config();
        cfg.priority = priority;
        rig.start(cfg);
        let d = rig.queue(&format!("p{n}"), "main", shell_config()).await;
        let done = rig.wait_done(d.id).await;
        assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
        let log = rig.log(d.id).await;
        assert!(
            log.contains(&format!("niceness {niceness}")),
            "{priority:?}: {log:#?}"
        );
        let io_line = log.iter().find(|l| l.starts_with("io ")).unwrap();
        if io.is_empty() {
            // Unchanged: whatever the test itself has, never lowered by faseng.
            let theirs = std::process::Command::new("ionice").output().unwrap();
            let theirs = String::from_utf8_lossy(&theirs.stdout).trim().to_string();
            assert_eq!(io_line, &format!("io {theirs}"), "{log:#?}");
        } else {
            assert_eq!(io_line, &format!("io {io}"), "{priority:?}: {log:#?}");
        }
    }
}

/// The engine's last check: a deployment to an environment whose `approvals` it was
/// never given (made around the creators, by hand or before the rule) does not run;
/// one approved through the store runs.
#[tokio::test]
async fn an_unapproved_deployment_never_runs_and_an_approved_one_does() {
    let mut rig = Rig::new("#!/bin/sh\necho ran\n", &[]).await;
    rig.start(rig.config());
    let mut config = shell_config();
    config["approvals"] = json!({"staging": {"from": ["bob"]}});
    let d = rig.queue("k-unapproved", "main", config.clone()).await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Errored);
    assert_eq!(
        done.reason.as_deref(),
        Some(
            "app in staging needs 1 approval from bob before it runs, and deployment #1 has 0 approvals; nothing was run"
        )
    );
    assert!(!rig.log(d.id).await.contains(&"ran".to_string()));

    // Through the store's approval: it runs, and its log says who approved it.
    let app = rig.register(config);
    let new = chima_store::NewDeployment {
        source_key: "k-approved".to_string(),
        requester: "alice".to_string(),
        app,
        environment: "staging".to_string(),
        repository: "example/app".to_string(),
        git_ref: "main".to_string(),
        sha: None,
        task: "deploy".to_string(),
        hosts: None,
        provider: "shell".to_string(),
        payload: json!({}),
        github_deployment_id: None,
        notify: vec![],
        timeout_secs: None,
    };
    let need = chima_store::ApprovalNeed {
        count: 1,
        expires_in: Duration::from_secs(600),
        note: "waiting for 1 approval from bob".to_string(),
    };
    let d = rig
        .store
        .create_awaiting_approval(new, need)
        .await
        .unwrap()
        .deployment;
    rig.store
        .decide_approval(
            d.id,
            "chat:bob",
            "bob",
            chima_store::Decision::Approve,
            None,
        )
        .await
        .unwrap();
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    let log = rig.log(d.id).await;
    assert!(log.contains(&"==> approved by bob".to_string()), "{log:?}");
    assert!(log.contains(&"ran".to_string()), "{log:?}");
}
