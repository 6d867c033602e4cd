//! Dry runs (`deploy:noop`, issue 18) through the engine with real scripts: what the
//! provider sees, the log, Heroku's refusal, no lock taken or obeyed, and never
//! counted as deployed. The real Capistrano and Fabric dry runs are in `real_tools`.

use std::time::Duration;

use chima_config::DRY_RUN_TASK;
use chima_store::{DeploymentState, LockResult, NewDeployment};
use serde_json::json;

use crate::harness::{Rig, git, shell_config};

fn noop(n: &mut NewDeployment) {
    n.task = DRY_RUN_TASK.into();
}

/// The script provider runs the same `script/deploy` with `DEPLOY_NOOP=1` and the task
/// `deploy`; the log says it is a dry run; a real deploy has no `DEPLOY_NOOP`.
#[tokio::test]
async fn a_script_gets_deploy_noop_and_the_deploy_task() {
    let mut rig = Rig::new(
        "#!/bin/sh\necho \"task=$DEPLOY_TASK noop=${DEPLOY_NOOP:-unset}\"\n",
        &[],
    )
    .await;
    rig.start(rig.config());
    let d = rig.queue_with("k1", "main", shell_config(), noop).await;
    let log = rig.succeeded_log(d.id).await;
    assert!(log.contains("==> dry run: nothing will change"), "{log}");
    assert!(
        log.contains("==> running DEPLOY_NOOP=1 ./script/deploy"),
        "{log}"
    );
    assert!(log.contains("task=deploy noop=1"), "{log}");

    let d = rig.queue("k2", "main", shell_config()).await;
    let log = rig.succeeded_log(d.id).await;
    assert!(log.contains("task=deploy noop=unset"), "{log}");
    assert!(!log.contains("dry run"), "{log}");
}

/// An app's own `command` gets the same: `DEPLOY_NOOP=1`, and `{task}` is `deploy`.
#[tokio::test]
async fn an_apps_command_gets_deploy_noop_and_task_deploy() {
    let mut rig = Rig::new("#!/bin/sh\n", &[]).await;
    rig.start(rig.config());
    let d = rig
        .queue_with(
            "k1",
            "main",
            json!({"provider": "shell", "command": ["sh", "-c", "echo \"noop=$DEPLOY_NOOP task=$1\"", "sh", "{task}"]}),
            noop,
        )
        .await;
    let log = rig.succeeded_log(d.id).await;
    assert!(log.contains("noop=1 task=deploy"), "{log}");
}

/// Heroku builds release when they succeed: a dry run is refused before anything is
/// asked of Heroku (the engine has no Heroku API here; the refusal comes first).
#[tokio::test]
async fn heroku_refuses_a_dry_run() {
    let mut rig = Rig::new("#!/bin/sh\n", &[]).await;
    rig.start(rig.config());
    let d = rig
        .queue_with(
            "k1",
            "main",
            json!({"provider": "heroku", "heroku_name": "acme-web"}),
            noop,
        )
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Errored);
    assert_eq!(
        done.reason.as_deref(),
        Some("Heroku builds have no dry run; nothing was run")
    );
}

/// A dry run starts while a real deploy of the same environment runs, and ends before
/// it; a real deploy starts while a dry run runs. Real deploys stay one at a time.
#[tokio::test]
async fn dry_runs_and_deploys_of_one_environment_do_not_wait_for_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let release_deploy = dir.path().join("release-deploy");
    let release_noop = dir.path().join("release-noop");
    // The real deploy waits for its gate; the dry run waits for its own.
    let script = format!(
        "#!/bin/sh\necho \"task=$DEPLOY_TASK noop=${{DEPLOY_NOOP:-unset}}\"\n\
         if [ \"${{DEPLOY_NOOP:-}}\" = 1 ]; then gate={noop}; else gate={deploy}; fi\n\
         while [ ! -e $gate ]; do sleep 0.05; done\n",
        noop = release_noop.display(),
        deploy = release_deploy.display()
    );
    let mut rig = Rig::new(&script, &[]).await;
    let mut cfg = rig.config();
    cfg.workers = 3;
    rig.start(cfg);

    // A real deploy runs; a dry run of the same environment starts beside it.
    let real = rig.queue("k1", "main", shell_config()).await;
    rig.wait_running(real.id).await;
    let dry = rig.queue_with("k2", "main", shell_config(), noop).await;
    rig.wait_running(dry.id).await;
    // Another real deploy waits for the first (one at a time holds for deploys).
    let second = rig.queue("k3", "main", shell_config()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = rig.store.get_deployment(second.id).await.unwrap().unwrap();
    assert_eq!(waiting.state, DeploymentState::Queued);

    // The dry run ends while the real deploy still runs.
    std::fs::write(&release_noop, "").unwrap();
    let log = rig.succeeded_log(dry.id).await;
    assert!(log.contains("task=deploy noop=1"), "{log}");
    let still = rig.store.get_deployment(real.id).await.unwrap().unwrap();
    assert_eq!(still.state, DeploymentState::Running);

    // Now a dry run that keeps running: the real deploys go past it.
    std::fs::remove_file(&release_noop).unwrap();
    let long_dry = rig.queue_with("k4", "main", shell_config(), noop).await;
    rig.wait_running(long_dry.id).await;
    std::fs::write(&release_deploy, "").unwrap();
    rig.succeeded_log(real.id).await;
    rig.succeeded_log(second.id).await;
    let running = rig
        .store
        .get_deployment(long_dry.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        running.state,
        DeploymentState::Running,
        "both real deploys ran while the dry run ran"
    );
    std::fs::write(&release_noop, "").unwrap();
    rig.succeeded_log(long_dry.id).await;
}

