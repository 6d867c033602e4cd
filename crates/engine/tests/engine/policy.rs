//! Deploy windows and freezes where every path meets: the engine, when it runs a
//! deployment, whoever created it (issue 18). A refusal is an `errored` deployment
//! with its reason, and nothing runs.

use chima_payload::{DeploymentPayload, FasengNotes, Identity, IdentitySource};
use chima_store::DeploymentState;
use chrono::Timelike;
use serde_json::json;

use crate::harness::{Rig, shell_config};

fn notes(emergency: Option<&str>) -> serde_json::Value {
    DeploymentPayload::with_notes(
        &json!({}),
        &FasengNotes {
            delivery: None,
            identity: Identity::chat(IdentitySource::Trusted, None, "alice".into()),
            chat: None,
            notes: Vec::new(),
            emergency: emergency.map(str::to_string),
        },
    )
}

#[tokio::test]
async fn a_freeze_errors_the_deployment_and_break_glass_and_dry_runs_pass() {
    let mut rig = Rig::new("#!/bin/sh\necho ran\n", &[]).await;
    rig.store
        .freeze(
            "*",
            "staging",
            "carol",
            Some("chat:carol"),
            Some("release"),
            chrono::Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    rig.start(rig.config());
    let d = rig.queue("k1", "main", shell_config()).await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Errored);
    let why = done.reason.unwrap_or_default();
    assert!(
        why.starts_with("staging is frozen (every app) by carol until today")
            || why.starts_with("staging is frozen (every app) by carol until tomorrow"),
        "{why}"
    );
    assert!(
        why.ends_with(
            " UTC: release; nothing was run (break-glass: `deploy!! app to staging <reason>`)"
        ),
        "{why}"
    );
    assert!(!rig.log(d.id).await.iter().any(|l| l == "ran"));

    // Another environment is not frozen.
    let d = rig
        .queue_with("k2", "main", shell_config(), |n| {
            n.environment = "production".into()
        })
        .await;
    rig.succeeded_log(d.id).await;

    // Break-glass, as the trusted notes say: it runs, and the log says what it passed.
    let d = rig
        .queue_with("k3", "main", shell_config(), |n| {
            n.payload = notes(Some("hotfix"))
        })
        .await;
    let log = rig.succeeded_log(d.id).await;
    assert!(
        log.contains(
            "==> break-glass by alice: hotfix; it passes: staging is frozen (every app) by carol"
        ),
        "{log}"
    );
    assert!(log.contains("ran"), "{log}");

    // A dry run passes (it changes nothing).
    let d = rig
        .queue_with("k4", "main", shell_config(), |n| {
            n.task = chima_config::DRY_RUN_TASK.into()
        })
        .await;
    assert_eq!(rig.wait_done(d.id).await.state, DeploymentState::Succeeded);

    // Once the freeze is lifted, a plain deployment runs.
    rig.store.unfreeze("*", Some("staging")).await.unwrap();
    let d = rig.queue("k5", "main", shell_config()).await;
    rig.succeeded_log(d.id).await;
}

#[tokio::test]
async fn outside_its_window_the_deployment_errors_with_the_next_opening() {
    let mut rig = Rig::new("#!/bin/sh\necho ran\n", &[]).await;
    let hour = chrono::Utc::now().hour();
    let start = (hour + 2) % 24;
    let end = if start == 23 {
        "24:00".to_string()
    } else {
        format!("{:02}:00", start + 1)
    };
    let mut config = shell_config();
    config["windows"] =
        json!({"staging": {"allow": [format!("{start:02}:00-{end}")], "timezone": "UTC"}});
    rig.start(rig.config());
    let d = rig.queue("w1", "main", config.clone()).await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Errored);
    let why = done.reason.unwrap_or_default();
    assert!(
        why.contains("staging is outside its deploy windows"),
        "{why}"
    );
    assert!(why.contains(": staging opens "), "{why}");
    assert!(
        why.contains(&format!("{start:02}:00 UTC; nothing was run")),
        "{why}"
    );
    assert!(!rig.log(d.id).await.iter().any(|l| l == "ran"));
    // Production has no windows.
    let d = rig
        .queue_with("w2", "main", config, |n| {
            n.environment = "production".into()
        })
        .await;
    rig.succeeded_log(d.id).await;
}