/// Another user's lock stops their deploys, not their dry runs (which change
/// nothing); the log says the lock was passed.
#[tokio::test]
async fn a_dry_run_passes_another_users_lock() {
    let mut rig = Rig::new("#!/bin/sh\necho \"noop=${DEPLOY_NOOP:-unset}\"\n", &[]).await;
    let r = rig
        .store
        .lock("app", "staging", "bob", Some("db migration"), None)
        .await
        .unwrap();
    assert!(matches!(r, LockResult::Acquired(_)));
    rig.start(rig.config());
    let d = rig.queue_with("k1", "main", shell_config(), noop).await;
    let log = rig.succeeded_log(d.id).await;
    assert!(
        log.contains("==> staging is locked by bob; a dry run changes nothing, so it runs anyway"),
        "{log}"
    );
    assert!(log.contains("noop=1"), "{log}");
    // The lock is still bob's, and alice's real deploy is still refused.
    let lock = rig.store.get_lock("app", "staging").await.unwrap().unwrap();
    assert_eq!(lock.holder, "bob");
    let d = rig.queue("k2", "main", shell_config()).await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Errored);
    assert_eq!(
        done.reason.as_deref(),
        Some("staging is locked by bob: db migration")
    );
}

/// A succeeded dry run of a newer commit deployed nothing: a rollback goes from the
/// last real deploy to the one before it.
#[tokio::test]
async fn rollback_after_a_dry_run_goes_back_to_the_last_real_deploy() {
    let mut rig = Rig::new("#!/bin/sh\necho ok\n", &[]).await;
    rig.start(rig.config());
    let first = rig.head();
    let d1 = rig.queue("k1", &first, shell_config()).await;
    rig.succeeded_log(d1.id).await;
    git(
        &rig.repo,
        &["commit", "--quiet", "--allow-empty", "-m", "second"],
    );
    let second = rig.head();
    let d2 = rig.queue("k2", &second, shell_config()).await;
    rig.succeeded_log(d2.id).await;
    git(
        &rig.repo,
        &["commit", "--quiet", "--allow-empty", "-m", "third"],
    );
    let third = rig.head();
    let d3 = rig.queue_with("k3", &third, shell_config(), noop).await;
    let done = rig.wait_done(d3.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded);
    assert_eq!(done.sha.as_deref(), Some(third.as_str()));

    let to = chima_engine::ops::rollback_target(rig.store.as_ref(), "app", "staging")
        .await
        .unwrap()
        .expect("two real deploys");
    assert_eq!(to.current.id, d2.id, "the dry run is not what runs");
    assert_eq!(to.target.sha.as_deref(), Some(first.as_str()));
}

/// `cancel` with a dry run and a deploy both running stops the deploy.
#[tokio::test]
async fn cancel_stops_the_deploy_not_the_dry_run_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let script = format!(
        "#!/bin/sh\nwhile [ ! -e {} ]; do sleep 0.05; done\necho through\n",
        gate.display()
    );
    let mut rig = Rig::new(&script, &[]).await;
    rig.start(rig.config());
    let dry = rig.queue_with("k1", "main", shell_config(), noop).await;
    rig.wait_running(dry.id).await;
    let real = rig.queue("k2", "main", shell_config()).await;
    rig.wait_running(real.id).await;
    let cancelled = chima_engine::ops::cancel(rig.store.as_ref(), "app", "staging", "carol")
        .await
        .unwrap();
    match cancelled {
        chima_engine::ops::Cancelled::Stopping(d) => assert_eq!(d.id, real.id),
        other => panic!("expected the deploy to be stopped: {other:?}"),
    }
    assert_eq!(
        rig.wait_done(real.id).await.state,
        DeploymentState::Cancelled
    );
    std::fs::write(&gate, "").unwrap();
    rig.succeeded_log(dry.id).await;
}
